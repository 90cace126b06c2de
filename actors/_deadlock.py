"""The deadlock guard: which turns wait, through asks, on the turn that runs now.

An ask made inside a handler carries the chain of turns that wait on its answer; the turn
it starts extends the chain with itself. An ask (or a wait for a result) whose target is
already in the chain could never be answered: the target waits, directly or not, on the
asking turn. It fails at once with ``DeadlockDetected`` instead of hanging.

The chain lives in memory, with the messages; after a restart the waiting turns are gone
too (they re-run from their own messages).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from actors.errors import DeadlockDetected
from persistence import ActorId


@dataclass(slots=True, eq=False)
class Link:
    """A turn of ``actor`` that may be waiting on an ask; ``done`` once it has ended."""

    actor: ActorId
    done: bool = False


Chain = tuple[Link, ...]

_CHAIN: ContextVar[Chain] = ContextVar("keyed_actors_chain", default=())


def waiters(target: ActorId, what: str) -> Chain:
    """The turns an ask to ``target`` from here would keep waiting.

    Raises:
        DeadlockDetected: ``target`` is one of them.
    """
    chain = tuple(link for link in _CHAIN.get() if not link.done)
    if any(link.actor == target for link in chain):
        path = " -> ".join(str(link.actor) for link in (*chain, Link(target)))
        raise DeadlockDetected(
            f"{what} on {target} would wait forever: {path} (each one waits on the next)"
        )
    return chain


@contextmanager
def asking(target: ActorId, what: str) -> Iterator[Chain]:
    """The chain an ask to ``target`` from here carries, for as long as the ask waits.

    The asking turn is in it through a link of this ask's own, done when the ask returns
    or gives up: a turn that stopped waiting (its ask timed out) is no longer in the way.

    Raises:
        DeadlockDetected: as :func:`waiters`.
    """
    chain = waiters(target, what)
    if not chain:
        yield chain
        return
    wait = Link(chain[-1].actor)
    try:
        yield (*chain[:-1], wait)
    finally:
        wait.done = True


@contextmanager
def turn(actor: ActorId, chain: Chain) -> Iterator[None]:
    """Run a turn of ``actor`` for a message that ``chain`` waits on."""
    link = Link(actor)
    token = _CHAIN.set((*chain, link))
    try:
        yield
    finally:
        link.done = True
        _CHAIN.reset(token)
