"""Mailboxes: per-actor order, wake-ups, and one turn at a time per actor.

The dispatcher is the writer's host. After each commit it delivers the newly stored messages to
their actors' mailboxes in id order, releases the replies of committed turns (the output gate),
and wakes whoever waits for a completion. An actor with mail has exactly one driver task, which
runs its turns in mailbox order and hands each finished turn to the writer without waiting for
the commit (pipelining); a failed commit resets the actor from the store.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskGroup

from actors import _codec, _deadlock, _tracing
from actors._activation import Activation, ActivationTable, Ending, Envelope
from actors._context import ADOPT, SUPERSEDE
from actors._deadlock import Chain
from actors._future import Future
from actors._retry import retrying
from actors._solo import Solo
from actors._turn import READMIT, TurnResult, forward, run_turn
from actors._writer import Item, Request, Writer
from actors.errors import (
    ActorNotFound,
    ActorsError,
    MessageDeadLettered,
    RuntimeClosed,
    StorageError,
)
from persistence import (
    ActorId,
    Admit,
    AdmitOutcome,
    BuryMessage,
    BuryOutcome,
    Enqueue,
    EnqueueOutcome,
    FireOutcome,
    MessageKind,
    MessageRecord,
    RetryOutcome,
    Status,
    StoreError,
    TurnOutcome,
    WriteOutcome,
)

if TYPE_CHECKING:
    from actors._cluster import Cluster
    from actors._runtime import Runtime

log = structlog.get_logger("actors.mailbox")

_MAX_BACKOFF = 5.0
# A driver lets other tasks run after this many turns in a row that did not wait for
# anything: often enough for callers and the writer, rarely enough to cost little.
_TURNS_PER_CHECKPOINT = 16
# Driver tasks that wait for the next activation with mail (see Dispatcher._driver).
_PARKED_DRIVERS = 128

# How a turn passes the suspect gate (see _solo): it is part of an asking turn, an ordinary
# turn, or a suspect that runs alone.
_PASS, _ORDINARY, _ALONE = 0, 1, 2


def _retiring(act: Activation) -> bool:
    """Whether ``act`` holds an instance that was activated and has an ``on_passivate``."""
    return act.instance is not None and act.hooked and act.spec.on_passivate is not None


def _hook_failed(event: str, act: Activation, exc: Exception) -> None:
    log.error(
        event, entity=act.id.entity, key=act.id.key, error_type=type(exc).__name__, error=str(exc)
    )


def _lease(act: Activation, epoch: int | None, *, created: bool) -> None:
    """``act`` runs under ``epoch`` (multi-node).

    A new epoch is a claim anew (after a release, or a loss): other nodes may have run the
    actor meanwhile, and stored mail for it, so its state and mailbox are read again, unless
    the message that comes with the epoch created its generation.
    """
    if act.epoch != epoch:
        act.epoch = epoch
        if not created:
            act.loaded, act.refresh = False, True


def storage_error(exc: StoreError) -> StorageError:
    error = StorageError(f"the store failed: {exc}", retryable=exc.retryable)
    error.__cause__ = exc
    return error


class Dispatcher:
    def __init__(self, rt: Runtime, writer: Writer, activations: ActivationTable) -> None:
        self._rt = rt
        self._writer = writer
        self.activations = activations
        self.drivers: TaskGroup | None = None
        # Multi-node: the node's membership (None on a store without leases).
        self.cluster: Cluster | None = None
        self.accepting_turns = True
        self._waiters: defaultdict[tuple[ActorId, int], list[Future[Status]]] = defaultdict(list)
        # Duplicate callers adopting a generation's result, answered when it ends.
        self._adopters: defaultdict[tuple[ActorId, int], list[Future[Any]]] = defaultdict(list)
        # Callers that repeated an idempotency key while its message was still unhandled.
        self._followers: defaultdict[int, list[Future[Any]]] = defaultdict(list)
        # Messages for actors that get no activation while the table is full of busy ones.
        self._waiting: OrderedDict[ActorId, list[tuple[Envelope, bool]]] = OrderedDict()
        # Messages held in memory (mailboxes, waiting, in flight), and admissions and
        # enqueues submitted per actor and not yet committed: what backpressure bounds.
        self.queued = 0
        self.submitted: defaultdict[ActorId, int] = defaultdict(int)
        self.solo = Solo()
        # Multi-node: per actor taken over, the head of its mailbox if it ran when its node
        # stopped, for the next refresh of that actor (it runs alone: see _solo).
        self._suspects: dict[ActorId, int] = {}
        self.turns = 0
        self.activated = 0
        self.passivated = 0
        self.dead_lettered = 0
        self._passivating = 0  # on_passivate hooks under way
        # Driver tasks and passivation hooks under way (see Runtime._quiet).
        self.working = 0
        # Driver tasks waiting to be handed an activation, each on its own slot.
        self._parked: list[Future[Activation]] = []

    # -- completion waiters ------------------------------------------------------------

    def watch(self, actor: ActorId, generation: int) -> Future[Status]:
        """A future set to the status with which ``actor``'s ``generation`` ends."""
        future: Future[Status] = Future()
        self._waiters[(actor, generation)].append(future)
        return future

    def unwatch(self, actor: ActorId, generation: int, future: Future[Status]) -> None:
        waiters = self._waiters.get((actor, generation))
        if waiters is not None:
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                del self._waiters[(actor, generation)]

    # -- delivery ----------------------------------------------------------------------

    def deliver(
        self, record: MessageRecord, reply: Future[Any] | None, created: bool, chain: Chain = ()
    ) -> Envelope:
        """Put a committed message in its actor's mailbox and make sure someone drives it.

        An actor with no activation gets one if there is room (an idle activation is
        passivated to make it); otherwise its messages wait, in order, for room. A message
        that a running turn waits on (an ask from a handler) gets in over the cap: every
        activation could be busy waiting on an actor that is itself waiting for room.
        """
        actor = ActorId(entity=record.entity, key=record.key)
        envelope = Envelope(record, reply, chain)
        cluster = self.cluster
        if cluster is not None and record.epoch is None:
            # Another node owns the actor (the store woke it): the reply comes through the
            # store.
            cluster.await_reply(envelope)
            return envelope
        self.queued += 1
        act = self.activations.find(actor)
        if act is None:
            awaited = _deadlock.waiting(chain)
            if not awaited and (actor in self._waiting or not self._room(asking=1)):
                self._waiting.setdefault(actor, []).append((envelope, created))
                return envelope
            act = self._admit(actor, over=awaited)
        if cluster is not None:
            _lease(act, record.epoch, created=created)
        self._put(act, envelope, created)
        return envelope

    def _put(self, act: Activation, envelope: Envelope, created: bool) -> None:
        self.activations.wake(act)
        if created:
            # Its last ending is no longer what a start of this key finds, whatever the
            # clock says (a wall clock may step back to before that ending expired).
            self._rt._results.forget(act.id)
            if act.idle:
                if _retiring(act):
                    act.loaded = False  # the driver passivates the old instance, then loads
                else:
                    act.fresh(envelope.record.generation)
                    self.activated += 1
        act.mailbox.append(envelope)
        if act.running:
            act.nudge()  # its driver may be lingering
        else:
            self._drive_soon(act)

    def _room(self, *, asking: int) -> bool:
        """Whether the table can take one more activation now, passivating one if need be.

        ``asking`` is 1 for an actor not yet waiting, 0 for the first waiting one: a new
        passivation starts only while those under way cannot free enough slots.
        """
        while self.activations.full and self._passivating < len(self._waiting) + asking:
            # More than one victim when asks from turns let the table run over its cap.
            victim = self.activations.least_recently_used()
            if victim is None:
                break
            self.passivate(victim)
        return not self.activations.full

    def _admit(self, actor: ActorId, *, over: bool = False) -> Activation:
        """A new activation of ``actor``, with the messages that waited for it (if any)."""
        act = self.activations.add(actor, self._rt._specs[actor.entity], over=over)
        for envelope, created in self._waiting.pop(actor, ()):
            if self.cluster is not None:
                _lease(act, envelope.record.epoch, created=created)
            self._put(act, envelope, created)
        return act

    def _admit_waiting(self) -> None:
        while self._waiting and self._room(asking=0):
            self._admit(next(iter(self._waiting)))

    def _rest_if_idle(self, act: Activation) -> None:
        """Called when ``act`` may have run out of work: it joins the idle ones."""
        if not act.idle or self.activations.find(act.id) is not act:
            return
        now = self._rt.clock.now()
        self.activations.rest(act, now)
        self._rt._passivation.alarm.wake_by(now + self.idle_timeout(act))
        self._admit_waiting()

    def depth(self, actor: ActorId) -> int:
        """Messages ``actor`` has accepted and not handled, or that are on their way in."""
        act = self.activations.find(actor)
        held = len(self._waiting.get(actor, ())) if act is None else act.held
        return held + self.submitted.get(actor, 0)

    # -- passivation ------------------------------------------------------------------

    def idle_timeout(self, act: Activation) -> float:
        timeout = act.spec.idle_timeout
        return self._rt.config.idle_timeout.total_seconds() if timeout is None else timeout

    def passivate_idle(self, now: float, shortest: float) -> float | None:
        """Passivate the activations idle past their timeout; when the next one may be due."""
        expired, next_due = self.activations.expired(now, self.idle_timeout, shortest)
        for act in expired:
            self.passivate(act)
        return next_due

    def passivate(self, act: Activation) -> None:
        """Drop the idle ``act`` from memory, after its ``on_passivate`` hook if it has one.

        Multi-node: its lease is released first, so that any node may run it next.
        """
        self.activations.wake(act)  # no longer a candidate
        leased = self.cluster is not None and act.epoch is not None
        if not (_retiring(act) or leased) or self.drivers is None:
            self._dropped(act)
            return
        act.passivating = True
        self.working += 1
        self._passivating += 1
        self.drivers.start_soon(self._run_passivate, act, name=f"passivate {act.id}")

    async def _run_passivate(self, act: Activation) -> None:
        try:
            await self._retire(act)
            epoch = act.epoch
            # While the release runs, the activation stays in the table: mail that comes
            # waits in its mailbox (it holds the lease, or claims it anew: a new epoch).
            if (
                self.cluster is not None
                and epoch is not None
                and not act.mailbox
                and await self.cluster.release(act.id, epoch)
                and act.epoch == epoch
            ):
                act.epoch = None
        finally:
            self.working -= 1
            self._passivating -= 1
            act.passivating = False
            if act.dropped:
                pass  # the session was lost meanwhile: drop() has handed everything over
            elif act.mailbox or act.refresh:
                # Mail came while the hook ran: the next instance loads for it.
                act.loaded = False
                self._drive_soon(act)
            else:
                self._dropped(act)
                self._admit_waiting()

    async def _retire(self, act: Activation) -> None:
        """Let go of ``act``'s instance, running ``on_passivate`` if it was activated."""
        instance, hook = act.instance, act.spec.on_passivate
        retiring = _retiring(act)
        act.instance, act.hooked = None, False
        if not retiring or hook is None:
            return
        try:
            with structlog.contextvars.bound_contextvars(entity=act.id.entity, key=act.id.key):
                await hook(instance, act.id.key)
        except Exception as exc:
            _hook_failed("on_passivate_failed", act, exc)

    def _dropped(self, act: Activation) -> None:
        self.activations.remove(act)
        self.passivated += 1
        log.debug("actor_passivated", entity=act.id.entity, key=act.id.key)

    # -- multi-node ---------------------------------------------------------------------

    def drop(self, act: Activation) -> None:
        """Let go of ``act``: this node lost its lease, and another node runs its mail now.

        Turns with a commit in flight come back fenced (or committed, if they made it);
        callers waiting on its other messages wait for the new owner's reply.
        """
        if act.dropped:
            return
        act.dropped = True
        act.refresh = False
        act.nudge()  # a lingering driver
        self.activations.remove(act)
        self._hand_over(act)
        assert self.cluster is not None
        # Turns in flight or running come back fenced (their callers then wait for the new
        # owner too); registered now, so that a new activation here finds their callers.
        for envelope in (*act.in_flight, *([act.current] if act.current else [])):
            self.cluster.await_reply(envelope)

    def _hand_over(self, act: Activation) -> None:
        assert self.cluster is not None
        envelopes = [*act.mailbox, *act.parked]
        act.mailbox.clear()
        act.parked.clear()
        self.queued -= len(envelopes)
        for envelope in envelopes:
            self.cluster.await_reply(envelope)

    def drop_all(self) -> None:
        """This node's session was lost: every lease it held may have moved."""
        assert self.cluster is not None
        for act in self.activations.values():
            self.drop(act)
        for entries in self._waiting.values():
            for envelope, _ in entries:
                self.queued -= 1
                self.cluster.await_reply(envelope)
        self._waiting.clear()

    def claimed(self, actor: ActorId, epoch: int, *, suspect: int | None = None) -> None:
        """This node holds ``actor``'s lease at ``epoch`` now: run its stored mail.

        Its driver reads the stored mailbox (``_refresh``): only the driver does, so a
        message is never taken in twice, whatever wake-ups and takeovers race. ``suspect``:
        the message at its head, if it ran when its node stopped before.
        """
        if suspect is not None:
            self._suspects[actor] = suspect
        act = self.activations.find(actor)
        if act is None:
            # With the messages that waited for room, if any: they are this node's to run.
            act = self._admit(actor, over=True)
        _lease(act, epoch, created=False)
        act.refresh = True
        self.activations.wake(act)
        act.nudge()  # a lingering driver
        self._drive_soon(act)

    def start_drivers(self, drivers: TaskGroup) -> None:
        """Start running turns: every activation with mail gets its driver."""
        self.drivers = drivers
        for act in self.activations.values():
            self._drive_soon(act)

    def _drive_soon(self, act: Activation) -> None:
        if (
            not (act.running or act.passivating)
            and (act.mailbox or act.refresh)
            and self.drivers is not None
        ):
            act.running = True
            self.working += 1
            if self._parked:
                self._parked.pop().set(act)  # a driver task that has finished with another
            else:
                self.drivers.start_soon(self._driver, act, name="actor driver")

    async def _driver(self, act: Activation) -> None:
        """A driver task: drives ``act``, then whichever activation ``_drive_soon`` hands it.

        A finished driver waits for the next activation with mail rather than ending: a
        hand-off costs a wake-up, a new task about four times as much (anyio gives each its
        own cancel scope and event), and an actor that is activated for one message (a
        fan-out) would start one per message. At most ``_PARKED_DRIVERS`` wait.

        Only a driver whose context variables are as they were when it started waits: one
        that a handler or hook left a variable set in ends, so that what one actor's code
        set (a tenant, a log binding) never reaches another actor's turns.
        """
        started = contextvars.copy_context()
        while True:
            await self._drive(act)
            del act  # not kept alive while parked
            if len(self._parked) >= _PARKED_DRIVERS or contextvars.copy_context() != started:
                return
            slot: Future[Activation] = Future()
            self._parked.append(slot)
            try:
                act = await slot.wait()
            except BaseException:
                if slot in self._parked:
                    self._parked.remove(slot)
                elif slot.done():  # handed an activation as the runtime stopped
                    handed = slot.result()
                    handed.running = False
                    self.working -= 1
                raise

    async def _drive(self, act: Activation) -> None:
        try:
            while not await self._stint(act):
                pass  # a turn ran out of time: its scope is spent, the next stint has its own
        finally:
            act.running = False
            self.working -= 1
            if act.dropped:
                self._hand_over(act)
            self._rest_if_idle(act)

    async def _stint(self, act: Activation) -> bool:
        """Run ``act``'s turns in one cancel scope; False when the watchdog cancelled it.

        The scope is the one the watchdog cancels when a handler runs past its timeout
        (``_watchdog``); once cancelled it cannot be awaited in, so the driver leaves it
        right after that turn and carries on in a new one.
        """
        envelope: Envelope | None = None
        turns = 0
        try:
            with anyio.CancelScope() as scope:
                act.scope = scope
                if any(queued.record.attempts for queued in act.in_flight):
                    await act.wait_flushed()  # a timed-out suspect's commit (see below)
                while (act.mailbox or act.refresh or await self._linger(act)) and not act.dropped:
                    if act.failures:
                        await anyio.sleep(min(_MAX_BACKOFF, 0.01 * 2**act.failures))
                    if act.refresh:
                        await act.wait_flushed()
                        await self._refresh(act)
                        continue
                    head = act.mailbox[0]
                    if not act.loaded or head.record.generation > act.generation:
                        await act.wait_flushed()
                        await self._retire(act)  # a new instance replaces it: hooks stay paired
                        await self._load(act)
                        continue
                    if not act.hooked:
                        await self._activate(act)
                        continue
                    if head.record.attempts and act.in_flight:
                        # A message that may have crashed the process runs alone, so that a
                        # crash during its turn is counted against it, not a neighbour.
                        await act.wait_flushed()
                        continue
                    envelope = act.mailbox.popleft()
                    if envelope.record.timer in act.voiding:
                        # A turn awaiting its commit cancelled this timer: hold it until then.
                        act.parked.append(envelope)
                        envelope = None
                        continue
                    if envelope.record.generation != act.generation and (
                        envelope.record.kind is not MessageKind.DUPLICATE
                    ):
                        self.queued -= 1
                        self._gone(envelope, act.id)
                        envelope = None
                        continue
                    gate = self._gate(envelope)
                    if gate == _ORDINARY and not self.solo.pending:
                        self.solo.running += 1  # the fast path of Solo.enter
                    else:
                        await self._enter(gate, envelope)
                    act.current = envelope
                    try:
                        incarnation = act.incarnation
                        if envelope.record.generation == act.generation:
                            tracer = _tracing.live(self._rt._tracer)
                            if tracer is None:
                                result = await run_turn(self._rt, act, envelope)
                            else:
                                running = run_turn(self._rt, act, envelope)
                                result = await _tracing.turn(
                                    tracer, envelope.record, envelope.trace, running
                                )
                        else:
                            # A duplicate admitted just before its generation was replaced
                            # goes on to the current one, like a start that arrived a moment
                            # later.
                            result = forward(act, envelope)
                        if act.incarnation != incarnation or not self.accepting_turns:
                            # Reset while the handler ran, or shutting down: the message is
                            # still stored and goes back to the mailbox (re-run now, or after
                            # restart).
                            act.requeue(envelope)
                            envelope = None
                            if not self.accepting_turns:
                                return True
                            continue
                        act.in_flight.append(envelope)
                        act.void(result.voided)
                        envelope = None
                        self.turns += 1
                        self._writer.submit(result)
                    finally:
                        act.current = None
                        self._leave(gate)
                    if scope.cancel_called:
                        return False  # before any await: a cancelled scope raises in each
                    if result.envelope.record.attempts:
                        await act.wait_flushed()
                    turns += 1
                    if not turns % _TURNS_PER_CHECKPOINT:
                        # Let the writer and callers run: a turn need not wait for anything.
                        await anyio.lowlevel.checkpoint()
            # Also when a turn that timed out was put back (a reset meanwhile) and the next
            # await met the cancellation: the scope swallowed it, and the driver goes on.
            return not scope.cancel_called
        finally:
            act.scope = None
            if envelope is not None:
                act.requeue(envelope)

    async def _refresh(self, act: Activation) -> None:
        """Read ``act``'s stored mailbox: messages other nodes stored join it in id order.

        Runs with no commit of ``act`` in flight and no turn running, so every stored message
        is either in the mailbox already (once this node's own commits are delivered) or new.
        """
        assert self.cluster is not None
        act.refresh = False  # a wake-up that comes during the read asks for another
        try:
            stored = await self._rt._store.load_mailbox(act.id)
            # This node's own commits that the read saw are delivered (to the mailbox, with
            # their callers) before the rest is merged: none comes in twice.
            await self._writer.caught_up(self._writer.taken)
        except StoreError as exc:
            act.failures += 1
            act.refresh = True
            log.error(
                "mailbox_refresh_failed", entity=act.id.entity, key=act.id.key, error=str(exc)
            )
            return
        if act.dropped:
            return
        held = {envelope.record.id for envelope in (*act.mailbox, *act.parked)}
        suspect = self._suspects.pop(act.id, None)
        for record in stored:
            if record.id not in held:
                self.queued += 1
                envelope = Envelope(record, self.cluster.reply_for(record))
                envelope.suspect = record.id == suspect
                act.requeue(envelope)

    async def _linger(self, act: Activation) -> bool:
        """Whether more mail came while ``act``'s last commits were in flight.

        A driver with nothing to do stays while its turns' commits are in flight if messages
        for its actor are on their way to the store: they arrive with those commits, and
        waking this driver costs less than starting another.
        """
        if not (act.in_flight and self.submitted.get(act.id) and self.accepting_turns):
            return False
        await act.nudged()
        return bool(act.mailbox or act.refresh)

    def _gate(self, envelope: Envelope) -> int:
        """How a turn of ``envelope`` runs its handler (see ``_solo``)."""
        if envelope.suspect:
            return _ALONE
        if _deadlock.waiting(envelope.chain):
            return _PASS  # asked from a running turn (perhaps the suspect's): part of it
        return _ORDINARY

    async def _enter(self, gate: int, envelope: Envelope) -> None:
        if gate == _ORDINARY:
            await self.solo.enter()
        elif gate == _ALONE:
            await self.solo.enter_alone()
            if envelope.recorded:
                return  # a re-run after a failed commit: no new crash to blame
            envelope.recorded = True
            try:
                # Recorded before it runs: a crash during this turn is blamed on it.
                await retrying(
                    partial(self._rt._store.record_attempts, [envelope.record.id]),
                    what="record_attempts",
                )
            except StoreError as exc:
                log.error("attempt_unrecorded", message_id=envelope.record.id, error=str(exc))
            except BaseException:
                self.solo.leave_alone()
                raise

    def _leave(self, gate: int) -> None:
        if gate == _ORDINARY:
            self.solo.leave()
        elif gate == _ALONE:
            self.solo.leave_alone()

    async def _load(self, act: Activation) -> None:
        try:
            record = await self._rt._store.load_actor(act.id)
        except StoreError as exc:
            act.failures += 1
            log.error("activation_failed", entity=act.id.entity, key=act.id.key, error=str(exc))
            if not exc.retryable:
                # Its callers learn now; the messages stay, and run once loading works.
                for envelope in act.mailbox:
                    self._answer(envelope, storage_error(exc))
            return
        if record is None:
            # Purged with everything it owned: its queued messages have no actor to run on.
            while act.mailbox:
                self.queued -= 1
                self._gone(act.mailbox.popleft(), act.id)
            return
        instance = act.spec.cls()
        try:
            instance.state = (
                act.spec.new_state()
                if record.state is None
                else _codec.decode(record.state, act.spec.state_type, what=f"state of {act.id}")
            )
        except ActorsError as exc:
            log.error("activation_failed", entity=act.id.entity, key=act.id.key, error=str(exc))
            while act.mailbox:
                self.queued -= 1
                self._answer(act.mailbox.popleft(), exc)
            return
        act.instance = instance
        act.hooked = act.spec.on_activate is None
        self.activated += 1
        act.generation = record.generation
        act.status = record.status
        act.state_bytes = record.state
        act.recent_bytes, act.recent = record.recent_turns, None
        act.ended = (
            Ending(record.generation, record.status, record.result, record.error)
            if record.status.terminal
            else None
        )
        act.loaded = True
        log.debug(
            "actor_activated", entity=act.id.entity, key=act.id.key, generation=record.generation
        )

    async def _activate(self, act: Activation) -> None:
        """Run the entity's ``on_activate`` hook; on failure the driver backs off and retries."""
        assert act.spec.on_activate is not None
        assert act.instance is not None
        incarnation = act.incarnation
        try:
            with structlog.contextvars.bound_contextvars(entity=act.id.entity, key=act.id.key):
                await act.spec.on_activate(act.instance, act.id.key)
        except Exception as exc:
            act.failures += 1
            _hook_failed("on_activate_failed", act, exc)
            return
        if act.incarnation == incarnation:
            act.hooked = True

    def _gone(self, envelope: Envelope, actor: ActorId) -> None:
        generation = envelope.record.generation
        self._answer(
            envelope, ActorNotFound(f"actor {actor} generation {generation} no longer exists")
        )

    def _answer(self, envelope: Envelope, error: Exception) -> None:
        """Fail the message's caller, and whoever repeated its idempotency key."""
        for waiting in (envelope.reply, *self._followers.pop(envelope.record.id, ())):
            if waiting is not None:
                waiting.fail(error)

    # -- dead letters -------------------------------------------------------------------

    def bury(self, envelope: Envelope, attempts: int, error: str) -> Future[Any]:
        """Move ``envelope``'s message (out of any mailbox now) to the dead letters.

        Its callers are answered with ``MessageDeadLettered`` once the move is committed;
        if the move fails, the message goes back to its mailbox.
        """
        request = Request(
            item=BuryMessage(message=envelope.record.id, attempts=attempts, error=error),
            accepted=Future(),
            envelope=envelope,
        )
        try:
            self._writer.submit(request)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._restore(envelope)
        return request.accepted

    def _refused(self, act: Activation, envelope: Envelope, error: StoreError) -> None:
        """The store refused ``envelope``'s turn for good; the last allowed time, bury it."""
        envelope.refusals += 1
        if envelope.refusals < self._rt.config.max_attempts or envelope not in act.mailbox:
            return
        act.mailbox.remove(envelope)
        self.queued -= 1
        reason = f"the store refused its turn's commit {envelope.refusals} times: {error}"
        self.bury(envelope, envelope.refusals, reason)

    def _buried(self, request: Request, outcome: BuryOutcome) -> None:
        envelope = request.envelope
        assert envelope is not None
        assert isinstance(request.item, BuryMessage)
        record = envelope.record
        actor = ActorId(entity=record.entity, key=record.key)
        if not outcome.buried:
            self._gone(envelope, actor)  # consumed or dropped with its generation meanwhile
            return
        self.dead_lettered += 1
        log.error(
            "message_dead_lettered",
            entity=record.entity,
            key=record.key,
            message_id=record.id,
            handler=record.handler,
            attempts=request.item.attempts,
            error=request.item.error,
        )
        self._answer(
            envelope,
            MessageDeadLettered(
                f"message {record.id} to {actor} ({record.handler}) was given up after "
                f"{request.item.attempts} attempts and is dead letter {record.id}: "
                f"{request.item.error}",
                dead_letter=record.id,
            ),
        )

    def _restore(self, envelope: Envelope) -> None:
        """Put back a message whose move to the dead letters failed: it stays stored."""
        record = envelope.record
        act = self.activations.find(ActorId(entity=record.entity, key=record.key))
        if act is None:
            self.deliver(record, envelope.reply, False, envelope.chain)
            return
        self.queued += 1
        act.requeue(envelope)
        self._drive_soon(act)

    # -- the writer's host ------------------------------------------------------------

    def adopt(self, actor: ActorId, reply: Future[Any]) -> int | None:
        """Make ``reply`` wait for the result of ``actor``'s live generation, if it is here.

        What a duplicate start of an entity with the default policy (adopt) comes to, without
        storing the duplicate: the actor is here and the end of its generation is not
        committed (it may have run, pipelined), so its record cannot have expired, and the
        commit of its end will answer ``reply``. Returns that generation, or ``None`` (not
        here, or its end is committed: then ``RecentResults`` or the store answers).
        """
        act = self.activations.find(actor)
        if act is None or not act.loaded or act.generation is None or act.ended is not None:
            return None
        if act.status is Status.SUPERSEDED:  # only a duplicate policy supersedes; be sure
            return None
        self._adopters[(actor, act.generation)].append(reply)
        return act.generation

    def _release(self, request: Request) -> None:
        """``request`` is committed, failed or dropped: no longer on its way to a mailbox."""
        if request.counted:
            request.counted = False
            item = request.item
            assert isinstance(item, Admit | Enqueue)  # only these are counted
            actor = item.actor
            left = self.submitted[actor] - 1
            if left:
                self.submitted[actor] = left
            else:
                del self.submitted[actor]

    def committed(self, item: Item, outcome: WriteOutcome) -> None:
        if isinstance(item, Request):
            self._release(item)
            item.accepted.set(outcome)
            if item.then is not None:
                item.then(outcome)
            if isinstance(outcome, FireOutcome):
                for message in outcome.messages:
                    self.deliver(message, None, created=False)
                return
            if isinstance(outcome, BuryOutcome):
                self._buried(item, outcome)
                return
            if isinstance(outcome, RetryOutcome):
                if outcome.message is not None:
                    self.deliver(outcome.message, None, created=False)
                return
            assert isinstance(outcome, AdmitOutcome | EnqueueOutcome)
            if outcome.message is not None:
                envelope = self.deliver(outcome.message, item.reply, outcome.created, item.chain)
                envelope.trace = item.trace
            elif (
                isinstance(outcome, EnqueueOutcome)
                and outcome.repeat_of is not None
                and outcome.stored_reply is None
                and item.reply is not None
            ):
                self._followers[outcome.repeat_of.id].append(item.reply)
                first = outcome.repeat_of
                if self.cluster is not None:
                    self.cluster.follow(first, outcome.generation)
                actor = ActorId(entity=first.entity, key=first.key)
                if actor in self._waiting and _deadlock.waiting(item.chain):
                    # A running turn waits on that message: let its actor in over the cap.
                    self._admit(actor, over=True)
            return
        assert isinstance(outcome, TurnOutcome)
        act = item.activation
        envelope = act.committed()
        self.queued -= 1 + act.voided(item.voided, applied=outcome.applied)
        if outcome.fenced:
            assert self.cluster is not None
            if item.epoch != act.epoch and not act.dropped:
                # Run under a lease this node gave up and has taken again since: the message
                # is still stored, and runs again here on the state as stored now.
                self.queued += 1
                act.requeue(envelope)
                act.loaded = False
                self._drive_soon(act)
                return
            # Another node holds the actor now: it runs this message again, and answers.
            self.cluster.await_reply(envelope)
            self.drop(act)
            self.cluster.check_session()
            return
        try:
            self._turn_committed(item, outcome)
        finally:
            self._rest_if_idle(act)

    def _turn_committed(self, item: TurnResult, outcome: TurnOutcome) -> None:
        act = item.activation
        reply = item.envelope.reply
        if item.reply is READMIT and outcome.readmitted is not None:
            readmitted = outcome.readmitted
            if readmitted.message is not None:
                self.deliver(readmitted.message, reply, readmitted.created)
            elif reply is not None:
                self._rt._settle(reply, act.spec, act.id, readmitted)
            return
        if not outcome.applied:
            # An adopter whose generation ended, then expired before this commit, still
            # learns how it ended, as it would have a moment earlier.
            if not (
                item.reply is ADOPT
                and reply is not None
                and self._answer_from_end(act, item.commit.generation, reply)
            ):
                self._gone(item.envelope, act.id)
            return
        if outcome.successor is not None:
            # The duplicate that superseded this generation is the new one's creator.
            self.deliver(outcome.successor, reply, created=True)
        elif item.reply is ADOPT:
            if reply is not None and not self._answer_from_end(act, item.commit.generation, reply):
                self._adopters[(act.id, item.commit.generation)].append(reply)
        elif item.reply is not SUPERSEDE:
            # Callers that repeated this message's idempotency key get the same answer.
            followers = self._followers.pop(item.envelope.record.id, [])
            for waiting in (reply, *followers):
                if waiting is None:
                    continue
                if item.error is not None:
                    waiting.fail(item.error)
                else:
                    waiting.set(item.reply)
        for enqueue, sent in zip(item.commit.outgoing, outcome.outgoing, strict=True):
            if sent.message is not None:
                self.deliver(sent.message, None, sent.created)
            else:
                log.warning(
                    "message_dropped",
                    entity=enqueue.actor.entity,
                    key=enqueue.actor.key,
                    handler=enqueue.message.handler,
                    status=None if sent.status is None else sent.status.value,
                    sender=str(act.id),
                )
        if item.commit.timers:
            self._rt._timers.alarm.wake_by(min(timer.due_at for timer in item.commit.timers))
        completion = item.commit.completion
        if outcome.expires_at is not None:
            self._rt._retention.alarm.wake_by(outcome.expires_at)
        if completion is not None:
            ended = Ending(
                item.commit.generation, completion.status, completion.result, completion.error
            )
            act.ended = ended
            if (
                act.spec.on_duplicate is None
                and outcome.successor is None
                and outcome.expires_at is not None
            ):
                self._rt._results.remember(act.id, ended, outcome.expires_at)
            for adopter in self._adopters.pop((act.id, ended.generation), ()):
                self._rt._settle(adopter, act.spec, act.id, ended)
            log.info(
                "actor_completed",
                entity=act.id.entity,
                key=act.id.key,
                generation=ended.generation,
                status=completion.status.value,
            )
            for waiter in self._waiters.pop((act.id, item.commit.generation), ()):
                waiter.set(completion.status)

    def _answer_from_end(self, act: Activation, generation: int, reply: Future[Any]) -> bool:
        """Answer ``reply`` with how ``generation`` of ``act`` ended, if it has ended."""
        ended = act.ended
        if ended is None or ended.generation != generation:
            return False
        self._rt._settle(reply, act.spec, act.id, ended)
        return True

    def failed(self, items: Sequence[Item], error: StoreError) -> None:
        failure = storage_error(error)
        for item in items:
            if isinstance(item, Request):
                self._release(item)
                item.accepted.fail(failure)
                if item.reply is not None:  # a caller may wait on it alone (see Request.then)
                    item.reply.fail(failure)
                if item.envelope is not None:
                    self._restore(item.envelope)
            elif item.incarnation == item.activation.incarnation:
                item.activation.reset()
                if not error.retryable:
                    # The writer retried it alone: the store refuses this very turn.
                    self._refused(item.activation, item.envelope, error)
                self._drive_soon(item.activation)
                self._rest_if_idle(item.activation)  # its last message may be buried

    # -- shutdown -----------------------------------------------------------------------

    def abandon(self) -> None:
        """Fail everything still waiting: the runtime is closing."""
        closed = RuntimeClosed("the runtime closed before this message was handled")
        for item in self._writer.leftover():
            if isinstance(item, Request):
                self._release(item)
                item.accepted.fail(closed)
                envelope = item.envelope
                for reply in (item.reply, None if envelope is None else envelope.reply):
                    if reply is not None:
                        reply.fail(closed)
        queued = [envelope for entries in self._waiting.values() for envelope, _ in entries]
        for act in self.activations.values():
            queued.extend((*act.in_flight, *act.mailbox))
        for envelope in queued:
            if envelope.reply is not None:
                envelope.reply.fail(closed)
        self._waiting.clear()
        self.queued = 0
        for waiters in (
            *self._waiters.values(),
            *self._followers.values(),
            *self._adopters.values(),
        ):
            for waiter in waiters:
                waiter.fail(RuntimeClosed("the runtime closed before the answer was ready"))
        self._waiters.clear()
        self._followers.clear()
        self._adopters.clear()
        if self.cluster is not None:
            self.cluster.abandon()
