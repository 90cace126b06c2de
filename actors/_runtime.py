"""Runtime: open a store, register entities, and address actors (start, ref, ask, tell).

The runtime owns one task group holding the writer, the retention sweep and the actor
drivers; ``Runtime.open`` returns only when all are running and every message accepted before
the last shutdown (or crash) is back in its actor's mailbox.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final, overload

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup

from actors import _codec, _deadlock, _future, _tracing
from actors._activation import ActivationTable, Ending, Envelope
from actors._clock import Clock, SystemClock, track
from actors._cluster import Cluster
from actors._config import RuntimeConfig, check_retention
from actors._context import Context, read_error_info
from actors._dead_letters import DeadLetter, check_retried
from actors._deadlines import clock_deadline, deadline
from actors._entity import Entity, EntitySpec, check_key, entity_spec
from actors._future import Future
from actors._mailbox import Dispatcher, storage_error
from actors._passivation import Passivation
from actors._query import (
    ActorInfo,
    Operator,
    Page,
    check_limit,
    compile_query,
    info,
    page_of,
    with_lookahead,
)
from actors._refs import ActorRef, StartHandle
from actors._registry import check_attributes, encode_attributes
from actors._results import RecentResults
from actors._retention import Retention
from actors._retry import retrying
from actors._timers import Timers
from actors._watchdog import Watchdog
from actors._writer import Request, Writer
from actors.errors import (
    ActorCompleted,
    ActorFailed,
    ActorNotFound,
    HandlerFailed,
    IdempotencyConflict,
    InvalidEntity,
    InvalidPayload,
    InvalidQuery,
    Overloaded,
    RuntimeClosed,
    UnknownEntity,
    UnknownHandler,
)
from persistence import (
    ActorId,
    ActorInit,
    ActorRecord,
    Admit,
    AdmitOutcome,
    AttributeValue,
    Durability,
    Enqueue,
    EnqueueOutcome,
    Leases,
    MessageKind,
    MessageRecord,
    NewMessage,
    RetryDeadLetter,
    RetryOutcome,
    Status,
    Store,
    StoredReply,
    StoreError,
    WriteOutcome,
    open_store,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["Runtime", "RuntimeStatistics"]

E = TypeVar("E", bound=Entity)
P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")

log = structlog.get_logger("actors.runtime")
_RECOVERY_PAGE = 500
_NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_NODE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class _Ended(Protocol):
    """What a stored, ended generation tells: an ActorRecord or an AdmitOutcome."""

    @property
    def generation(self) -> int: ...
    @property
    def status(self) -> Status: ...
    @property
    def result(self) -> bytes | None: ...
    @property
    def error(self) -> bytes | None: ...


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeStatistics:
    """A snapshot of the runtime's counters.

    Attributes:
        activations: actors currently held in memory.
        peak_activations: the most actors held in memory at once (``max_active``, plus the
            asks from running handlers let in over it).
        activated: activations created since the runtime opened (fresh or loaded).
        passivated: activations dropped from memory (idle, or to make room).
        turns: turns run since the runtime opened.
        commits: write transactions committed since the runtime opened.
        committed_items: admissions, enqueues, turns and timer firings those carried.
        timers_fired: timers fired since the runtime opened.
        purged: expired actors and kept replies purged from the store.
        queued: messages held in memory, accepted and not yet handled (bounded by
            ``max_in_flight`` together with commits under way).
        dead_lettered: messages moved to the dead letters since the runtime opened.
    """

    activations: int
    peak_activations: int
    activated: int
    passivated: int
    turns: int
    commits: int
    committed_items: int
    timers_fired: int
    purged: int
    queued: int
    dead_lettered: int


@final
class Runtime:
    """An embedded actor runtime on one store. Open it with :meth:`Runtime.open`."""

    def __init__(
        self,
        store: Store,
        specs: Mapping[str, EntitySpec],
        clock: Clock,
        config: RuntimeConfig,
        tracer: Tracer | None = None,
    ) -> None:
        self._store = store
        self._specs = dict(specs)
        # What an enqueue creates an absent actor with, per entity: one record for all.
        self._inits = {name: ActorInit(retention=spec.retention) for name, spec in specs.items()}
        self._by_class = {spec.cls: spec for spec in specs.values()}
        self.clock = clock
        self.config = config
        self.handler_timeout = (
            None if config.handler_timeout is None else config.handler_timeout.total_seconds()
        )
        self._closed = False
        self._services: TaskGroup | None = None
        self._cluster: Cluster | None = None
        self._writer = Writer(store, clock, max_batch=config.max_batch)
        # None without opentelemetry-api: then no tracing code runs (see _tracing).
        self._tracer = self._writer.tracer = tracer
        self._dispatcher = Dispatcher(self, self._writer, ActivationTable(config.max_active))
        self._results = RecentResults(config.recent_results)
        # Keys whose first start (default duplicate policy) is on its way to the store.
        self._admitting: dict[ActorId, Future[None]] = {}
        self._writer.host = self._dispatcher
        self._timers = Timers(
            store, clock, self._writer, batch=config.timer_batch, entities=frozenset(specs)
        )
        self._retention = Retention(
            store,
            clock,
            interval=config.purge_interval.total_seconds(),
            batch=config.purge_batch,
        )
        shortest = min(
            (spec.idle_timeout for spec in self._specs.values() if spec.idle_timeout is not None),
            default=config.idle_timeout.total_seconds(),
        )
        self._watchdog = Watchdog()
        self._passivation = Passivation(
            clock,
            self._dispatcher.passivate_idle,
            min(shortest, config.idle_timeout.total_seconds()),
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        store: str | Store,
        *,
        entities: Iterable[type[Entity]],
        clock: Clock | None = None,
        config: RuntimeConfig | None = None,
        namespace: str | None = None,
        durability: Durability = "full",
        node_id: str | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> AsyncIterator[Runtime]:
        """Open a runtime on ``store`` for ``entities``; close it by leaving the block.

        Args:
            store: a store URL (``sqlite:///app.db``, ``sqlite:///:memory:``) or an open
                :class:`persistence.Store` (which the runtime then does not close).
            entities: the Entity subclasses this runtime hosts.
            clock: the source of time (default: the system clock).
            config: tunables (default: ``RuntimeConfig()``).
            namespace: a tenant prefix for every entity name (``acme`` stores ``payment``
                actors as ``acme:payment``), so tenants sharing a store never share keys.
            durability: for a store URL: ``"full"`` (the default) makes every commit survive
                power loss (SQLite ``synchronous=FULL``); ``"process"`` makes commits survive a
                crash of this process but not of the machine: the last commits before a power
                loss or kernel crash may be lost (``synchronous=NORMAL``), for much cheaper
                commits. Not accepted with an open store, which was opened with its own.
            node_id: on a store shared by several nodes (``postgresql://...``), this node's
                name in logs and in the store (default: host name and process id). Any
                number of nodes may run on one store; each actor runs on one of them at a
                time, and ``start``, ``ask``, ``tell`` and ``find`` work from every node.
            tracer_provider: where this runtime's OpenTelemetry spans go (default: the global
                tracer provider). Only with ``opentelemetry-api`` installed (the ``otel``
                extra); without it the runtime makes no spans. See ``docs/tracing.md``.

        Raises:
            InvalidEntity: an entity class cannot be registered, or two share a name.
            InvalidStoreUrl, StoreUnavailable, SchemaTooNew: the store cannot be opened.
        """
        if isinstance(entities, type) or not isinstance(entities, Iterable):
            raise TypeError(f"entities must be an iterable of Entity subclasses, got {entities!r}")
        if config is not None and not isinstance(config, RuntimeConfig):
            raise TypeError(f"config must be a RuntimeConfig, got {type(config).__name__}")
        if not isinstance(store, str) and not callable(getattr(store, "write", None)):
            raise TypeError(
                f"store must be a store URL or a persistence.Store, got {type(store).__name__}"
            )
        if namespace is not None and not (
            isinstance(namespace, str) and _NAMESPACE.match(namespace)
        ):
            raise ValueError(
                "namespace must be letters, digits, '_', '.' or '-' starting with a letter "
                f"(at most 64 characters), got {namespace!r}"
            )
        specs: dict[str, EntitySpec] = {}
        for entity in entities:
            spec = entity_spec(entity)
            if namespace is not None:
                spec = dataclasses.replace(spec, name=f"{namespace}:{spec.name}")
            if spec.name in specs and specs[spec.name].cls is not entity:
                raise InvalidEntity(
                    f"entity name {spec.name!r} is used by both {specs[spec.name].cls.__qualname__}"
                    f" and {entity.__qualname__}"
                )
            specs[spec.name] = spec
        if not specs:
            raise InvalidEntity("Runtime.open needs at least one entity type")
        if durability != "full" and not isinstance(store, str):
            raise ValueError("durability applies to a store URL; an open store keeps its own")
        if node_id is not None and not (isinstance(node_id, str) and _NODE_ID.match(node_id)):
            raise ValueError(
                f"node_id must be 1 to 100 letters, digits, '_', '.', ':' or '-', got {node_id!r}"
            )
        owned = isinstance(store, str)
        opened = await open_store(store, durability=durability) if isinstance(store, str) else store
        try:
            if node_id is not None and not isinstance(opened, Leases):
                raise ValueError(
                    "node_id applies to a store that several nodes share (postgresql://...)"
                )
            rt = cls(
                opened,
                specs,
                clock or SystemClock(),
                config if config is not None else RuntimeConfig(),
                _tracing.tracer(tracer_provider),
            )
            if isinstance(opened, Leases):
                rt._cluster = Cluster(
                    rt,
                    opened,
                    node=node_id or f"{socket.gethostname()}-{os.getpid()}",
                    lease=rt.config.lease.total_seconds(),
                )
            async with rt._running():
                yield rt
        finally:
            if owned:
                await opened.close()

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        _future.use_running_backend()
        try:
            async with anyio.create_task_group() as services:
                self._services = services
                cluster = self._cluster
                if cluster is not None:
                    await self._opening(cluster.join)
                    self._writer.prepare = cluster.prepare
                    self._dispatcher.cluster = cluster
                await services.start(self._writer.run)
                await services.start(self._retention.run)
                untrack = track(self.clock, self._quiet)
                try:
                    async with anyio.create_task_group() as drivers:
                        # Recovery only fills mailboxes; no turn runs until every stored
                        # message is back in order, or a recovered turn's outgoing message
                        # could overtake (and be delivered again with) older stored mail.
                        if cluster is None:
                            await self._recover()
                        else:
                            await self._opening(cluster.take_over)
                        self._dispatcher.start_drivers(drivers)
                        await drivers.start(self._timers.run)
                        await drivers.start(self._passivation.run)
                        await drivers.start(self._watchdog.run)
                        if cluster is not None:
                            await drivers.start(cluster.run)
                        log.info("runtime_opened", entities=sorted(self._specs))
                        try:
                            yield
                        finally:
                            self._closed = True
                            self._dispatcher.accepting_turns = False
                            drivers.cancel_scope.cancel()
                finally:
                    untrack()
                    self._dispatcher.drivers = None
                    self._writer.close()
                    limit = self.config.close_timeout.total_seconds()
                    with anyio.move_on_after(limit, shield=True):
                        await self._writer.stopped.wait()
                    # Past the limit (or cancelled from outside): stop the writer, and answer
                    # its callers only once it has stopped, so that none is missed.
                    self._writer.cancel()
                    with anyio.CancelScope(shield=True):
                        await self._writer.stopped.wait()
                        if cluster is not None:
                            with anyio.move_on_after(limit):
                                await cluster.leave()
                    self._dispatcher.abandon()
                    self._services = None
                    services.cancel_scope.cancel()
                    log.info("runtime_closed")
        except BaseExceptionGroup as group:
            # Surface a lone failure (the caller's own, usually) as itself, not wrapped in
            # one group per task group it crossed.
            lone: BaseException = group
            while isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
                lone = lone.exceptions[0]
            if lone is group:
                raise
            raise lone from None

    async def _recover(self) -> None:
        """Put every stored message back in its mailbox, with attempts counted at the heads.

        The head of a mailbox may have been running when the process stopped. The first
        time, that counts as an attempt and the message runs as usual (though without
        pipelining). A message at the head again is a suspect: it runs alone (see
        ``_solo``), its attempt recorded just before, so that each further crash is blamed
        on it only if it was running. One with ``max_attempts`` attempts goes to the dead
        letters instead, and its actor goes on with the next message.
        """
        after: ActorId | None = None
        recovered = 0
        while True:
            actors = await self._opening(
                partial(self._store.actors_with_mail, after=after, limit=_RECOVERY_PAGE)
            )
            if not actors:
                break
            recovered += await self._recover_mailboxes(actors, None, self._opening)
            after = actors[-1]
        if recovered:
            log.info("messages_recovered", count=recovered)

    async def _recover_mailboxes(
        self,
        actors: Iterable[ActorId],
        epochs: Mapping[ActorId, int] | None,
        call: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]],
    ) -> int:
        """Deliver the stored mail of ``actors``, attempts counted at the heads (see _recover).

        Multi-node, the actors were taken over from a node that stopped (``epochs``: this
        node's lease on each), and their mail runs here: each one's driver reads it again
        (``Dispatcher.claimed``), since a wake-up may have made it read and run some of it
        while this looked. Returns how many messages were found.
        """
        mailboxes: list[list[MessageRecord]] = []
        first: list[int] = []  # heads counted for the first time
        for actor in actors:
            if actor.entity not in self._specs:
                log.warning("mail_for_unknown_entity", entity=actor.entity, key=actor.key)
                continue
            mailbox: list[MessageRecord] = await call(partial(self._store.load_mailbox, actor))
            while mailbox and mailbox[0].attempts >= self.config.max_attempts:
                head = mailbox.pop(0)
                reason = (
                    f"the process stopped while it could have been running, {head.attempts} times"
                )
                await self._dispatcher.bury(Envelope(head), head.attempts, reason).wait()
            if mailbox and not mailbox[0].attempts:
                # As stored once the attempt is recorded below.
                mailbox[0] = msgspec.structs.replace(mailbox[0], attempts=1)
                first.append(mailbox[0].id)
            mailboxes.append(mailbox)
        await call(partial(self._store.record_attempts, first))
        counted = set(first)
        cluster = self._cluster
        delivered = 0
        for mailbox in mailboxes:
            if epochs is not None and mailbox:
                head = mailbox[0]
                actor = ActorId(entity=head.entity, key=head.key)
                suspect = None if head.id in counted else head.id
                self._dispatcher.claimed(actor, epochs[actor], suspect=suspect)
                delivered += len(mailbox)
                continue
            for n, record in enumerate(mailbox):
                reply = None if cluster is None else cluster.reply_for(record)
                envelope = self._dispatcher.deliver(record, reply, created=False)
                envelope.suspect = n == 0 and record.id not in counted
                delivered += 1
        return delivered

    # -- public API ----------------------------------------------------------------------

    def statistics(self) -> RuntimeStatistics:
        """A snapshot of the runtime's counters."""
        dispatcher = self._dispatcher
        return RuntimeStatistics(
            activations=len(dispatcher.activations),
            peak_activations=dispatcher.activations.peak,
            activated=dispatcher.activated,
            passivated=dispatcher.passivated,
            turns=dispatcher.turns,
            commits=self._writer.batches,
            committed_items=self._writer.items,
            timers_fired=self._timers.fired,
            purged=self._retention.purged,
            queued=dispatcher.queued,
            dead_lettered=dispatcher.dead_lettered,
        )

    async def _opening(self, call: Callable[[], Awaitable[T]]) -> T:
        """A store call made while opening, retried through transient failures.

        Raises:
            StorageError: the store kept failing (``Runtime.open`` fails with it).
        """
        try:
            return await retrying(call, what="recovery")
        except StoreError as exc:
            raise storage_error(exc) from exc

    # -- dead letters -------------------------------------------------------------------

    async def dead_letters(
        self, entity: type[Entity] | None = None, *, after: int | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """The dead letters of this runtime's entities (or of ``entity``), oldest first.

        Args:
            entity: only those of this entity type.
            after: the ``id`` of the last dead letter of the previous page.
            limit: the page size, 1 to 1000.

        Raises:
            UnknownEntity: ``entity`` is not registered with this runtime.
            InvalidQuery: ``limit`` or ``after`` is out of range.
            StorageError, RuntimeClosed: the store could not be read.
        """
        names = self._specs.keys() if entity is None else [self._spec(entity).name]
        check_limit(limit)
        if after is not None:
            _check_dead_letter_id(after, what="after")
        rows = await self._read(
            lambda: self._store.dead_letters(entities=frozenset(names), after=after, limit=limit)
        )
        return [DeadLetter.of(row) for row in rows]

    async def retry_dead_letter(self, dead_letter: int) -> bool:
        """Put a dead letter back at the end of its actor's mailbox; ``False`` if unknown.

        Only dead letters of this runtime's entities are known to it.

        The message runs again as if new (its attempts start over); a caller that was told
        ``MessageDeadLettered`` is not answered again, so ask again by idempotency key to
        get its reply.

        Raises:
            ActorNotFound: its actor no longer exists (the dead letter is kept).
            IdempotencyConflict: another message holds its idempotency key now (kept).
            StorageError, RuntimeClosed: nothing was changed.
        """
        _check_dead_letter_id(dead_letter)
        outcome = await self._request(
            Request(
                item=RetryDeadLetter(dead_letter=dead_letter, entities=frozenset(self._specs)),
                accepted=Future(),
            )
        )
        assert isinstance(outcome, RetryOutcome)
        check_retried(dead_letter, outcome)
        return outcome.message is not None

    async def discard_dead_letter(self, dead_letter: int) -> bool:
        """Delete a dead letter for good; ``False`` if there is none with that id.

        Only dead letters of this runtime's entities are known to it.

        Raises:
            StorageError, RuntimeClosed: nothing was changed.
        """
        _check_dead_letter_id(dead_letter)
        return await self._read(
            lambda: self._store.discard_dead_letter(dead_letter, entities=frozenset(self._specs))
        )

    def _quiet(self) -> bool:
        """Whether nothing is under way: no commit, no turn, no service awake.

        A test clock (``actors.testing.VirtualClock``) waits for this after moving time, so
        that everything due by then has run when ``advance`` returns.
        """
        return (
            self._writer.pending == 0
            and self._dispatcher.working == 0
            and not self._timers.alarm.busy
            and not self._retention.alarm.busy
            and not self._passivation.alarm.busy
        )

    def _spec(self, entity: type[Entity]) -> EntitySpec:
        spec = self._by_class.get(entity) if isinstance(entity, type) else None
        if spec is None:
            name = getattr(entity, "__qualname__", repr(entity))
            raise UnknownEntity(
                f"{name} is not an entity of this runtime (known: {', '.join(sorted(self._specs))})"
            )
        return spec

    def ref(self, entity: type[E], key: str) -> ActorRef[E]:
        """A reference to the actor of ``entity`` with ``key``; it is created on first use.

        Raises:
            UnknownEntity: ``entity`` is not registered with this runtime.
            InvalidKey: ``key`` cannot name an actor.
        """
        return ActorRef(self, self._spec(entity), check_key(key), None)

    @overload
    async def start(
        self,
        entity: type[E],
        key: str,
        payload: Any = ...,
        *,
        handler: None = None,
        attributes: Mapping[str, Any] | None = None,
        retention: timedelta | None = None,
    ) -> StartHandle[E, Any]: ...
    @overload
    async def start(
        self,
        entity: type[E],
        key: str,
        *,
        handler: Callable[[E, Context], Awaitable[R]],
        attributes: Mapping[str, Any] | None = None,
        retention: timedelta | None = None,
    ) -> StartHandle[E, R]: ...
    @overload
    async def start(
        self,
        entity: type[E],
        key: str,
        payload: P,
        *,
        handler: Callable[[E, Context, P], Awaitable[R]],
        attributes: Mapping[str, Any] | None = None,
        retention: timedelta | None = None,
    ) -> StartHandle[E, R]: ...
    async def start(
        self,
        entity: type[E],
        key: str,
        payload: Any = _codec.NO_PAYLOAD,
        *,
        handler: Any = None,
        attributes: Mapping[str, Any] | None = None,
        retention: timedelta | None = None,
    ) -> StartHandle[E, Any]:
        """Create the actor with its first message, or reach the one that exists: atomically.

        Of any number of concurrent starts of one key, exactly one sees ``created=True``.
        A start that finds the actor active delivers its message as a duplicate (its reply:
        the actor's result, by default); one that finds it completed within its retention
        window gets the stored result without running anything.

        Args:
            entity: the entity type.
            key: the actor's key.
            payload: the start handler's payload.
            handler: the start handler (default: the entity's ``@handler(start=True)``, or its
                only handler).
            attributes: registry attributes of the new actor.
            retention: how long to keep the record after completion (default: the entity's).

        Returns:
            A handle with ``created``, ``actor`` and ``reply()``.

        Raises:
            UnknownEntity, InvalidKey, UnknownHandler, InvalidPayload: bad input; nothing was
                stored.
            ValueError: bad attributes or retention; nothing was stored.
            StorageError, RuntimeClosed: the start was not accepted.
        """
        spec = self._spec(entity)
        actor: ActorRef[E] = ActorRef(self, spec, check_key(key), None)
        if handler is None:
            if spec.start_handler is None:
                raise UnknownHandler(
                    f"entity {spec.name!r} has several handlers and none is marked "
                    "@handler(start=True); pass handler="
                )
            handler = spec.start_handler.name
        _, name, data = actor._message(handler, payload)
        attrs = check_attributes(attributes or {}, spec.attribute_types)
        keep = spec.retention
        if retention is not None:
            keep = check_retention(retention).total_seconds()
        tracer = _tracing.live(self._tracer)
        if tracer is None:
            return await self._start(spec, actor, name, data, attrs, keep)
        with _tracing.admission(tracer, "start", spec.name, actor.key, name) as span:
            return await self._start(spec, actor, name, data, attrs, keep, span)

    async def _start(
        self,
        spec: EntitySpec,
        actor: ActorRef[E],
        name: str,
        data: bytes,
        attrs: dict[str, AttributeValue],
        keep: float,
        span: Span | None = None,
    ) -> StartHandle[E, Any]:
        """``start`` once its input is checked; ``span`` is its admission span, if tracing."""
        reply: Future[Any] = Future()
        adopts = spec.on_duplicate is None
        if adopts:
            duplicate = await self._duplicate(spec, actor._id, reply)
            if duplicate is not None:
                if span is not None:
                    _tracing.answered(span, duplicate)
                return StartHandle(self, actor._at(duplicate), False, reply)
        # A retention of its own goes with the message too: if it meets a duplicate policy,
        # the generation that policy starts (supersede, re-admission) keeps it.
        meta = encode_attributes(attrs, retention=None if keep == spec.retention else keep)
        message = NewMessage(kind=MessageKind.START, handler=name, payload=data, meta=meta)
        request = Request(
            item=Admit(
                actor=actor._id,
                message=message,
                init=ActorInit(retention=keep, attributes=attrs),
                to_terminal=not adopts,
            ),
            accepted=Future(),
            reply=reply,
            trace=None if span is None else _tracing.creation(span),
        )
        admitting: Future[None] | None = None
        if adopts and actor._id not in self._admitting:
            # Starts of this key that come meanwhile wait for this one's outcome, then
            # adopt in memory (see _duplicate).
            admitting = self._admitting[actor._id] = Future()
        try:
            outcome = await self._request(request)
        finally:
            if admitting is not None:
                del self._admitting[actor._id]
                admitting.set(None)
        assert isinstance(outcome, AdmitOutcome)
        if span is not None:
            _tracing.admitted(span, outcome)
        if outcome.message is None:
            # Completed within its retention window: answer from the stored record.
            self._settle(reply, spec, actor._id, outcome)
            if outcome.expires_at is not None:
                ending = Ending(outcome.generation, outcome.status, outcome.result, outcome.error)
                self._results.remember(actor._id, ending, outcome.expires_at)
        return StartHandle(self, actor._at(outcome.generation), outcome.created, reply)

    async def _duplicate(self, spec: EntitySpec, actor: ActorId, reply: Future[Any]) -> int | None:
        """Answer a start of an entity with the default duplicate policy without the store.

        What the store would make of it, when the runtime already knows: the actor ended
        within its retention window (the stored result) or is active here (adopt its result).
        Returns the generation, with ``reply`` answered or waiting for the result; ``None``
        when only the store knows.
        """
        pending = self._admitting.get(actor)
        if pending is not None:
            await pending.wait()  # a start of this key is being admitted: learn from it
        ended = self._results.get(actor, self.clock.now())
        generation = None if ended is None else ended.generation
        if generation is None:
            generation = self._dispatcher.adopt(actor, reply)
        if generation is not None and self._closed:
            raise RuntimeClosed("the runtime is closed")
        if ended is not None:
            self._settle(reply, spec, actor, ended)
        return generation

    # -- the registry ----------------------------------------------------------------------

    async def find(
        self,
        entity: type[E],
        *,
        where: Mapping[str, AttributeValue | Operator] | None = None,
        status: Status | str | Iterable[Status | str] | None = None,
        generation: int | None = None,
        created: Operator | None = None,
        updated: Operator | None = None,
        completed: Operator | None = None,
        order_by: str = "key",
        limit: int = 50,
        after: str | None = None,
    ) -> Page[E]:
        """One page of the live actors of ``entity`` that match every term.

        Args:
            entity: the entity type.
            where: attribute name to a value (equality) or an operator (``Gt``, ``Ge``,
                ``Lt``, ``Le``, ``Between``, ``In``, ``Prefix``, ``Exists``, ``Missing``).
                A value matches attributes of its own kind only (numbers, strings, booleans,
                datetimes).
            status: a status, or several (any of them).
            generation: only actors at this generation.
            created: a range operator (``Gt``, ``Ge``, ``Lt``, ``Le``, ``Between``) of
                timezone-aware datetimes on when the generation was created.
            updated: the same, on when it last changed.
            completed: the same, on when it ended.
            order_by: ``key`` (the default), ``created_at``, ``updated_at``,
                ``completed_at`` or an attribute name; ``-`` in front for descending. Ties go
                by key. Ordering by an attribute or ``completed_at`` leaves out actors
                without one.
            limit: the page size, 1 to 1000.
            after: the ``cursor`` of the previous page (keyset pagination: stable while
                actors change; an actor whose sort value changes may move).

        Returns:
            A :class:`Page`: its ``items`` (each with a ``ref``) and the next ``cursor``.

        Raises:
            UnknownEntity, InvalidQuery: a bad query; nothing was read.
            StorageError, RuntimeClosed: the store could not be read.
        """
        spec = self._spec(entity)
        query, order = compile_query(
            spec,
            now=self.clock.now(),
            where=where,
            status=status,
            generation=generation,
            created=created,
            updated=updated,
            completed=completed,
            order_by=order_by,
            limit=limit,
            after=after,
        )
        query = with_lookahead(query)
        rows, cursor = page_of(await self._read(lambda: self._store.find(query)), order, limit)
        return Page(items=[info(self, spec, row) for row in rows], cursor=cursor)

    async def find_all(
        self,
        entity: type[E],
        *,
        where: Mapping[str, AttributeValue | Operator] | None = None,
        status: Status | str | Iterable[Status | str] | None = None,
        generation: int | None = None,
        created: Operator | None = None,
        updated: Operator | None = None,
        completed: Operator | None = None,
        order_by: str = "key",
        page_size: int = 200,
    ) -> AsyncIterator[ActorInfo[E]]:
        """Every live actor of ``entity`` matching the terms, page by page (see :meth:`find`).

        Raises:
            UnknownEntity, InvalidQuery: a bad query (at the first iteration).
            StorageError, RuntimeClosed: the store could not be read.
        """
        check_limit(page_size, what="page_size")
        after: str | None = None
        while True:
            page = await self.find(
                entity,
                where=where,
                status=status,
                generation=generation,
                created=created,
                updated=updated,
                completed=completed,
                order_by=order_by,
                limit=page_size,
                after=after,
            )
            for item in page.items:
                yield item
            if page.cursor is None:
                return
            after = page.cursor

    async def count(
        self,
        entity: type[E],
        *,
        where: Mapping[str, AttributeValue | Operator] | None = None,
        status: Status | str | Iterable[Status | str] | None = None,
        generation: int | None = None,
        created: Operator | None = None,
        updated: Operator | None = None,
        completed: Operator | None = None,
    ) -> int:
        """How many live actors of ``entity`` match every term (see :meth:`find`).

        Raises:
            UnknownEntity, InvalidQuery: a bad query; nothing was read.
            StorageError, RuntimeClosed: the store could not be read.
        """
        query, _ = compile_query(
            self._spec(entity),
            now=self.clock.now(),
            where=where,
            status=status,
            generation=generation,
            created=created,
            updated=updated,
            completed=completed,
        )
        return await self._read(lambda: self._store.count(query))

    async def _read(self, read: Callable[[], Awaitable[T]]) -> T:
        """A store read, its errors as the runtime's."""
        if self._closed:
            raise RuntimeClosed("the runtime is closed")
        try:
            return await read()
        except StoreError as exc:
            raise storage_error(exc) from exc

    # -- internals used by refs ------------------------------------------------------------

    async def _request(self, request: Request) -> WriteOutcome:
        """Submit ``request`` (see ``_submit``) and wait for its commit."""
        self._submit(request)
        outcome: WriteOutcome = await request.accepted.wait()
        return outcome

    def _submit(self, request: Request) -> None:
        """Hand ``request`` to the writer; admissions and enqueues are bounded.

        Its outcome goes to ``request.accepted`` (and ``request.then``) once committed; the
        dispatcher stops counting it against its actor's mailbox then.

        Raises:
            Overloaded: the actor's mailbox, or the runtime's work in memory, is full.
            RuntimeClosed: the runtime is closed.
        """
        if self._closed:
            raise RuntimeClosed("the runtime is closed")
        item = request.item
        actor = item.actor if isinstance(item, Admit | Enqueue) else None
        dispatcher = self._dispatcher
        if actor is not None:
            held = self._writer.pending + dispatcher.queued
            if held >= self.config.max_in_flight:
                raise Overloaded(
                    f"the runtime holds {held} messages and commits in memory (max_in_flight "
                    f"{self.config.max_in_flight}); nothing was stored, try again later"
                )
            depth = dispatcher.depth(actor)
            if depth >= self.config.max_mailbox:
                raise Overloaded(
                    f"{actor} has {depth} messages not yet handled (max_mailbox "
                    f"{self.config.max_mailbox}); nothing was stored, try again later"
                )
        try:
            self._writer.submit(request)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise RuntimeClosed("the runtime is closed") from None
        if actor is not None:
            dispatcher.submitted[actor] += 1
            request.counted = True

    async def _traced(
        self, request: Request, operation: str, ref: ActorRef[Any], handler: str
    ) -> WriteOutcome:
        """``_request``, inside an admission span when tracing: ``ask``, ``tell``, ``cancel``."""
        tracer = _tracing.live(self._tracer)
        if tracer is None:
            return await self._request(request)
        actor = ref._id
        with _tracing.admission(tracer, operation, actor.entity, actor.key, handler) as span:
            request.trace = _tracing.creation(span)
            outcome = await self._request(request)
            _tracing.admitted(span, outcome)
            return outcome

    def _enqueue(
        self,
        ref: ActorRef[Any],
        spec: EntitySpec,
        kind: MessageKind,
        name: str,
        data: bytes,
        idempotency_key: str | None = None,
        *,
        create: bool = True,
    ) -> Enqueue:
        if idempotency_key is not None:
            check_key(idempotency_key, what="an idempotency key")
        return Enqueue(
            actor=ref._id,
            message=NewMessage(
                kind=kind, handler=name, payload=data, idempotency_key=idempotency_key
            ),
            generation=ref.generation,
            init=self._inits[spec.name] if create and ref.generation is None else None,
        )

    def _rejected(self, ref: ActorRef[Any], outcome: EnqueueOutcome) -> Exception:
        if outcome.status is None or (
            ref.generation is not None and outcome.generation != ref.generation
        ):
            return ActorNotFound(f"no actor {ref._id}" + _generation_text(ref.generation))
        return ActorCompleted(
            entity=ref.entity,
            key=ref.key,
            generation=outcome.generation,
            status=outcome.status.value,
        )

    def _repeat(
        self,
        ref: ActorRef[Any],
        spec: EntitySpec,
        name: str,
        data: bytes,
        outcome: EnqueueOutcome,
        reply: Future[Any] | None = None,
    ) -> None:
        """For a repeated idempotency key: answer ``reply`` with its stored answer, if any.

        While the first message is unhandled, ``reply`` follows it (see ``Dispatcher``).

        Raises:
            IdempotencyConflict: the key was first used for another handler or payload.
        """
        first = outcome.repeat_of
        assert first is not None
        if (first.handler, first.payload) != (name, data):
            difference = (
                f"handler {first.handler!r}" if first.handler != name else "a different payload"
            )
            raise IdempotencyConflict(
                entity=ref.entity,
                key=ref.key,
                idempotency_key=str(first.idempotency_key),
                difference=difference,
            )
        stored = outcome.stored_reply
        if stored is not None and reply is not None:
            self._answer_stored(reply, spec, first, outcome.generation, stored)

    def _answer_stored(
        self,
        answer: Future[Any],
        spec: EntitySpec,
        first: MessageRecord,
        generation: int,
        stored: StoredReply,
    ) -> None:
        """Answer ``answer`` with the reply kept for ``first`` (an idempotency key's)."""
        name = first.handler
        if stored.error is not None:
            error_type, message = read_error_info(stored.error)
            answer.fail(
                HandlerFailed(
                    entity=first.entity,
                    key=first.key,
                    generation=generation,
                    handler=name,
                    error_type=error_type,
                    error_message=message,
                )
            )
            return
        what = f"stored reply of {spec.name}.{name}"
        try:
            answer.set(
                _codec.decode(stored.reply or b"null", spec.handler(name).reply_type, what=what)
            )
        except InvalidPayload as exc:
            answer.fail(exc)

    async def _ask(
        self,
        ref: ActorRef[Any],
        spec: EntitySpec,
        name: str,
        data: bytes,
        timeout: timedelta | None,
        idempotency_key: str | None,
    ) -> Any:
        with _deadlock.asking(ref._id, f"ask {name}") as chain:
            reply: Future[Any] = Future()
            request = Request(
                item=self._enqueue(ref, spec, MessageKind.REQUEST, name, data, idempotency_key),
                accepted=Future(),
                reply=reply,
                chain=chain,
                then=partial(self._asked, ref, spec, name, data, reply),
            )
            with self._deadline(ref, name, timeout):
                if _tracing.live(self._tracer) is None:
                    # Only the reply is awaited: a repeat or a refusal answers it too (_asked).
                    self._submit(request)
                else:
                    await self._traced(request, "ask", ref, name)  # its span ends when stored
                return await reply.wait()

    def _asked(
        self,
        ref: ActorRef[Any],
        spec: EntitySpec,
        name: str,
        data: bytes,
        reply: Future[Any],
        outcome: WriteOutcome,
    ) -> None:
        """An ask's enqueue committed: answer its reply if no message of its own was stored.

        Called by the dispatcher; whatever goes wrong goes to the caller, not the writer.
        """
        try:
            assert isinstance(outcome, EnqueueOutcome)
            if outcome.repeat_of is not None:
                # The stored reply, or the first message's once it is handled.
                self._repeat(ref, spec, name, data, outcome, reply)
            elif outcome.message is None:
                reply.fail(self._rejected(ref, outcome))
        except Exception as exc:  # IdempotencyConflict, a stored reply that no longer decodes
            reply.fail(exc)

    async def _tell(
        self,
        ref: ActorRef[Any],
        spec: EntitySpec,
        name: str,
        data: bytes,
        idempotency_key: str | None,
    ) -> None:
        request = Request(
            item=self._enqueue(ref, spec, MessageKind.TELL, name, data, idempotency_key),
            accepted=Future(),
        )
        if self._tracer is None:  # no opentelemetry-api: not a call more
            outcome = await self._request(request)
        else:
            outcome = await self._traced(request, "tell", ref, name)
        assert isinstance(outcome, EnqueueOutcome)
        if outcome.repeat_of is not None:
            self._repeat(ref, spec, name, data, outcome)
        elif outcome.message is None:
            raise self._rejected(ref, outcome)

    async def _cancel(self, ref: ActorRef[Any], reason: str) -> bool:
        data = _codec.encode(reason, what="cancel reason", expected=str)
        reply: Future[Any] = Future()
        request = Request(
            item=self._enqueue(ref, ref._spec, MessageKind.CANCEL, "cancel", data, create=False),
            accepted=Future(),
            reply=reply,
        )
        if self._tracer is None:  # no opentelemetry-api: not a call more
            outcome = await self._request(request)
        else:
            outcome = await self._traced(request, "cancel", ref, "cancel")
        assert isinstance(outcome, EnqueueOutcome)
        if outcome.message is None:
            if (
                outcome.status is None
                or outcome.status is Status.ACTIVE
                or ref.generation not in (None, outcome.generation)
            ):
                raise self._rejected(ref, outcome)
            return False  # it had already ended
        cancelled: bool = await reply.wait()
        return cancelled

    def _deadline(
        self, ref: ActorRef[Any], what: str, timeout: timedelta | None
    ) -> AbstractContextManager[None]:
        limit = timeout if timeout is not None else self.config.ask_timeout
        if limit is None:
            return _NO_DEADLINE
        seconds = limit.total_seconds()
        if isinstance(self.clock, SystemClock) or self._services is None or self._closed:
            return deadline(seconds, f"{what} on {ref._id}")
        return clock_deadline(self.clock, self._services, seconds, f"{what} on {ref._id}")

    async def _record(self, ref: ActorRef[Any]) -> ActorRecord:
        if self._closed:
            raise RuntimeClosed("the runtime is closed")
        try:
            record = await self._store.load_actor(ref._id)
        except StoreError as exc:
            raise storage_error(exc) from exc
        if (
            record is None
            or (record.expires_at is not None and record.expires_at <= self.clock.now())
            or (ref.generation is not None and record.generation != ref.generation)
        ):
            raise ActorNotFound(f"no actor {ref._id}" + _generation_text(ref.generation))
        return record

    async def _result(self, ref: ActorRef[Any], timeout: timedelta | None) -> Any:
        _deadlock.waiters(ref._id, "result")
        with self._deadline(ref, "result", timeout):
            record = await self._record(ref)
            if record.status is Status.ACTIVE:
                bound = ref._at(record.generation)
                done = self._dispatcher.watch(ref._id, record.generation)
                try:
                    record = await self._record(bound)  # it may have completed meanwhile
                    if record.status is Status.ACTIVE:
                        if await done.wait() is Status.SUPERSEDED:
                            # Its record is now the next generation's: report the ending.
                            raise ActorCompleted(
                                entity=ref.entity,
                                key=ref.key,
                                generation=record.generation,
                                status=Status.SUPERSEDED.value,
                            )
                        record = await self._record(bound)
                finally:
                    self._dispatcher.unwatch(ref._id, bound.generation or 0, done)
            reply: Future[Any] = Future()
            self._settle(reply, ref._spec, ref._id, record)
            return await reply.wait()

    def _settle(self, reply: Future[Any], spec: EntitySpec, actor: ActorId, ended: _Ended) -> None:
        """Answer ``reply`` from a terminal actor's stored result or error."""
        generation, status, result, error = (
            ended.generation,
            ended.status,
            ended.result,
            ended.error,
        )
        if status is Status.COMPLETED:
            try:
                reply.set(
                    _codec.decode(result or b"null", spec.result_type, what=f"result of {actor}")
                )
            except InvalidPayload as exc:
                reply.fail(exc)
        elif status is Status.FAILED:
            error_type, message = read_error_info(error)
            reply.fail(
                ActorFailed(
                    entity=actor.entity,
                    key=actor.key,
                    generation=generation,
                    error_type=error_type,
                    error_message=message,
                )
            )
        else:
            reply.fail(
                ActorCompleted(
                    entity=actor.entity, key=actor.key, generation=generation, status=status.value
                )
            )

    async def _await_reply(
        self, actor: ActorRef[Any], reply: Future[Any], timeout: timedelta | None
    ) -> Any:
        if reply.done():  # answered already (from memory, say): nothing to wait for
            return reply.result()
        _deadlock.waiters(actor._id, "reply")
        with self._deadline(actor, "reply", timeout):
            return await reply.wait()


_NO_DEADLINE: AbstractContextManager[None] = nullcontext()
"""``_deadline`` without a limit: one instance for every call (it holds no state)."""


def _check_dead_letter_id(value: object, *, what: str = "dead_letter") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQuery(f"{what} must be a dead letter id (an int), got {value!r}")


def _generation_text(generation: int | None) -> str:
    return "" if generation is None else f" at generation {generation}"
