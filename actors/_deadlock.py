"""The deadlock guard: which turns wait, through asks, on the turn that runs now.

An ask made inside a handler carries the chain of turns that wait on its answer; the turn
it starts extends the chain with itself. An ask (or a wait for a result) whose target is
already in the chain could never be answered: the target waits, directly or not, on the
asking turn. It fails at once with ``DeadlockDetected`` instead of hanging.

The chain lives in memory, with the messages; after a restart the waiting turns are gone
too (they re-run from their own messages).
"""

from __future__ import annotations

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
    links = _CHAIN.get()
    if not links:  # not asked from a turn: the common case, and nothing to check
        return ()
    chain = tuple(link for link in links if not link.done)
    if any(link.actor == target for link in chain):
        path = " -> ".join(str(link.actor) for link in (*chain, Link(target)))
        raise DeadlockDetected(
            f"{what} on {target} would wait forever: {path} (each one waits on the next)"
        )
    return chain


def waiting(chain: Chain) -> bool:
    """Whether a turn in ``chain`` still waits (then its message gets in ahead: see _mailbox)."""
    return bool(chain) and any(not link.done for link in chain)


class asking:  # used as a function: ``with asking(target, what) as chain:``
    """The chain an ask to ``target`` from here carries, for as long as the ask waits.

    The asking turn is in it through a link of this ask's own, done when the ask returns
    or gives up: a turn that stopped waiting (its ask timed out) is no longer in the way.
    A class rather than a generator: it wraps every ask.

    Raises:
        DeadlockDetected: as :func:`waiters`.
    """

    __slots__ = ("_chain", "_wait")

    def __init__(self, target: ActorId, what: str) -> None:
        chain = waiters(target, what)
        self._wait = Link(chain[-1].actor) if chain else None
        self._chain = (*chain[:-1], self._wait) if self._wait is not None else chain

    def __enter__(self) -> Chain:
        return self._chain

    def __exit__(self, *exc: object) -> None:
        if self._wait is not None:
            self._wait.done = True


class turn:  # used as a function: ``with turn(actor, chain):``
    """Run a turn of ``actor`` for a message that ``chain`` waits on.

    A class rather than a generator: it wraps every turn, and costs a third as much.
    """

    __slots__ = ("_link", "_token")

    def __init__(self, actor: ActorId, chain: Chain) -> None:
        self._link = Link(actor)
        self._token = _CHAIN.set((*chain, self._link))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._link.done = True
        _CHAIN.reset(self._token)
