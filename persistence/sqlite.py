"""SQLite backend: the default store, in process.

One connection serves every operation, and every operation (a whole write batch, or a read) is
one plain function that runs on the connection's own thread (:class:`SQLiteThread`): one thread
hop per operation, however many statements it takes, and operations never interleave, so reads
never see a transaction in progress. A write batch is one ``BEGIN IMMEDIATE`` transaction whose
statements are grouped by kind and sent with ``executemany``, so its cost grows with the number
of statement kinds, not of items.

This module makes storage decisions only (does the row exist, is it expired, is the generation
current); it never decides what a message means.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from persistence import _migrate, _sqlite_query
from persistence._attributes import SqlValue, from_sql, to_sql
from persistence._sqlite_thread import SQLiteThread
from persistence.errors import StorageFull, StoreBusy, StoreError, StoreUnavailable
from persistence.records import (
    ActorId,
    ActorInit,
    ActorRecord,
    ActorSummary,
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
    Query,
    RetryDeadLetter,
    RetryOutcome,
    Status,
    StoredReply,
    TurnCommit,
    TurnOutcome,
    WriteItem,
    WriteOutcome,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_ROW_CHUNK = 400  # (entity, key) pairs per lookup: 800 parameters, far below SQLite's limit
_SQLITE_FULL = 13

_UPSERT_ACTOR = """
INSERT INTO actors (entity, key, generation, status, state, result, error, retention,
                    created_at, updated_at, completed_at, expires_at)
VALUES (?, ?, ?, 'active', NULL, NULL, NULL, ?, ?, ?, NULL, NULL)
ON CONFLICT (entity, key) DO UPDATE SET
    generation = excluded.generation, status = 'active', state = NULL, result = NULL,
    error = NULL, retention = excluded.retention, created_at = excluded.created_at,
    updated_at = excluded.updated_at, completed_at = NULL, expires_at = NULL
"""
_UPDATE_TURN = """
UPDATE actors SET state = coalesce(?, state), status = ?, result = ?, error = ?,
                  updated_at = ?, completed_at = ?, expires_at = ?
WHERE entity = ? AND key = ? AND generation = ?
"""
_INSERT_MESSAGE = """
INSERT INTO messages (id, entity, key, generation, kind, handler, payload, created_at, meta,
                      idempotency_key, timer)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_TIMER = """
INSERT INTO timers (entity, key, name, generation, due_at, handler, payload, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
_DUE_TIMERS = """
SELECT id, entity, key, name, generation, handler, payload FROM timers
WHERE due_at <= ?{entities} ORDER BY due_at, id LIMIT ?
"""
_UNHANDLED_TIMER_MESSAGES = "DELETE FROM messages WHERE entity = ? AND key = ? AND done = 0"
_KEEP_REPLY = """
UPDATE messages SET done = 1, reply = ?, reply_error = ?, expires_at = ? WHERE id = ?
"""
_DUPLICATE = MessageKind.DUPLICATE.value
_MESSAGE_COLUMNS = (
    "id, entity, key, generation, kind, handler, payload, created_at, meta, idempotency_key,"
    " timer, attempts"
)
_DEAD_LETTER_COLUMNS = (
    "id, entity, key, generation, kind, handler, payload, created_at, meta, idempotency_key,"
    " timer, attempts, error, dead_at"
)
_BURY = f"""
INSERT INTO dead_letters ({_DEAD_LETTER_COLUMNS})
SELECT id, entity, key, generation, kind, handler, payload, created_at, meta, idempotency_key,
       timer, ?, ?, ? FROM messages WHERE id = ? AND done = 0
"""
_UPSERT_ATTRIBUTE = """
INSERT INTO attributes (entity, key, name, value_type, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (entity, key, name) DO UPDATE SET
    value_type = excluded.value_type, value = excluded.value
"""
_REMOVED = object()


@dataclass(slots=True)
class _Row:
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
class _DueTimer:
    id: int
    actor: ActorId
    name: str
    generation: int
    handler: str
    payload: bytes


@dataclass(slots=True)
class _Handled:
    """A message stored under an idempotency key, and its reply once handled."""

    record: MessageRecord
    reply: StoredReply | None
    expires_at: float | None


def _message(row: Sequence[Any]) -> MessageRecord:
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


def _dead_letter(row: Sequence[Any]) -> DeadLetterRecord:
    return DeadLetterRecord(message=_message(row), error=row[12], dead_at=row[13])


class _Batch:
    """The statements one write batch will run, collected while its items are decided."""

    def __init__(
        self,
        rows: dict[ActorId, _Row],
        handled: dict[tuple[ActorId, str], _Handled],
        next_id: int,
        max_purged: int,
        due: Iterable[_DueTimer] = (),
        dead: Mapping[int, DeadLetterRecord] | None = None,
        unhandled: Collection[int] = (),
    ) -> None:
        self.rows = rows
        self.handled = handled
        # The same entries by message id: turns consume messages by id, on every commit.
        self.keyed = {seen.record.id: key for key, seen in handled.items()}
        self.next_id = next_id
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

    def create(self, actor: ActorId, init: ActorInit, now: float) -> _Row:
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
        row = _Row(generation, Status.ACTIVE, init.retention, None, None, None, None)
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
            id=self.next_id,
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
        )
        self.next_id += 1
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
            )
        )
        if msg.idempotency_key is not None:
            self.handled[(actor, msg.idempotency_key)] = _Handled(record, None, None)
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
        row = self.rows.get(item.actor)
        if row is None or row.generation != item.generation:
            # A forwarded duplicate goes on to whatever generation is current now.
            self.consume(item.consumed)
            readmit = None if item.readmit is None else self.admit(item.readmit, now)
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
        self.updates[key] = (
            state,
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
        return TurnOutcome(
            applied=True,
            outgoing=outgoing,
            successor=successor,
            readmitted=readmitted,
            expires_at=expires,
        )

    def attribute_statements(
        self,
    ) -> tuple[list[tuple[str, str, str, str, SqlValue]], list[tuple[str, str, str]]]:
        upserts: list[tuple[str, str, str, str, SqlValue]] = []
        removals: list[tuple[str, str, str]] = []
        for actor, changes in self.attributes.items():
            for name, value in changes.items():
                if value is _REMOVED:
                    removals.append((actor.entity, actor.key, name))
                else:
                    tag, stored = to_sql(value)  # type: ignore[arg-type]  # not _REMOVED here
                    upserts.append((actor.entity, actor.key, name, tag, stored))
        return upserts, removals


def _touched(items: Iterable[WriteItem]) -> Iterator[ActorId]:
    for item in items:
        if isinstance(item, FireTimers | BuryMessage | RetryDeadLetter):
            continue
        yield item.actor
        if isinstance(item, TurnCommit):
            yield from (out.actor for out in item.outgoing)
            if item.readmit is not None:
                yield item.readmit.actor


def _idempotency_keys(items: Iterable[WriteItem]) -> Iterator[tuple[ActorId, str]]:
    for item in items:
        if isinstance(item, Admit | FireTimers | BuryMessage | RetryDeadLetter):
            continue
        for enqueue in [item] if isinstance(item, Enqueue) else item.outgoing:
            if enqueue.message.idempotency_key is not None:
                yield enqueue.actor, enqueue.message.idempotency_key


def _entity_filter(entities: Collection[str] | None) -> tuple[str, list[str]]:
    """An ``AND entity IN (...)`` clause and its parameters; nothing for ``None``."""
    if entities is None:
        return "", []
    names = sorted(entities)
    return f" AND entity IN ({', '.join('?' * len(names)) or 'NULL'})", names


def _translate(exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if code == _SQLITE_FULL or "full" in text:
        return StorageFull(f"SQLite has no space left: {text}")
    if "locked" in text or "busy" in text:
        return StoreBusy(f"SQLite database is locked: {text}")
    return StoreError(f"SQLite error: {text}")


class SQLiteStore:
    """A :class:`persistence.Store` on one SQLite file (or an in-memory database).

    Open it with :func:`persistence.open_store` (``sqlite:///path.db`` or
    ``sqlite:///:memory:``) or :meth:`open`.
    """

    def __init__(self, thread: SQLiteThread, path: str) -> None:
        self._thread = thread
        self._path = path

    @classmethod
    async def open(
        cls, path: str, *, synchronous: str = "FULL", schema_version: int | None = None
    ) -> SQLiteStore:
        """Open (creating if needed) and migrate the database at ``path``.

        Args:
            path: a file path, or ``:memory:``.
            synchronous: SQLite's ``synchronous`` pragma: ``FULL`` survives power loss,
                ``NORMAL`` survives a process crash.
            schema_version: migrate only up to this version (tests of the migration runner).

        Raises:
            StoreUnavailable: the file cannot be opened.
            SchemaTooNew: the file was written by a newer version of this library.
        """
        try:
            thread = await SQLiteThread.connect(path)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc
        try:
            await thread.run(lambda conn: _setup(conn, path, synchronous, schema_version))
        except BaseException:
            await thread.close()
            raise
        return cls(thread, path)

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` on this store's connection, alone (for tests and tools).

        sqlite3 errors come out as they are; the runtime never calls this.
        """
        return await self._thread.run(operation)

    async def _read(self, read: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        # A ``snapshot`` read is several statements that must see one state of the database.
        return await self._thread.run(lambda conn: _in(conn, "BEGIN" if snapshot else None, read))

    async def _write(self, write: Callable[[sqlite3.Connection], T]) -> T:
        return await self._thread.run(lambda conn: _in(conn, "BEGIN IMMEDIATE", write))

    async def schema_version(self) -> int:
        """The schema version of the open database."""
        return await self._read(_user_version)

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        return await self._write(lambda conn: _write(conn, items, now))

    async def load_actor(self, actor: ActorId) -> ActorRecord | None:
        return await self._read(lambda conn: _load_actor(conn, actor), snapshot=True)

    async def load_mailbox(self, actor: ActorId) -> list[MessageRecord]:
        sql = (
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE entity = ? AND key = ? AND done = 0"
            " ORDER BY id"
        )
        params = (actor.entity, actor.key)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_message(row) for row in rows]

    async def actors_with_mail(self, *, after: ActorId | None, limit: int) -> list[ActorId]:
        start = (after.entity, after.key) if after else ("", "")
        sql = (
            "SELECT DISTINCT entity, key FROM messages"
            " WHERE (entity, key) > (?, ?) AND done = 0 ORDER BY entity, key LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, (*start, limit)).fetchall())
        return [ActorId(entity=entity, key=key) for entity, key in rows]

    async def find(self, query: Query) -> list[ActorSummary]:
        select = _sqlite_query.find(query)  # a malformed query fails before the store is held

        def find(conn: sqlite3.Connection) -> list[ActorSummary]:
            rows = conn.execute(select.sql, select.params).fetchall()
            attributes: list[Any] = []
            for lookup in _sqlite_query.attributes_of(query.entity, [row[0] for row in rows]):
                attributes.extend(conn.execute(lookup.sql, lookup.params).fetchall())
            return _sqlite_query.summaries(query, rows, attributes)

        return await self._read(find, snapshot=True)

    async def count(self, query: Query) -> int:
        select = _sqlite_query.count(query)
        row = await self._read(lambda conn: conn.execute(select.sql, select.params).fetchone())
        return int(row[0]) if row else 0

    async def next_timer_due(self, entities: Collection[str] | None = None) -> float | None:
        where, names = _entity_filter(entities)
        sql = f"SELECT due_at FROM timers WHERE 1{where} ORDER BY due_at LIMIT 1"
        return await self._scalar(sql, names)

    async def next_expiry(self) -> float | None:
        return await self._scalar(
            "SELECT min(e) FROM ("
            " SELECT min(expires_at) AS e FROM actors WHERE expires_at IS NOT NULL"
            " UNION ALL SELECT min(expires_at) FROM messages WHERE expires_at IS NOT NULL)"
        )

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> float | None:
        row = await self._read(lambda conn: conn.execute(sql, params).fetchone())
        return None if row is None or row[0] is None else float(row[0])

    async def purge_expired(self, *, now: float, limit: int) -> int:
        return await self._write(lambda conn: _purge_expired(conn, now, limit))

    async def record_attempts(self, messages: Sequence[int]) -> None:
        sql = "UPDATE messages SET attempts = attempts + 1 WHERE id = ? AND done = 0"
        ids = [(mid,) for mid in messages]
        await self._write(lambda conn: conn.executemany(sql, ids))

    async def dead_letters(
        self, *, entities: Collection[str] | None, after: int | None, limit: int
    ) -> list[DeadLetterRecord]:
        where, names = _entity_filter(entities)
        sql = (
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id > ?{where}"
            " ORDER BY id LIMIT ?"
        )
        params = (after or 0, *names, limit)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_dead_letter(row) for row in rows]

    async def discard_dead_letter(
        self, dead_letter: int, *, entities: Collection[str] | None = None
    ) -> bool:
        where, names = _entity_filter(entities)
        sql = f"DELETE FROM dead_letters WHERE id = ?{where}"
        params = (dead_letter, *names)
        return await self._write(lambda conn: conn.execute(sql, params).rowcount > 0)

    async def close(self) -> None:
        await self._thread.close()


# Operations: plain functions of the connection, each run whole on the store's thread.


def _in(
    conn: sqlite3.Connection, begin: str | None, operation: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``operation``, in a transaction opened with ``begin`` if there is one.

    sqlite3 errors become store errors; a failed transaction is rolled back.
    """
    try:
        if begin:
            conn.execute(begin)
        result = operation(conn)
        if begin:
            conn.execute("COMMIT")
        return result
    except sqlite3.Error as exc:
        _rollback(conn)
        raise _translate(exc) from exc
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any, while another error is being raised.

    If the rollback fails too, that error goes: the one being raised says what went wrong,
    and SQLite has already rolled the transaction back or will on the next ``BEGIN``.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def _setup(
    conn: sqlite3.Connection, path: str, synchronous: str, schema_version: int | None
) -> None:
    try:
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        current = _user_version(conn)
        for migration in _migrate.pending("sqlite", current=current, target=schema_version):
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{migration.sql}\n"
                f"PRAGMA user_version={migration.version};\nCOMMIT;"
            )
    except sqlite3.Error as exc:
        _rollback(conn)
        raise StoreUnavailable(f"cannot prepare SQLite database {path!r}: {exc}") from exc


def _write(conn: sqlite3.Connection, items: Sequence[WriteItem], now: float) -> list[WriteOutcome]:
    meta = {name: int(value) for name, value in conn.execute("SELECT name, value FROM meta")}
    due = _due_timers(conn, items, now)
    dead = _dead_for(conn, items)
    retried = [d.message for d in dead.values()]
    dead_actors = {ActorId(entity=m.entity, key=m.key) for m in retried}
    rows = _rows(conn, {*_touched(items), *(t.actor for t in due), *dead_actors})
    keys = {
        *_idempotency_keys(items),
        *(
            (ActorId(entity=m.entity, key=m.key), m.idempotency_key)
            for m in retried
            if m.idempotency_key is not None
        ),
    }
    batch = _Batch(
        rows,
        _handled(conn, keys),
        meta["next_message_id"],
        meta["max_purged_generation"],
        due,
        dead,
        _unhandled(conn, items),
    )
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
    _apply(conn, batch, meta["next_message_id"])
    return outcomes


def _due_timers(
    conn: sqlite3.Connection, items: Sequence[WriteItem], now: float
) -> list[_DueTimer]:
    fires = [item for item in items if isinstance(item, FireTimers)]
    limit = sum(item.limit for item in fires)
    if limit <= 0:
        return []
    entities: set[str] | None = set()
    for item in fires:
        if item.entities is None or entities is None:
            entities = None
        else:
            entities.update(item.entities)
    where, names = _entity_filter(entities)
    sql = _DUE_TIMERS.format(entities=where)
    return [
        _DueTimer(tid, ActorId(entity=entity, key=key), name, gen, handler, payload)
        for tid, entity, key, name, gen, handler, payload in conn.execute(sql, (now, *names, limit))
    ]


def _dead_for(conn: sqlite3.Connection, items: Sequence[WriteItem]) -> dict[int, DeadLetterRecord]:
    """The dead letters that ``items`` retry."""
    found: dict[int, DeadLetterRecord] = {}
    sql = f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?"
    for item in items:
        if isinstance(item, RetryDeadLetter):
            row = conn.execute(sql, (item.dead_letter,)).fetchone()
            if row is not None:
                found[item.dead_letter] = _dead_letter(row)
    return found


def _unhandled(conn: sqlite3.Connection, items: Sequence[WriteItem]) -> set[int]:
    """Which of the messages that ``items`` bury are stored and unhandled."""
    sql = "SELECT 1 FROM messages WHERE id = ? AND done = 0"
    return {
        item.message
        for item in items
        if isinstance(item, BuryMessage) and conn.execute(sql, (item.message,)).fetchone()
    }


def _rows(conn: sqlite3.Connection, actors: set[ActorId]) -> dict[ActorId, _Row]:
    ordered = sorted(actors)
    rows: dict[ActorId, _Row] = {}
    for start in range(0, len(ordered), _ROW_CHUNK):
        chunk = ordered[start : start + _ROW_CHUNK]
        values = ", ".join(["(?, ?)"] * len(chunk))
        params = [part for actor in chunk for part in (actor.entity, actor.key)]
        sql = (
            # A join from the VALUES, not `(entity, key) IN (VALUES ...)`: SQLite runs
            # that IN as a scan of every actor; the join seeks each by primary key.
            "SELECT a.entity, a.key, a.generation, a.status, a.retention, a.result, a.error,"
            f" a.completed_at, a.expires_at FROM (VALUES {values}) AS v"
            " JOIN actors AS a ON a.entity = v.column1 AND a.key = v.column2"
        )
        for entity, key, gen, status, ret, result, error, done, exp in conn.execute(sql, params):
            rows[ActorId(entity=entity, key=key)] = _Row(
                gen, Status(status), ret, result, error, done, exp
            )
    return rows


def _handled(
    conn: sqlite3.Connection, keys: set[tuple[ActorId, str]]
) -> dict[tuple[ActorId, str], _Handled]:
    found: dict[tuple[ActorId, str], _Handled] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), _ROW_CHUNK):
        chunk = ordered[start : start + _ROW_CHUNK]
        values = ", ".join(["(?, ?, ?)"] * len(chunk))
        params = [part for actor, idem in chunk for part in (actor.entity, actor.key, idem)]
        sql = (
            f"SELECT {_MESSAGE_COLUMNS}, done, reply, reply_error, expires_at"
            f" FROM (VALUES {values}) AS v JOIN messages AS m ON m.entity = v.column1"
            " AND m.key = v.column2 AND m.idempotency_key = v.column3"
        )
        for row in conn.execute(sql, params):
            record = _message(row)
            done, reply, error, expires = row[12:]
            stored = StoredReply(reply=reply, error=error) if done else None
            actor = ActorId(entity=record.entity, key=record.key)
            idem = str(record.idempotency_key)
            found[(actor, idem)] = _Handled(record, stored, expires)
    return found


def _drop_owned(
    conn: sqlite3.Connection, actors: list[tuple[str, str]], *, keep_duplicates: bool = False
) -> None:
    """Delete the messages and attributes of these (entity, key) pairs.

    With ``keep_duplicates``, unhandled duplicates stay: they are accepted starts that the
    runtime re-admits to the next generation, so they must survive a crash meanwhile.
    """
    keep = f" AND (kind != '{_DUPLICATE}' OR done = 1)" if keep_duplicates else ""
    conn.executemany(f"DELETE FROM messages WHERE entity = ? AND key = ?{keep}", actors)
    conn.executemany("DELETE FROM attributes WHERE entity = ? AND key = ?", actors)
    conn.executemany("DELETE FROM timers WHERE entity = ? AND key = ?", actors)


def _apply(conn: sqlite3.Connection, batch: _Batch, first_id: int) -> None:
    if batch.buried:
        # Before anything else: a generation this batch replaces takes its messages along.
        conn.executemany(_BURY, batch.buried)
        conn.executemany("DELETE FROM messages WHERE id = ?", [(mid,) for *_, mid in batch.buried])
    if batch.retried:
        conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(d,) for d in batch.retried])
    if batch.reset_actors:
        _drop_owned(conn, batch.reset_actors, keep_duplicates=True)
    if batch.timer_clears:
        conn.executemany("DELETE FROM timers WHERE entity = ? AND key = ?", batch.timer_clears)
        conn.executemany(f"{_UNHANDLED_TIMER_MESSAGES} AND timer IS NOT NULL", batch.timer_clears)
    if batch.timer_cancels:
        conn.executemany(
            "DELETE FROM timers WHERE entity = ? AND key = ? AND name = ?", batch.timer_cancels
        )
        conn.executemany(f"{_UNHANDLED_TIMER_MESSAGES} AND timer = ?", batch.timer_cancels)
    if batch.timers_fired:
        conn.executemany("DELETE FROM timers WHERE id = ?", batch.timers_fired)
    if batch.upserts:
        conn.executemany(_UPSERT_ACTOR, batch.upserts)
    if batch.updates:
        conn.executemany(_UPDATE_TURN, batch.updates.values())
    if batch.consumed:
        conn.executemany("DELETE FROM messages WHERE id = ?", batch.consumed)
    if batch.kept:
        conn.executemany(_KEEP_REPLY, batch.kept)
    if batch.inserts:
        conn.executemany(_INSERT_MESSAGE, batch.inserts)
    if batch.timer_inserts:
        conn.executemany(_INSERT_TIMER, batch.timer_inserts.values())
    upserts, removals = batch.attribute_statements()
    if upserts:
        conn.executemany(_UPSERT_ATTRIBUTE, upserts)
    if removals:
        conn.executemany(
            "DELETE FROM attributes WHERE entity = ? AND key = ? AND name = ?", removals
        )
    if batch.next_id != first_id:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'next_message_id'", (batch.next_id,))


def _load_actor(conn: sqlite3.Connection, actor: ActorId) -> ActorRecord | None:
    row = conn.execute(
        "SELECT generation, status, state, result, error, retention, created_at,"
        " updated_at, completed_at, expires_at FROM actors WHERE entity = ? AND key = ?",
        (actor.entity, actor.key),
    ).fetchone()
    if row is None:
        return None
    attributes: dict[str, AttributeValue] = {
        name: from_sql(tag, value)
        for name, tag, value in conn.execute(
            "SELECT name, value_type, value FROM attributes WHERE entity = ? AND key = ?",
            (actor.entity, actor.key),
        )
    }
    gen, status, state, result, error, retention, created, updated, done, expires = row
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
    )


def _purge_expired(conn: sqlite3.Connection, now: float, limit: int) -> int:
    expired = conn.execute(
        "SELECT entity, key, generation FROM actors WHERE expires_at <= ?"
        " ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    if expired:
        pairs = [(entity, key) for entity, key, _ in expired]
        conn.executemany("DELETE FROM actors WHERE entity = ? AND key = ?", pairs)
        _drop_owned(conn, pairs)
        conn.execute(
            "UPDATE meta SET value = max(value, ?) WHERE name = 'max_purged_generation'",
            (max(gen for _, _, gen in expired),),
        )
    # Replies kept for idempotency keys whose window has passed.
    replies = conn.execute(
        "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE expires_at <= ? LIMIT ?)",
        (now, limit),
    ).rowcount
    return len(expired) + max(replies, 0)
