"""The decisions of one write batch, shared by every SQL backend.

A backend reads what a batch decides on (the actor rows, the messages holding idempotency keys,
due timers, dead letters) and hands it to :class:`Batch`; :func:`decide` runs the batch's items
in order against that state and collects, per statement kind, the positional parameter tuples
the backend then applies with its own SQL text. This module runs no SQL and imports no driver:
it makes storage decisions only (does the row exist, is it expired, is the generation current)
and never decides what a message means.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from persistence._ownership import Ownership
from persistence.records import (
    ActorId,
    ActorInit,
    ActorRecord,
    Admit,
    AdmitOutcome,
    AttributeValue,
    BuryMessage,
    BuryOutcome,
    DeadLetterRecord,
    Enqueue,
    EnqueueOutcome,
    FireOutcome,
    FireTimers,
    MessageKind,
    MessageRecord,
    NewMessage,
    NewTimer,
    RetryDeadLetter,
    RetryOutcome,
    Status,
    StoredReply,
    TimerRecord,
    TurnCommit,
    TurnOutcome,
    WriteItem,
    WriteOutcome,
)

__all__ = [
    "Batch",
    "DueTimer",
    "Handled",
    "Row",
    "actor_record",
    "dead_letter_record",
    "decide",
    "idempotency_keys",
    "message_record",
    "timer_record",
    "touched",
]

_DUPLICATE = MessageKind.DUPLICATE.value

_REMOVED = object()


@dataclass(slots=True)
class Row:
    """The part of an actor row a write batch decides on; updated as items apply."""

    generation: int
    status: Status
    retention: float
    result: bytes | None
    error: bytes | None
    completed_at: float | None
    expires_at: float | None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class DueTimer:
    id: int
    actor: ActorId
    name: str
    generation: int
    handler: str
    payload: bytes


@dataclass(slots=True)
class Handled:
    """A message stored under an idempotency key, and its reply once handled."""

    record: MessageRecord
    reply: StoredReply | None
    expires_at: float | None


def message_record(row: Sequence[Any]) -> MessageRecord:
    mid, entity, key, gen, kind, handler, payload, created, meta, idem, timer, tries = row[:12]
    return MessageRecord(
        id=mid,
        entity=entity,
        key=key,
        generation=gen,
        kind=MessageKind(kind),
        handler=handler,
        payload=payload,
        created_at=created,
        meta=meta,
        idempotency_key=idem,
        timer=timer,
        attempts=tries,
    )


def actor_record(
    actor: ActorId, row: Sequence[Any], attributes: Mapping[str, AttributeValue]
) -> ActorRecord:
    """An actor's record from its row and attributes.

    The row: generation, status, state, result, error, retention, then the created, updated,
    completed and expiry times, then the recent turns.
    """
    gen, status, state, result, error, retention, created, updated, done, expires = row[:10]
    return ActorRecord(
        entity=actor.entity,
        key=actor.key,
        generation=gen,
        status=Status(status),
        state=state,
        result=result,
        error=error,
        attributes=attributes,
        retention=retention,
        created_at=created,
        updated_at=updated,
        completed_at=done,
        expires_at=expires,
        recent_turns=row[10],
    )


def timer_record(actor: ActorId, row: Sequence[Any]) -> TimerRecord:
    """A timer's record from its row: name, generation, due, handler, payload, created."""
    name, generation, due_at, handler, payload, created_at = row
    return TimerRecord(
        entity=actor.entity,
        key=actor.key,
        name=name,
        generation=generation,
        due_at=due_at,
        handler=handler,
        payload=payload,
        created_at=created_at,
    )


def dead_letter_record(row: Sequence[Any]) -> DeadLetterRecord:
    return DeadLetterRecord(message=message_record(row), error=row[12], dead_at=row[13])


class Batch:
    """The statements one write batch will run, collected while its items are decided."""

    def __init__(
        self,
        rows: dict[ActorId, Row],
        handled: dict[tuple[ActorId, str], Handled],
        ids: Iterator[int],
        max_purged: int,
        due: Iterable[DueTimer] = (),
        dead: Mapping[int, DeadLetterRecord] | None = None,
        unhandled: Collection[int] = (),
        ownership: Ownership | None = None,
    ) -> None:
        self.rows = rows
        # Multi-node: who runs each actor (None on a store without leases).
        self.ownership = ownership
        self.handled = handled
        # The same entries by message id: turns consume messages by id, on every commit.
        self.keyed = {seen.record.id: key for key, seen in handled.items()}
        # Message ids, increasing; a backend may hand out more than the batch takes.
        self.ids = ids
        self.max_purged = max_purged
        self.reset_actors: list[tuple[str, str]] = []
        self.upserts: list[tuple[Any, ...]] = []
        self.updates: dict[tuple[ActorId, int], tuple[Any, ...]] = {}
        self.inserts: list[tuple[Any, ...]] = []
        self.consumed: list[tuple[int]] = []
        self.kept: list[tuple[bytes | None, bytes | None, float, int]] = []
        self.attributes: dict[ActorId, dict[str, object]] = {}
        # Timers: due ones read before the batch, and what the batch does to timers.
        self.due = deque(due)
        self.timer_clears: list[tuple[str, str]] = []
        self.timer_cancels: list[tuple[str, str, str]] = []
        self.timers_fired: list[tuple[int]] = []
        # In scheduling order (row ids break ties in due time), with each actor's names.
        self.timer_inserts: dict[tuple[ActorId, str], tuple[Any, ...]] = {}
        self.timer_names: dict[ActorId, set[str]] = {}
        # Timer messages this batch fired, by actor: later items may still take them back.
        self.fired: dict[ActorId, list[MessageRecord]] = {}
        self.fired_outcomes: list[list[MessageRecord]] = []
        # Stored timers this batch has replaced, cancelled or cleared: they must not fire.
        self.timers_changed: set[tuple[ActorId, str]] = set()
        self.timers_cleared: set[ActorId] = set()
        # Dead letters: the ones retry items name, and the messages bury items may move.
        self.dead = dict(dead or {})
        self.unhandled = set(unhandled)
        self.buried: list[tuple[int, str, float, int]] = []
        self.retried: dict[int, int] = {}  # dead letter id -> the message id it came back as

    def create(self, actor: ActorId, init: ActorInit, now: float) -> Row:
        old = self.rows.get(actor)
        generation = old.generation + 1 if old else self.max_purged + 1
        if old:
            # The old generation goes with everything it owned, including messages this
            # batch stored for it before this point.
            self.reset_actors.append((actor.entity, actor.key))
            self.inserts = [
                r
                for r in self.inserts
                if (r[1], r[2]) != (actor.entity, actor.key) or r[4] == _DUPLICATE
            ]
            # A dead letter whose retried message went with the old generation stays.
            stored = {r[0] for r in self.inserts}
            self.retried = {d: m for d, m in self.retried.items() if m in stored}
            for key in [k for k in self.handled if k[0] == actor]:
                self.forget(self.handled[key].record.id)
            self._drop_batch_timers(actor)
        row = Row(generation, Status.ACTIVE, init.retention, None, None, None, None)
        self.rows[actor] = row
        self.upserts.append((actor.entity, actor.key, generation, init.retention, now, now))
        self.attributes[actor] = dict(init.attributes)
        return row

    def insert(
        self,
        actor: ActorId,
        generation: int,
        msg: NewMessage,
        now: float,
        *,
        timer: str | None = None,
    ) -> MessageRecord:
        record = MessageRecord(
            id=next(self.ids),
            entity=actor.entity,
            key=actor.key,
            generation=generation,
            kind=msg.kind,
            handler=msg.handler,
            payload=msg.payload,
            created_at=now,
            meta=msg.meta,
            idempotency_key=msg.idempotency_key,
            timer=timer,
            reply_to=msg.reply_to,
            epoch=None if self.ownership is None else self.ownership.owner(actor),
        )
        self.inserts.append(
            (
                record.id,
                actor.entity,
                actor.key,
                generation,
                msg.kind.value,
                msg.handler,
                msg.payload,
                now,
                msg.meta,
                msg.idempotency_key,
                timer,
                msg.reply_to,
            )
        )
        if msg.idempotency_key is not None:
            self.handled[(actor, msg.idempotency_key)] = Handled(record, None, None)
            self.keyed[record.id] = (actor, msg.idempotency_key)
        return record

    def _drop_batch_timers(self, actor: ActorId, name: str | None = None) -> None:
        """Forget the timers (one, or all) this batch scheduled or fired for ``actor``."""
        names = self.timer_names.get(actor, set())
        for dropped in list(names) if name is None else [name]:
            self.timer_inserts.pop((actor, dropped), None)
            names.discard(dropped)
        fired = self.fired.get(actor)
        if not fired:
            return
        gone = {m.id for m in fired if name in (None, m.timer)}
        if not gone:
            return
        self.fired[actor] = [m for m in fired if m.id not in gone]
        self.inserts = [r for r in self.inserts if r[0] not in gone]
        for outcome in self.fired_outcomes:
            outcome[:] = [m for m in outcome if m.id not in gone]

    def cancel_timer(self, actor: ActorId, name: str) -> None:
        """Delete the timer ``name`` of ``actor`` and its message if fired and unhandled."""
        self.timer_cancels.append((actor.entity, actor.key, name))
        self.timers_changed.add((actor, name))
        self._drop_batch_timers(actor, name)

    def clear_timers(self, actor: ActorId) -> None:
        """Delete every timer of ``actor``, and the messages of those fired and unhandled."""
        self.timer_clears.append((actor.entity, actor.key))
        self.timers_cleared.add(actor)
        self._drop_batch_timers(actor)

    def schedule(self, actor: ActorId, generation: int, timer: NewTimer, now: float) -> None:
        self.cancel_timer(actor, timer.name)
        self.timer_names.setdefault(actor, set()).add(timer.name)
        self.timer_inserts[(actor, timer.name)] = (
            actor.entity,
            actor.key,
            timer.name,
            generation,
            timer.due_at,
            timer.handler,
            timer.payload,
            now,
        )

    def fire(self, item: FireTimers, now: float) -> FireOutcome:
        fired: list[MessageRecord] = []
        self.fired_outcomes.append(fired)  # later items of the batch may take some back
        looked = 0
        while self.due and looked < item.limit:
            timer = self.due.popleft()
            actor = timer.actor
            if item.entities is not None and actor.entity not in item.entities:
                continue  # another runtime's (read for another item of this batch)
            looked += 1
            if (actor, timer.name) in self.timers_changed or actor in self.timers_cleared:
                continue  # the statements that changed it delete the stored row
            self.timers_fired.append((timer.id,))
            row = self.rows.get(actor)
            if (
                row is None
                or not row.live(now)
                or row.status is not Status.ACTIVE
                or row.generation != timer.generation
            ):
                continue  # its generation has ended: it is dropped without firing
            message = NewMessage(
                kind=MessageKind.TIMER, handler=timer.handler, payload=timer.payload
            )
            record = self.insert(actor, timer.generation, message, now, timer=timer.name)
            fired.append(record)
            self.fired.setdefault(actor, []).append(record)
        return FireOutcome(messages=fired)

    def forget(self, message_id: int) -> None:
        """The idempotency key that ``message_id`` held (if any) is free again."""
        key = self.keyed.pop(message_id, None)
        if key is not None:
            del self.handled[key]

    def consume(self, message_id: int) -> None:
        """Delete a handled message; a key it held is free again (nothing was kept)."""
        self.consumed.append((message_id,))
        self.forget(message_id)

    def admit(self, item: Admit, now: float) -> AdmitOutcome:
        row = self.rows.get(item.actor)
        if row is None or not row.live(now):
            row = self.create(item.actor, item.init, now)
            message = self.insert(item.actor, row.generation, item.message, now)
            return AdmitOutcome(
                created=True, generation=row.generation, status=row.status, message=message
            )
        if row.status is Status.ACTIVE or item.to_terminal:
            duplicate = NewMessage(
                kind=MessageKind.DUPLICATE,
                handler=item.message.handler,
                payload=item.message.payload,
                meta=item.message.meta,
                reply_to=item.message.reply_to,
            )
            message = self.insert(item.actor, row.generation, duplicate, now)
            return AdmitOutcome(
                created=False, generation=row.generation, status=row.status, message=message
            )
        return AdmitOutcome(
            created=False,
            generation=row.generation,
            status=row.status,
            message=None,
            result=row.result,
            error=row.error,
            expires_at=row.expires_at,
        )

    def enqueue(self, item: Enqueue, now: float) -> EnqueueOutcome:
        row = self.rows.get(item.actor)
        created = False
        if row is None or not row.live(now):
            # Only an unbound enqueue may create: a bound one addresses a generation that is gone.
            if item.init is None or item.generation is not None:
                return EnqueueOutcome(message=None, created=False, generation=0, status=None)
            row = self.create(item.actor, item.init, now)
            created = True
        if item.generation not in (None, row.generation):
            # Bound to a generation that is gone: not even a repeat reaches the current one.
            return EnqueueOutcome(
                message=None, created=False, generation=row.generation, status=row.status
            )
        idem = item.message.idempotency_key
        if idem is not None and not created:
            seen = self.handled.get((item.actor, idem))
            if seen is not None and (seen.expires_at is None or seen.expires_at > now):
                return EnqueueOutcome(
                    message=None,
                    created=False,
                    generation=row.generation,
                    status=row.status,
                    repeat_of=seen.record,
                    stored_reply=seen.reply,
                )
            if seen is not None:  # its window has passed: the key is free again
                self.consume(seen.record.id)
        if row.status is not Status.ACTIVE:
            return EnqueueOutcome(
                message=None, created=False, generation=row.generation, status=row.status
            )
        message = self.insert(item.actor, row.generation, item.message, now)
        return EnqueueOutcome(
            message=message, created=created, generation=row.generation, status=row.status
        )

    def bury(self, item: BuryMessage, now: float) -> BuryOutcome:
        if item.message not in self.unhandled:
            return BuryOutcome(buried=False)
        self.unhandled.discard(item.message)
        self.buried.append((item.attempts, item.error, now, item.message))
        self.forget(item.message)
        return BuryOutcome(buried=True)

    def retry(self, item: RetryDeadLetter, now: float) -> RetryOutcome:
        dead = self.dead.get(item.dead_letter)
        if dead is None or (item.entities is not None and dead.message.entity not in item.entities):
            return RetryOutcome(message=None, problem="unknown")
        old = dead.message
        actor = ActorId(entity=old.entity, key=old.key)
        row = self.rows.get(actor)
        if (
            row is None
            or not row.live(now)
            or (row.generation != old.generation and old.kind is not MessageKind.DUPLICATE)
        ):
            # Its generation is gone (a duplicate would go on to the next one instead).
            return RetryOutcome(message=None, problem="actor_gone", dead_letter=dead)
        if old.idempotency_key is not None:
            seen = self.handled.get((actor, old.idempotency_key))
            if seen is not None and (seen.expires_at is None or seen.expires_at > now):
                return RetryOutcome(message=None, problem="key_in_use", dead_letter=dead)
            if seen is not None:  # its window has passed: the key is free again
                self.consume(seen.record.id)
        del self.dead[old.id]
        message = NewMessage(
            kind=old.kind,
            handler=old.handler,
            payload=old.payload,
            meta=old.meta,
            idempotency_key=old.idempotency_key,
        )
        record = self.insert(actor, old.generation, message, now, timer=old.timer)
        self.retried[old.id] = record.id
        return RetryOutcome(message=record)

    def commit_turn(self, item: TurnCommit, now: float) -> TurnOutcome:
        ownership = self.ownership
        if (
            ownership is not None
            and item.epoch is not None
            and ownership.fenced(item.actor, item.epoch)
        ):
            return TurnOutcome(applied=False, fenced=True)
        row = self.rows.get(item.actor)
        if row is None or row.generation != item.generation:
            # A forwarded duplicate goes on to whatever generation is current now.
            self.consume(item.consumed)
            readmit = None if item.readmit is None else self.admit(item.readmit, now)
            self._replies(item, None, readmit)
            return TurnOutcome(applied=False, readmitted=readmit)
        expires: float | None = None
        if item.reply is None:
            self.consume(item.consumed)
        else:
            expires = now + row.retention
            self.kept.append((item.reply.reply, item.reply.error, expires, item.consumed))
            idem_key = self.keyed.get(item.consumed)
            if idem_key is not None:
                seen = self.handled[idem_key]
                seen.reply, seen.expires_at = item.reply, expires
        for name in item.cancel_timers:
            self.cancel_timer(item.actor, name)
        if item.completion is not None:
            self.clear_timers(item.actor)
        elif row.status is Status.ACTIVE:  # an ended generation has no future to schedule
            for timer in item.timers:
                self.schedule(item.actor, item.generation, timer, now)
        if item.completion is not None:
            row.status = item.completion.status
            row.result = item.completion.result
            row.error = item.completion.error
            row.completed_at = now
            row.expires_at = expires = now + row.retention
        key = (item.actor, item.generation)
        previous = self.updates.get(key)
        # Pipelined turns of one actor may share a batch: the last state written wins.
        state = item.state if item.state is not None else (previous[0] if previous else None)
        recent = item.recent_turns
        if recent is None and previous:
            recent = previous[1]
        self.updates[key] = (
            state,
            recent,
            row.status.value,
            row.result,
            row.error,
            now,
            row.completed_at,
            row.expires_at,
            item.actor.entity,
            item.actor.key,
            item.generation,
        )
        if item.set_attributes or item.remove_attributes:
            changes = self.attributes.setdefault(item.actor, {})
            changes.update(item.set_attributes)
            changes.update(dict.fromkeys(item.remove_attributes, _REMOVED))
        outgoing = [self.enqueue(out, now) for out in item.outgoing]
        successor = None
        if item.successor is not None:
            row = self.create(item.actor, item.successor.init, now)
            successor = self.insert(item.actor, row.generation, item.successor.message, now)
        readmitted = None if item.readmit is None else self.admit(item.readmit, now)
        self._replies(item, successor, readmitted)
        if ownership is not None and item.completion is not None:
            ownership.ended(item.actor, item.generation, item.completion.status)
        return TurnOutcome(
            applied=True,
            outgoing=outgoing,
            successor=successor,
            readmitted=readmitted,
            expires_at=expires,
        )

    def _replies(
        self, item: TurnCommit, successor: MessageRecord | None, readmitted: AdmitOutcome | None
    ) -> None:
        """Store the turn's replies for callers on other nodes, forwards resolved."""
        if self.ownership is None:
            return
        for reply in item.replies:
            forward: int | None = None
            adopt = reply.adopt
            if reply.forward:
                if successor is not None:
                    forward = successor.id
                elif readmitted is not None and readmitted.message is not None:
                    forward = readmitted.message.id
                elif readmitted is not None:
                    adopt = readmitted.generation  # answered by how that generation ended
            self.ownership.reply(reply, forward=forward, adopt=adopt)

    def attribute_statements(
        self, encode: Callable[[AttributeValue], tuple[Any, ...]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, str]]]:
        """The (entity, key, name, *encode(value)) upserts and (entity, key, name) removals."""
        upserts: list[tuple[Any, ...]] = []
        removals: list[tuple[str, str, str]] = []
        for actor, changes in self.attributes.items():
            for name, value in changes.items():
                if value is _REMOVED:
                    removals.append((actor.entity, actor.key, name))
                else:
                    encoded = encode(value)  # type: ignore[arg-type]  # not _REMOVED here
                    upserts.append((actor.entity, actor.key, name, *encoded))
        return upserts, removals


def touched(items: Iterable[WriteItem]) -> Iterator[ActorId]:
    for item in items:
        if isinstance(item, FireTimers | BuryMessage | RetryDeadLetter):
            continue
        yield item.actor
        if isinstance(item, TurnCommit):
            yield from (out.actor for out in item.outgoing)
            if item.readmit is not None:
                yield item.readmit.actor


def idempotency_keys(items: Iterable[WriteItem]) -> Iterator[tuple[ActorId, str]]:
    for item in items:
        if isinstance(item, Admit | FireTimers | BuryMessage | RetryDeadLetter):
            continue
        for enqueue in [item] if isinstance(item, Enqueue) else item.outgoing:
            if enqueue.message.idempotency_key is not None:
                yield enqueue.actor, enqueue.message.idempotency_key


def decide(batch: Batch, items: Iterable[WriteItem], now: float) -> list[WriteOutcome]:
    """Run ``items`` in order against ``batch``: one outcome per item."""
    outcomes: list[WriteOutcome] = []
    for item in items:
        if isinstance(item, Admit):
            outcomes.append(batch.admit(item, now))
        elif isinstance(item, Enqueue):
            outcomes.append(batch.enqueue(item, now))
        elif isinstance(item, FireTimers):
            outcomes.append(batch.fire(item, now))
        elif isinstance(item, BuryMessage):
            outcomes.append(batch.bury(item, now))
        elif isinstance(item, RetryDeadLetter):
            outcomes.append(batch.retry(item, now))
        else:
            outcomes.append(batch.commit_turn(item, now))
    return outcomes
