"""FaultyStore: a real store behind the storage contract, with faults a test programs.

The runtime talks to storage only through :class:`persistence.Store`, so faults injected at
that boundary are the faults the runtime must survive: a write refused for now (``StoreBusy``)
or for good (a plain ``StoreError``), a full disk (``StorageFull``), a failed load, a slow
commit. A refused write raises *before* it reaches the real store: its transaction never
happened, exactly as when a backend rolls back.

Usage::

    real = await open_store("sqlite:///:memory:")
    faulty = FaultyStore(real)
    faulty.fail_writes(2, error=StoreBusy, kinds={Enqueue})
    async with Runtime.open(faulty, entities=[Counter]) as rt:
        ...
    assert faulty.injected["write"] == 2
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio
import msgspec

from actors import Entity, Runtime, RuntimeConfig
from persistence import (
    ActorId,
    ActorRecord,
    Admit,
    AdmitOutcome,
    BuryMessage,
    Enqueue,
    EnqueueOutcome,
    FireOutcome,
    FireTimers,
    MessageRecord,
    RetryDeadLetter,
    RetryOutcome,
    StoreBusy,
    StoreError,
    TurnCommit,
    TurnOutcome,
    WriteItem,
    WriteOutcome,
    open_store,
)
from persistence.forwarding import ForwardingStore
from persistence.store import Store

__all__ = [
    "FaultyStore",
    "LoadFault",
    "Refusal",
    "WriteFault",
    "WriteLog",
    "faulty_store",
    "item_actor",
    "runtime_on",
    "stored_state",
    "until",
]

ItemKind = type[Admit | Enqueue | TurnCommit | FireTimers | BuryMessage | RetryDeadLetter]
LoadOp = Literal["load_actor", "load_mailbox"]


def item_actor(item: WriteItem) -> ActorId | None:
    """The actor a write item is about (``None`` for timer firings and dead-letter moves)."""
    if isinstance(item, Admit | Enqueue | TurnCommit):
        return item.actor
    return None


@dataclass(slots=True, eq=False, kw_only=True)
class WriteFault:
    """Fail the next ``remaining`` writes (``None``: every one) that hold a matching item.

    An item matches when it is one of ``kinds`` (any kind if ``None``) and is about ``actor``
    (any actor if ``None``).
    """

    error: type[StoreError]
    message: str
    remaining: int | None
    kinds: frozenset[ItemKind] | None = None
    actor: ActorId | None = None
    injected: int = 0

    def matches(self, items: Sequence[WriteItem]) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return any(
            (self.kinds is None or type(item) in self.kinds)
            and (self.actor is None or item_actor(item) == self.actor)
            for item in items
        )


@dataclass(slots=True, eq=False, kw_only=True)
class Refusal:
    """Refuse, every time until cleared, a write committing the turn of a matching message.

    Messages are recognised by ``match`` when the store hands them back (an admission, an
    enqueue, a turn's outgoing message, a timer firing, a retried dead letter, a recovered
    mailbox); the refusal then applies to any ``TurnCommit`` consuming one of them.
    """

    match: Callable[[MessageRecord], bool]
    error: type[StoreError]
    message: str
    ids: set[int] = field(default_factory=set)
    injected: int = 0


@dataclass(slots=True, eq=False, kw_only=True)
class LoadFault:
    """Fail the next ``remaining`` calls of ``op`` (``None``: every one) for ``actor`` (or any)."""

    op: LoadOp
    error: type[StoreError]
    message: str
    remaining: int | None
    actor: ActorId | None = None
    injected: int = 0

    def matches(self, op: LoadOp, actor: ActorId) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return op == self.op and (self.actor is None or actor == self.actor)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteLog:
    """One ``write`` call: its item kinds in order, and the fault it got (``None``: applied)."""

    kinds: tuple[str, ...]
    fault: str | None
    started: float
    ended: float

    @property
    def size(self) -> int:
        return len(self.kinds)


def _messages(outcome: WriteOutcome) -> Iterator[MessageRecord]:
    """Every message record a write outcome hands back."""
    if isinstance(outcome, AdmitOutcome | EnqueueOutcome | RetryOutcome):
        if outcome.message is not None:
            yield outcome.message
    elif isinstance(outcome, TurnOutcome):
        for sent in outcome.outgoing:
            if sent.message is not None:
                yield sent.message
        if outcome.successor is not None:
            yield outcome.successor
        if outcome.readmitted is not None and outcome.readmitted.message is not None:
            yield outcome.readmitted.message
    elif isinstance(outcome, FireOutcome):
        yield from outcome.messages


class FaultyStore(ForwardingStore):
    """A :class:`persistence.Store` that delegates to ``inner`` unless a fault says otherwise.

    Attributes:
        inner: the real store.
        injected: faults raised so far, by where: ``write``, ``refused`` (a refused turn),
            ``load_actor``, ``load_mailbox``.
        log: every ``write`` call, in the order they ended.
        writes_in_progress: ``write`` calls started and not yet ended, by item kind name.
        loads: ``load_actor`` calls that reached the real store.
        write_delay / delay_kinds / delay_after: see :meth:`slow_writes`.
    """

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.injected: Counter[str] = Counter()
        self.log: list[WriteLog] = []
        self.writes_in_progress: Counter[str] = Counter()
        self.loads = 0
        self.write_delay = 0.0
        self.delay_kinds: frozenset[ItemKind] | None = None
        self.delay_after = False
        self._write_faults: list[WriteFault] = []
        self._refusals: list[Refusal] = []
        self._load_faults: list[LoadFault] = []

    # -- programming faults ---------------------------------------------------------------

    def fail_writes(
        self,
        times: int | None = 1,
        *,
        error: type[StoreError] = StoreBusy,
        kinds: Iterable[ItemKind] | None = None,
        actor: ActorId | None = None,
        message: str = "injected write fault",
    ) -> WriteFault:
        """Fail the next ``times`` writes (``None``: all, until cleared) holding a match.

        Args:
            times: how many writes to fail; ``None`` for every matching one.
            error: the StoreError subclass to raise (``StoreBusy`` is retryable, a plain
                ``StoreError`` is not, ``StorageFull`` is a full disk).
            kinds: only writes holding one of these item types (``Admit``, ``Enqueue``,
                ``TurnCommit``, ``FireTimers``, ...).
            actor: only writes holding an item about this actor (with ``kinds``: an item of
                those kinds about this actor).
            message: the error's text (prefixed with ``injected:``).
        """
        fault = WriteFault(
            error=error,
            message=message,
            remaining=times,
            kinds=None if kinds is None else frozenset(kinds),
            actor=actor,
        )
        self._write_faults.append(fault)
        return fault

    def refuse_turns(
        self,
        match: Callable[[MessageRecord], bool],
        *,
        error: type[StoreError] = StoreError,
        message: str = "injected: the store refuses this turn",
    ) -> Refusal:
        """Refuse the commit of every turn consuming a message that ``match`` picks."""
        refusal = Refusal(match=match, error=error, message=message)
        self._refusals.append(refusal)
        return refusal

    def fail_loads(
        self,
        times: int | None = 1,
        *,
        op: LoadOp = "load_actor",
        error: type[StoreError] = StoreBusy,
        actor: ActorId | None = None,
        message: str = "injected load fault",
    ) -> LoadFault:
        """Fail the next ``times`` calls of ``op`` (for ``actor``, if given)."""
        fault = LoadFault(op=op, error=error, message=message, remaining=times, actor=actor)
        self._load_faults.append(fault)
        return fault

    def slow_writes(
        self, delay: float, *, kinds: Iterable[ItemKind] | None = None, after: bool = False
    ) -> None:
        """Make each write (holding one of ``kinds``, if given) take ``delay`` seconds longer.

        With ``after``, the pause comes after the real store committed (a slow answer: the
        transaction happened even if the caller gives up waiting); otherwise before (a slow
        commit: giving up means it never happened).
        """
        self.write_delay = delay
        self.delay_kinds = None if kinds is None else frozenset(kinds)
        self.delay_after = after

    def clear(self) -> None:
        """Remove every fault and delay; the counters stay."""
        self._write_faults.clear()
        self._refusals.clear()
        self._load_faults.clear()
        self.write_delay = 0.0
        self.delay_kinds = None
        self.delay_after = False

    def remove(self, fault: WriteFault | Refusal | LoadFault) -> None:
        """Remove one fault."""
        if isinstance(fault, WriteFault) and fault in self._write_faults:
            self._write_faults.remove(fault)
        elif isinstance(fault, Refusal) and fault in self._refusals:
            self._refusals.remove(fault)
        elif isinstance(fault, LoadFault) and fault in self._load_faults:
            self._load_faults.remove(fault)

    @property
    def total_injected(self) -> int:
        """How many faults were raised, of every sort."""
        return sum(self.injected.values())

    # -- the Store protocol --------------------------------------------------------------

    def _write_fault(self, items: Sequence[WriteItem]) -> StoreError | None:
        for refusal in self._refusals:
            if any(isinstance(i, TurnCommit) and i.consumed in refusal.ids for i in items):
                refusal.injected += 1
                self.injected["refused"] += 1
                return refusal.error(refusal.message)
        for fault in self._write_faults:
            if fault.matches(items):
                if fault.remaining is not None:
                    fault.remaining -= 1
                fault.injected += 1
                self.injected["write"] += 1
                return fault.error(f"injected: {fault.message}")
        return None

    def _delayed(self, items: Sequence[WriteItem]) -> float:
        if not self.write_delay:
            return 0.0
        if self.delay_kinds is not None and not any(type(i) in self.delay_kinds for i in items):
            return 0.0
        return self.write_delay

    def _learn(self, messages: Iterable[MessageRecord]) -> None:
        for refusal in self._refusals:
            refusal.ids.update(m.id for m in messages if refusal.match(m))

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        items = list(items)
        kinds = tuple(type(item).__name__ for item in items)
        started = time.monotonic()
        fault_name: str | None = None
        self.writes_in_progress.update(set(kinds))
        try:
            delay = self._delayed(items)
            if delay and not self.delay_after:
                await anyio.sleep(delay)
            error = self._write_fault(items)
            if error is not None:
                fault_name = type(error).__name__
                raise error  # before the real store: this transaction never happened
            outcomes = await self.inner.write(items, now=now)
            self._learn(m for outcome in outcomes for m in _messages(outcome))
            if delay and self.delay_after:
                await anyio.sleep(delay)
            return outcomes
        except BaseException as exc:
            if fault_name is None:
                fault_name = f"{type(exc).__name__} (not injected)"
            raise
        finally:
            self.writes_in_progress.subtract(set(kinds))
            self.log.append(
                WriteLog(kinds=kinds, fault=fault_name, started=started, ended=time.monotonic())
            )

    def _load_fault(self, op: LoadOp, actor: ActorId) -> None:
        for fault in self._load_faults:
            if fault.matches(op, actor):
                if fault.remaining is not None:
                    fault.remaining -= 1
                fault.injected += 1
                self.injected[op] += 1
                raise fault.error(f"injected: {fault.message}")

    async def load_actor(self, actor: ActorId) -> ActorRecord | None:
        self._load_fault("load_actor", actor)
        self.loads += 1
        return await self.inner.load_actor(actor)

    async def load_mailbox(self, actor: ActorId) -> list[MessageRecord]:
        self._load_fault("load_mailbox", actor)
        mailbox = await self.inner.load_mailbox(actor)
        self._learn(mailbox)
        return mailbox


@asynccontextmanager
async def faulty_store(url: str) -> AsyncIterator[FaultyStore]:
    """A FaultyStore around the real store at ``url``, closed on the way out."""
    inner = await open_store(url)
    try:
        yield FaultyStore(inner)
    finally:
        await inner.close()


async def until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, step: float = 0.005
) -> None:
    """Wait until ``condition()`` holds (polling), or fail with ``TimeoutError``."""
    with anyio.fail_after(timeout):
        while True:
            value = condition()
            if not isinstance(value, bool):
                value = await value
            if value:
                return
            await anyio.sleep(step)


@asynccontextmanager
async def runtime_on(
    store: Store | str,
    *entities: type[Entity],
    config: RuntimeConfig | None = None,
    limit: float = 30.0,
) -> AsyncIterator[Runtime]:
    """A runtime on ``store`` (a FaultyStore, say) whose whole use is bounded in time."""
    with anyio.fail_after(limit):
        async with Runtime.open(store, entities=entities, config=config) as rt:
            yield rt


async def stored_state(store: Store, actor: ActorId) -> dict[str, object] | None:
    """The actor's committed state, decoded from JSON (``None``: no record or no state)."""
    record = await store.load_actor(actor)
    if record is None or record.state is None:
        return None
    state: dict[str, object] = msgspec.json.decode(record.state)
    return state
