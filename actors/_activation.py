"""A live actor in memory, and the least-recently-used table of them.

An activation holds the entity instance, the encoded state last handed to the writer, the
mailbox of committed messages not yet handled, and the envelopes of turns whose commits are in
flight. Only the driver task (see ``_mailbox``) runs turns on it; only the writer's callbacks
pop ``in_flight`` and ``reset`` it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import anyio

from actors._entity import Entity, EntitySpec
from actors._future import Future
from persistence import ActorId, MessageRecord, Status


@dataclass(frozen=True, slots=True)
class Ending:
    """How a generation ended, as committed: what its adopters and waiters are told."""

    generation: int
    status: Status
    result: bytes | None
    error: bytes | None


@dataclass(slots=True, eq=False)
class Envelope:
    """A committed message and, if someone waits for its reply, where the reply goes."""

    record: MessageRecord
    reply: Future[Any] | None = None


@dataclass(slots=True, eq=False)
class Activation:
    id: ActorId
    spec: EntitySpec
    instance: Entity | None = None
    generation: int = 0
    status: Status | None = None
    state_bytes: bytes | None = None
    loaded: bool = False
    running: bool = False
    incarnation: int = 0
    failures: int = 0
    mailbox: deque[Envelope] = field(default_factory=deque)
    in_flight: deque[Envelope] = field(default_factory=deque)
    flushed: anyio.Event | None = None
    # The committed end of the current generation (the in-memory ``status`` may run ahead
    # of commits, because turns are pipelined).
    ended: Ending | None = None

    @property
    def idle(self) -> bool:
        return not (self.running or self.mailbox or self.in_flight)

    def fresh(self, generation: int) -> None:
        """Become a just-created generation, with no need to read the store."""
        self.instance = self.spec.cls()
        self.instance.state = self.spec.new_state()
        self.generation = generation
        self.status = Status.ACTIVE
        self.state_bytes = None
        self.ended = None
        self.loaded = True

    def requeue(self, envelope: Envelope) -> None:
        """Put ``envelope`` back in the mailbox at its place in id order."""
        index = 0
        for index, queued in enumerate(self.mailbox):  # noqa: B007  # index is used after
            if queued.record.id > envelope.record.id:
                break
        else:
            index = len(self.mailbox)
        self.mailbox.insert(index, envelope)

    def reset(self) -> None:
        """Forget uncommitted turns: their messages go back to the mailbox, state reloads."""
        self.incarnation += 1
        self.failures += 1
        self.mailbox.extendleft(reversed(self.in_flight))
        self.in_flight.clear()
        self.loaded = False
        self.notify_flushed()

    def committed(self) -> Envelope:
        """The oldest in-flight turn was committed."""
        self.failures = 0
        envelope = self.in_flight.popleft()
        if not self.in_flight:
            self.notify_flushed()
        return envelope

    def notify_flushed(self) -> None:
        if self.flushed is not None:
            self.flushed.set()
            self.flushed = None

    async def wait_flushed(self) -> None:
        """Wait until no turn of this activation has a commit in flight."""
        while self.in_flight:
            if self.flushed is None:
                self.flushed = anyio.Event()
            await self.flushed.wait()


class ActivationTable:
    """Activations by actor id, least recently used first."""

    def __init__(self, max_active: int) -> None:
        self._max = max_active
        self._table: OrderedDict[ActorId, Activation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def values(self) -> list[Activation]:
        return list(self._table.values())

    def get(self, actor: ActorId, spec: EntitySpec) -> Activation:
        """The activation of ``actor``, created (not loaded) if absent; marks it recently used."""
        activation = self._table.get(actor)
        if activation is None:
            activation = self._table[actor] = Activation(id=actor, spec=spec)
        else:
            self._table.move_to_end(actor)
        return activation

    def trim(self) -> None:
        """Drop least recently used idle activations while over the cap."""
        excess = len(self._table) - self._max
        if excess <= 0:
            return
        victims: list[ActorId] = []
        for actor, activation in self._table.items():
            if activation.idle:
                victims.append(actor)
                if len(victims) == excess:
                    break
        for actor in victims:
            del self._table[actor]
