"""A live actor in memory, and the least-recently-used table of them.

An activation holds the entity instance, the encoded state last handed to the writer, the
mailbox of committed messages not yet handled, and the envelopes of turns whose commits are in
flight. Only the driver task (see ``_mailbox``) runs turns on it; only the writer's callbacks
pop ``in_flight`` and ``reset`` it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from actors._deadlock import Chain
from actors._entity import Entity, EntitySpec
from actors._future import Future, new_event
from persistence import ActorId, MessageRecord, Status

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext


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
    # The turns waiting on this message's reply (the deadlock guard's chain).
    chain: Chain = ()
    # Commits of this message's turn that the store refused for good.
    refusals: int = 0
    # It was at the head of its mailbox at two restarts in a row: it runs alone (_solo).
    suspect: bool = False
    recorded: bool = False  # the suspect's attempt is recorded
    # Tracing: the span context of the admission that stored it here (``_tracing``), if any.
    trace: SpanContext | None = None


@dataclass(slots=True, eq=False)
class Activation:
    id: ActorId
    spec: EntitySpec
    instance: Entity | None = None
    generation: int = 0
    status: Status | None = None
    state_bytes: bytes | None = None
    # The recent turns (``_recent``): as stored, and split into their encoded notes at this
    # activation's first turn.
    recent_bytes: bytes | None = None
    recent: list[bytes] | None = None
    loaded: bool = False
    # on_activate has run for this instance (or the entity has none).
    hooked: bool = False
    running: bool = False
    passivating: bool = False
    incarnation: int = 0
    failures: int = 0
    last_used: float = 0.0
    mailbox: deque[Envelope] = field(default_factory=deque)
    in_flight: deque[Envelope] = field(default_factory=deque)
    # Timer names that turns awaiting their commit cancelled or replaced, with how many such
    # turns; a fired message of such a timer is ``parked`` until the commit decides its fate.
    voiding: dict[str, int] = field(default_factory=dict)
    parked: list[Envelope] = field(default_factory=list)
    # Set by ``nudge``: a commit landed, or a message came (see ``nudged``).
    nudges: anyio.Event | None = None
    # The committed end of the current generation (the in-memory ``status`` may run ahead
    # of commits, because turns are pipelined).
    ended: Ending | None = None
    # Multi-node: the epoch of this node's lease on the actor; ``refresh`` asks the driver to
    # read the stored mailbox (other nodes stored messages); ``dropped``: the lease is lost.
    epoch: int | None = None
    refresh: bool = False
    dropped: bool = False
    # The message whose turn the driver is running (its handler, or its hand-off).
    current: Envelope | None = None
    # The driver's cancel scope, which the watchdog cancels when a handler runs too long.
    scope: anyio.CancelScope | None = None

    @property
    def idle(self) -> bool:
        return not (
            self.running or self.passivating or self.mailbox or self.in_flight or self.refresh
        )

    def fresh(self, generation: int) -> None:
        """Become a just-created generation, with no need to read the store."""
        self.instance = self.spec.cls()
        self.instance.state = self.spec.new_state()
        self.generation = generation
        self.status = Status.ACTIVE
        self.state_bytes = None
        self.recent_bytes, self.recent = None, []
        self.ended = None
        self.loaded = True
        self.hooked = self.spec.on_activate is None

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
        self.voiding.clear()
        for envelope in self.parked:
            self.requeue(envelope)
        self.parked.clear()
        self.loaded = False
        self.nudge()

    def void(self, names: Iterable[str]) -> None:
        """A turn cancelled or replaced these timers; its commit is in flight."""
        for name in names:
            self.voiding[name] = self.voiding.get(name, 0) + 1

    def voided(self, names: Iterable[str], *, applied: bool) -> int:
        """The turn that voided ``names`` committed: their fired messages are gone (if applied).

        Returns how many fired messages it dropped.
        """
        for name in names:
            left = self.voiding.get(name, 1) - 1
            if left:
                self.voiding[name] = left
            else:
                self.voiding.pop(name, None)
        if not applied:
            return 0
        gone = set(names)
        held = len(self.parked) + len(self.mailbox)
        self.parked = [e for e in self.parked if e.record.timer not in gone]
        if any(e.record.timer in gone for e in self.mailbox):
            self.mailbox = deque(e for e in self.mailbox if e.record.timer not in gone)
        return held - len(self.parked) - len(self.mailbox)

    @property
    def held(self) -> int:
        """Messages this activation holds: waiting, parked, or with a commit in flight."""
        return len(self.mailbox) + len(self.parked) + len(self.in_flight)

    def committed(self) -> Envelope:
        """The oldest in-flight turn was committed."""
        self.failures = 0
        envelope = self.in_flight.popleft()
        if not self.in_flight:
            self.nudge()
        return envelope

    def nudge(self) -> None:
        """Wake whoever waits on this activation (``wait_flushed``, ``nudged``)."""
        if self.nudges is not None:
            self.nudges.set()
            self.nudges = None

    async def nudged(self) -> None:
        """Wait until the next ``nudge``: a commit landed, or a message came."""
        if self.nudges is None:
            self.nudges = new_event()
        await self.nudges.wait()

    async def wait_flushed(self) -> None:
        """Wait until no turn of this activation has a commit in flight."""
        while self.in_flight:
            await self.nudged()


class ActivationTable:
    """Live activations by actor id, and the idle ones among them, least recently used first.

    The table holds at most ``max_active`` activations: the dispatcher makes room by
    passivating idle ones, and holds messages for further actors until there is room. The
    one exception is an actor asked from a running turn (``add(over=True)``): that turn waits
    on it, so holding it back could leave every busy activation waiting on the others.
    """

    def __init__(self, max_active: int) -> None:
        self.max_active = max_active
        self._table: dict[ActorId, Activation] = {}
        self._idle: OrderedDict[ActorId, Activation] = OrderedDict()
        self.peak = 0

    def __len__(self) -> int:
        return len(self._table)

    @property
    def full(self) -> bool:
        return len(self._table) >= self.max_active

    def values(self) -> list[Activation]:
        return list(self._table.values())

    def find(self, actor: ActorId) -> Activation | None:
        return self._table.get(actor)

    def add(self, actor: ActorId, spec: EntitySpec, *, over: bool = False) -> Activation:
        """A new, unloaded activation of ``actor``; the caller made room for it (or ``over``)."""
        assert over or not self.full
        assert actor not in self._table
        activation = self._table[actor] = Activation(id=actor, spec=spec)
        self.peak = max(self.peak, len(self._table))
        return activation

    def remove(self, activation: Activation) -> None:
        """Forget ``activation`` (not another activation of its actor that replaced it)."""
        if self._table.get(activation.id) is activation:
            self._idle.pop(activation.id, None)
            del self._table[activation.id]

    def rest(self, activation: Activation, now: float) -> None:
        """``activation`` has no work since ``now``: it becomes the most recently used idle one."""
        activation.last_used = now
        self._idle.pop(activation.id, None)
        self._idle[activation.id] = activation

    def wake(self, activation: Activation) -> None:
        """``activation`` has work again: it is not idle."""
        self._idle.pop(activation.id, None)

    def least_recently_used(self) -> Activation | None:
        """The idle activation unused the longest, if any."""
        return next(iter(self._idle.values()), None)

    def expired(
        self, now: float, timeout: Callable[[Activation], float], shortest: float
    ) -> tuple[list[Activation], float | None]:
        """Idle activations unused for their ``timeout`` by ``now``, and when the next may be.

        The idle ones are in order of last use, so the scan stops at the first that even the
        ``shortest`` timeout cannot have expired; the time returned may then be early, never
        late.
        """
        found: list[Activation] = []
        next_due: float | None = None
        for activation in self._idle.values():
            due = activation.last_used + timeout(activation)
            if due <= now:
                found.append(activation)
                continue
            if next_due is None or due < next_due:
                next_due = due
            if activation.last_used + shortest > now:
                next_due = min(next_due, activation.last_used + shortest)
                break
        return found, next_due
