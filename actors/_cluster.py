"""Multi-node membership: this node's session, its leases, wake-ups and remote replies.

On a store shared by several nodes (``persistence.Leases``) the runtime joins with a session
and keeps it live. The store hands it the actors it claims as it stores their messages
(``MessageRecord.epoch``); the dispatcher runs those, and stamps each turn's commit with the
lease's epoch (see ``prepare``), so a node that lost a lease cannot commit on it. Messages
for actors another node owns go there through the store, and so do their replies: a caller
here waits in ``_pending`` for its message's reply, which the owner stores with its turn.

Wake-ups come by notification (mail for an actor of ours, replies for our callers, the end
of a generation); a slow safety poll covers what a notification may miss and takes over
the actors of nodes that died (``claim_orphans``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from actors import _codec
from actors._activation import Envelope
from actors._context import ADOPT, SUPERSEDE, error_info, read_error_info
from actors._future import Future
from actors._turn import READMIT, TurnResult
from actors._writer import Item, Request
from actors.errors import (
    ActorCompleted,
    ActorNotFound,
    ActorsError,
    HandlerFailed,
    RuntimeClosed,
)
from persistence import (
    ActorId,
    Admit,
    Ended,
    Enqueue,
    Leases,
    MailFor,
    MessageKind,
    MessageRecord,
    Notification,
    RepliesReady,
    Reply,
    ReplyRecord,
    Status,
    StoreError,
    WriteItem,
)

if TYPE_CHECKING:
    from actors._runtime import Runtime

log = structlog.get_logger("actors.cluster")

T = TypeVar("T")

_DUPLICATE_TAG = "@duplicate"
_CANCEL_TAG = "@cancel"
_ORPHAN_PAGE = 500


async def _call(operation: Callable[[], Awaitable[T]]) -> T:
    """A store call made as it is (errors are the caller's to handle)."""
    return await operation()


class Cluster:
    """This node's membership of a multi-node runtime."""

    def __init__(self, rt: Runtime, leases: Leases, *, node: str, lease: float) -> None:
        self._rt = rt
        self._leases = leases
        self.node = node
        self.lease = lease
        # Every session this node has had: replies to its callers may name any of them.
        self._sessions: set[int] = set()
        # Messages whose caller waits here while another node handles them, by id.
        self._pending: dict[int, Envelope] = {}
        # First messages of idempotency keys that callers here repeated (Dispatcher's
        # followers), with their generation: their kept reply answers those callers.
        self._followed: dict[int, tuple[MessageRecord, int]] = {}
        # Replies taken before their caller was known to wait here (a caller learns that its
        # message runs elsewhere only when its own commit is fenced), with when they came.
        self._early: dict[int, tuple[float, ReplyRecord]] = {}
        self._claiming: set[ActorId] = set()
        self._taking = anyio.Lock()
        self._tasks: TaskGroup | None = None
        self._check = anyio.Event()
        self._replies_ready = False
        self.lost_sessions = 0

    @property
    def session(self) -> int | None:
        return self._leases.session

    async def join(self) -> None:
        session = await self._leases.join(self.node, lease=self.lease, listener=self._notified)
        self._sessions.add(session)
        log.info("node_joined", node=self.node, session=session)

    async def leave(self) -> None:
        """Release this node's leases: other nodes take its actors over at once."""
        try:
            await self._leases.leave()
        except StoreError as exc:
            log.warning("node_leave_failed", node=self.node, error=str(exc))

    async def take_over(self) -> int:
        """Claim the actors with mail that no live node owns; how many were claimed."""
        entities = frozenset(self._rt._specs)
        total = 0
        while True:
            claimed = await self._leases.claim_orphans(entities=entities, limit=_ORPHAN_PAGE)
            # Their heads may have been running when their node stopped: attempts are
            # counted as after a restart, and a message that keeps stopping nodes is buried.
            await self._rt._recover_mailboxes(sorted(claimed), claimed, _call)
            total += len(claimed)
            if len(claimed) < _ORPHAN_PAGE:
                break
        if total:
            log.info("actors_taken_over", node=self.node, count=total)
        return total

    async def _take_over_now(self) -> None:
        try:
            await self.take_over()
        except (StoreError, ActorsError) as exc:
            log.warning("take_over_failed", node=self.node, error=str(exc))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the session live, and look now and then for what notifications missed."""
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                task_status.started()
                await self._keep_live()
        finally:
            self._tasks = None

    async def _keep_live(self) -> None:
        renew_every = self.lease / 3
        poll_every = max(0.1, self.lease / 2)
        next_poll = anyio.current_time() + poll_every
        while True:
            with anyio.move_on_after(renew_every):
                await self._check.wait()
            self._check = anyio.Event()
            await self._renew()
            if anyio.current_time() >= next_poll:
                next_poll = anyio.current_time() + poll_every
                await self._poll()

    def check_session(self) -> None:
        """Renew the session now (a commit was fenced: it may have been lost)."""
        self._check.set()

    async def _renew(self) -> None:
        try:
            live = await self._leases.renew()
        except StoreError as exc:
            log.warning("session_renew_failed", node=self.node, error=str(exc))
            return
        if live:
            return
        # Paused or cut off past the lease: other nodes may run our actors now.
        self.lost_sessions += 1
        log.warning("session_lost", node=self.node, session=self.session)
        self._rt._dispatcher.drop_all()
        try:
            await self.join()
            await self.take_over()
        except (StoreError, ActorsError) as exc:
            log.warning("node_rejoin_failed", node=self.node, error=str(exc))

    async def _poll(self) -> None:
        try:
            await self.take_over()
            await self._wake_idle_with_mail()
            # Which awaited messages are gone, before taking replies: a reply to one of
            # them was stored with its consumption, so it is among those taken next.
            gone = set(self._pending) - await self._leases.unhandled(list(self._pending))
            await self._take_replies()
            self._unanswered(gone)
            await self._check_ended()
            await self._check_followed()
        except (StoreError, ActorsError) as exc:  # ActorsError: a burial that failed
            log.warning("cluster_poll_failed", node=self.node, error=str(exc))
        self._rt._timers.alarm.wake_by(self._rt.clock.now())  # other nodes' timers

    async def _wake_idle_with_mail(self) -> None:
        """Wake the actors held here that have stored mail and nothing to do: a lost wake-up.

        A busy actor reads its stored mailbox at its next wake-up, or here once idle.
        """
        activations = self._rt._dispatcher.activations
        for actor in await self._leases.mine_with_mail(limit=_ORPHAN_PAGE):
            act = activations.find(actor)
            if act is None or act.idle:
                self._mail(actor)

    # -- wake-ups ------------------------------------------------------------------------

    def _notified(self, notification: Notification) -> None:
        if isinstance(notification, MailFor):
            self._mail(notification.actor)
        elif isinstance(notification, RepliesReady):
            if not self._replies_ready:
                self._replies_ready = True
                self._soon(self._take_replies)
        elif isinstance(notification, Ended):
            self._ended(notification.actor, notification.generation, notification.status)
        else:  # Orphaned: a node left
            self._soon(self._take_over_now)

    def _soon(self, task: Any, *args: Any) -> None:
        if self._tasks is not None:
            self._tasks.start_soon(task, *args)

    def _mail(self, actor: ActorId) -> None:
        if actor.entity not in self._rt._specs:
            return
        dispatcher = self._rt._dispatcher
        act = dispatcher.activations.find(actor)
        if act is not None and act.epoch is not None and not act.dropped:
            dispatcher.claimed(actor, act.epoch)
        elif actor not in self._claiming:
            self._claiming.add(actor)
            self._soon(self._claim, actor)

    async def _claim(self, actor: ActorId) -> None:
        try:
            held = await self._leases.claim([actor])
        except StoreError as exc:
            log.warning("claim_failed", entity=actor.entity, key=actor.key, error=str(exc))
            return  # the safety poll takes it over if no one else does
        finally:
            self._claiming.discard(actor)
        epoch = held.get(actor)
        if epoch is not None:
            self._rt._dispatcher.claimed(actor, epoch)

    async def release(self, actor: ActorId, epoch: int) -> bool:
        """Give the lease of a passivating actor up; whether it was (errors: not)."""
        try:
            return await self._leases.release(actor, epoch)
        except StoreError as exc:
            log.warning("release_failed", entity=actor.entity, key=actor.key, error=str(exc))
            return False

    # -- replies ---------------------------------------------------------------------------

    def prepare(self, item: Item) -> WriteItem:
        """``item`` as this node writes it: with its caller's session, or its lease's epoch."""
        session = self._leases.session
        if isinstance(item, Request):
            write = item.item
            if item.reply is not None and isinstance(write, Admit | Enqueue):
                return msgspec.structs.replace(
                    write, message=msgspec.structs.replace(write.message, reply_to=session)
                )
            return write
        commit = item.commit
        reply_to = item.envelope.record.reply_to
        changes: dict[str, Any] = {"epoch": item.epoch}
        if reply_to is not None:
            if reply_to not in self._sessions:
                changes["replies"] = (self._reply(item, reply_to),)
            # A message that goes on as another takes its caller along.
            if commit.successor is not None:
                message = msgspec.structs.replace(commit.successor.message, reply_to=reply_to)
                changes["successor"] = msgspec.structs.replace(commit.successor, message=message)
            if commit.readmit is not None:
                message = msgspec.structs.replace(commit.readmit.message, reply_to=reply_to)
                changes["readmit"] = msgspec.structs.replace(commit.readmit, message=message)
        return msgspec.structs.replace(commit, **changes)

    def _reply(self, item: TurnResult, session: int) -> Reply:
        record = item.envelope.record
        message = record.id
        if item.reply is ADOPT:
            return Reply(message=message, session=session, adopt=item.commit.generation)
        if item.reply is READMIT or item.reply is SUPERSEDE:
            return Reply(message=message, session=session, forward=True)
        if record.kind is MessageKind.CANCEL:
            tag = _CANCEL_TAG
        elif record.kind is MessageKind.DUPLICATE:
            tag = _DUPLICATE_TAG
        else:
            tag = record.handler
        error = item.error
        if isinstance(error, HandlerFailed):
            info = error_info(error.error_type, error.error_message, error.handler)
            return Reply(message=message, session=session, handler=tag, error=info)
        if isinstance(error, ActorCompleted):
            status = error.status.encode()
            return Reply(
                message=message,
                session=session,
                handler=tag,
                error=status,
                error_kind="ActorCompleted",
            )
        data = item.data
        if data is None:
            data = b"true" if item.reply is True else b"false" if item.reply is False else b"null"
        return Reply(message=message, session=session, handler=tag, reply=data)

    def await_reply(self, envelope: Envelope) -> None:
        """``envelope``'s caller waits here while another node handles its message."""
        if envelope.reply is None or envelope.reply.done():
            return
        early = self._early.pop(envelope.record.id, None)
        if early is not None:
            self._answer(envelope, early[1])
        else:
            self._pending[envelope.record.id] = envelope

    def follow(self, first: MessageRecord, generation: int) -> None:
        """Callers here repeated ``first``'s idempotency key while it was not handled yet.

        The node that handles it answers them if it is this one; if not, the safety poll
        finds the reply it kept.
        """
        self._followed[first.id] = (first, generation)

    async def _check_followed(self) -> None:
        followers = self._rt._dispatcher._followers
        for message in [m for m in self._followed if m not in followers]:
            del self._followed[message]  # answered here
        if not self._followed:
            return
        ids = list(self._followed)
        # Which are still waiting, before reading the kept replies: one handled between the
        # two reads has its reply kept by then.
        waiting = await self._leases.unhandled(ids)
        kept = await self._leases.kept_replies(ids)
        for message in ids:
            if message in waiting:
                continue
            first, generation = self._followed.pop(message)
            callers = followers.pop(message, [])
            stored = kept.get(message)
            for caller in callers:
                if stored is not None:
                    spec = self._rt._specs[first.entity]
                    self._rt._answer_stored(caller, spec, first, generation, stored)
                else:
                    caller.fail(
                        ActorNotFound(
                            f"message {message} to {first.entity}/{first.key} is no longer"
                            " stored (dead-lettered, or dropped with its generation)"
                        )
                    )

    def abandon(self) -> None:
        """The runtime is closing: callers here waiting on other nodes get ``RuntimeClosed``."""
        closed = RuntimeClosed("the runtime closed before the answer was ready")
        for envelope in self._pending.values():
            if envelope.reply is not None:
                envelope.reply.fail(closed)
        self._pending.clear()
        self._early.clear()

    def reply_for(self, record: MessageRecord) -> Future[Any] | None:
        """The waiting caller of a stored message this node is about to run, if here."""
        if record.reply_to not in self._sessions:
            return None
        envelope = self._pending.pop(record.id, None)
        return None if envelope is None else envelope.reply

    async def _take_replies(self) -> None:
        self._replies_ready = False
        # One at a time, answered before the next: _poll relies on every reply taken so far
        # being answered.
        async with self._taking:
            now = anyio.current_time()
            for row in await self._leases.take_replies():
                envelope = self._pending.pop(row.message, None)
                if envelope is not None:
                    self._answer(envelope, row)
                else:
                    self._early[row.message] = (now, row)
        # Kept for two leases: a caller whose turn was fenced learns it within one.
        stale = [m for m, (at, _) in self._early.items() if at < now - 2 * self.lease]
        for message in stale:
            del self._early[message]

    def _unanswered(self, gone: set[int]) -> None:
        """Fail the callers of messages that went unanswered (dropped with their generation)."""
        for message in gone:
            envelope = self._pending.pop(message, None)
            if envelope is not None and envelope.reply is not None:
                record = envelope.record
                envelope.reply.fail(
                    ActorNotFound(
                        f"actor {record.entity}/{record.key} generation {record.generation}"
                        " no longer exists"
                    )
                )

    def _answer(self, envelope: Envelope, row: ReplyRecord) -> None:
        reply = envelope.reply
        assert reply is not None
        record = envelope.record
        actor = ActorId(entity=record.entity, key=record.key)
        if row.forward is not None:
            self.await_reply(Envelope(msgspec.structs.replace(record, id=row.forward), reply))
            return
        if row.adopt is not None:
            self._rt._dispatcher._adopters[(actor, row.adopt)].append(reply)
            self._soon(self._settle_ended, actor, row.adopt)
            return
        # The caller, and callers here that repeated its idempotency key meanwhile.
        callers = [reply, *self._rt._dispatcher._followers.pop(record.id, ())]
        try:
            value = self._decode(row, record)
        except Exception as exc:
            for caller in callers:
                caller.fail(exc)
        else:
            for caller in callers:
                caller.set(value)

    def _decode(self, row: ReplyRecord, record: MessageRecord) -> Any:
        """The reply ``row`` holds for ``record``; raises the error it holds."""
        spec = self._rt._specs[record.entity]
        if row.error_kind == "ActorCompleted":
            raise ActorCompleted(
                entity=record.entity,
                key=record.key,
                generation=record.generation,
                status=(row.error or b"").decode(),
            )
        if row.error is not None:
            error_type, message = read_error_info(row.error)
            raise HandlerFailed(
                entity=record.entity,
                key=record.key,
                generation=record.generation,
                handler=record.handler,
                error_type=error_type,
                error_message=message,
            )
        if row.handler == _CANCEL_TAG:
            reply_type: Any = bool
        elif row.handler == _DUPLICATE_TAG and spec.on_duplicate is not None:
            reply_type = spec.on_duplicate.reply_type
        else:
            reply_type = spec.handler(row.handler or record.handler).reply_type
        what = f"reply of {spec.name}.{row.handler}"
        return _codec.decode(row.reply or b"null", reply_type, what=what)

    # -- ends of generations ---------------------------------------------------------------

    def _ended(self, actor: ActorId, generation: int, status: Status) -> None:
        dispatcher = self._rt._dispatcher
        act = dispatcher.activations.find(actor)
        if act is not None and not act.dropped:
            return  # ours: the commit of its end answered its waiters here
        for waiter in dispatcher._waiters.pop((actor, generation), ()):
            waiter.set(status)
        if (actor, generation) in dispatcher._adopters:
            self._soon(self._settle_ended, actor, generation)

    async def _settle_ended(self, actor: ActorId, generation: int) -> None:
        """Answer the callers here adopting ``generation``'s result, if it has ended."""
        try:
            record = await self._rt._store.load_actor(actor)
        except StoreError as exc:
            log.warning("load_failed", entity=actor.entity, key=actor.key, error=str(exc))
            return  # the safety poll tries again
        dispatcher = self._rt._dispatcher
        if record is not None and record.generation == generation and record.status.terminal:
            spec = self._rt._specs[actor.entity]
            for adopter in dispatcher._adopters.pop((actor, generation), ()):
                self._rt._settle(adopter, spec, actor, record)
        elif record is None or record.generation > generation:
            gone = ActorNotFound(f"actor {actor} generation {generation} no longer exists")
            for adopter in dispatcher._adopters.pop((actor, generation), ()):
                adopter.fail(gone)

    async def _check_ended(self) -> None:
        """The safety poll's look at generations that callers here wait on, held elsewhere."""
        dispatcher = self._rt._dispatcher
        watched: Sequence[tuple[ActorId, int]] = [
            *dispatcher._adopters.keys(),
            *dispatcher._waiters.keys(),
        ]
        for actor, generation in dict.fromkeys(watched):
            act = dispatcher.activations.find(actor)
            if act is not None and not act.dropped:
                continue
            if (actor, generation) in dispatcher._waiters:
                record = await self._rt._store.load_actor(actor)
                if record is None or record.generation != generation or record.status.terminal:
                    status = Status.COMPLETED if record is None else record.status
                    if record is not None and record.generation != generation:
                        status = Status.SUPERSEDED
                    for waiter in dispatcher._waiters.pop((actor, generation), ()):
                        waiter.set(status)
            if (actor, generation) in dispatcher._adopters:
                await self._settle_ended(actor, generation)
