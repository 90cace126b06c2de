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
import itertools
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from persistence import _file_lock, _migrate, _sqlite_query
from persistence._attributes import from_sql, to_sql
from persistence._batch import (
    Batch,
    DueTimer,
    Handled,
    Row,
    actor_record,
    dead_letter_record,
    decide,
    idempotency_keys,
    message_record,
    timer_record,
    touched,
)
from persistence._sqlite_thread import SQLiteThread
from persistence._statistics import entity_statistics
from persistence.errors import StorageFull, StoreBusy, StoreError, StoreUnavailable
from persistence.records import (
    ActorId,
    ActorRecord,
    ActorSummary,
    AttributeValue,
    BuryMessage,
    DeadLetterRecord,
    EntityStatistics,
    FireTimers,
    MessageKind,
    MessageRecord,
    Query,
    RetryDeadLetter,
    Status,
    StoredReply,
    TimerRecord,
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
    updated_at = excluded.updated_at, completed_at = NULL, expires_at = NULL,
    recent_turns = NULL
"""
_UPDATE_TURN = """
UPDATE actors SET state = coalesce(?, state), recent_turns = coalesce(?, recent_turns),
                  status = ?, result = ?, error = ?, updated_at = ?, completed_at = ?,
                  expires_at = ?
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

    def __init__(self, thread: SQLiteThread, path: str, lock: int | None) -> None:
        self._thread = thread
        self._path = path
        self._lock = lock  # the runtime lock (``_file_lock``), held while open

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        synchronous: str = "FULL",
        schema_version: int | None = None,
        migrate: bool = True,
        exclusive: bool | None = None,
    ) -> SQLiteStore:
        """Open (creating if needed) and migrate the database at ``path``.

        Args:
            path: a file path, or ``:memory:``.
            synchronous: SQLite's ``synchronous`` pragma: ``FULL`` survives power loss,
                ``NORMAL`` survives a process crash.
            schema_version: migrate only up to this version (tests of the migration runner).
            migrate: ``False`` opens an existing database as it is, for a tool: the file must
                exist at the current schema version.
            exclusive: hold the file's runtime lock while open (``_file_lock``): one such
                store per file. By default a store that migrates (a runtime's) does, and a
                tool's does not.

        Raises:
            StoreUnavailable: the file cannot be opened (with ``migrate=False``: it does not
                exist or is not at the current schema version).
            StoreInUse: ``exclusive``, and another store holds the file's lock for over a
                second.
            SchemaTooNew: the file was written by a newer version of this library.
        """
        if not migrate:
            _check_exists(path)
        lock = (
            await _file_lock.acquire(path)
            if (migrate if exclusive is None else exclusive)
            else None
        )
        try:
            try:
                thread = await SQLiteThread.connect(path)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc
            try:
                await thread.run(
                    lambda conn: _setup(conn, path, synchronous, schema_version, migrate)
                )
            except BaseException:
                await thread.close()
                raise
        except BaseException:
            _file_lock.release(lock)
            raise
        return cls(thread, path, lock)

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
        return [message_record(row) for row in rows]

    async def load_timers(self, actor: ActorId) -> list[TimerRecord]:
        sql = (
            "SELECT name, generation, due_at, handler, payload, created_at FROM timers"
            " WHERE entity = ? AND key = ? ORDER BY due_at, id"
        )
        params = (actor.entity, actor.key)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [timer_record(actor, row) for row in rows]

    async def entity_names(self) -> list[str]:
        sql = "SELECT DISTINCT entity FROM actors ORDER BY entity"
        rows = await self._read(lambda conn: conn.execute(sql).fetchall())
        return [entity for (entity,) in rows]

    async def statistics(self, *, now: float) -> list[EntityStatistics]:
        def read(conn: sqlite3.Connection) -> list[EntityStatistics]:
            return entity_statistics(
                actors=conn.execute(
                    "SELECT entity, status, count(*) - total(expires_at <= ?),"
                    " total(expires_at <= ?) FROM actors GROUP BY entity, status",
                    (now, now),
                ).fetchall(),
                messages=conn.execute(
                    "SELECT entity, total(done = 0), total(done = 1),"
                    " min(CASE WHEN done = 0 THEN created_at END) FROM messages GROUP BY entity"
                ).fetchall(),
                timers=conn.execute(
                    "SELECT entity, count(*), min(due_at) FROM timers GROUP BY entity"
                ).fetchall(),
                dead_letters=conn.execute(
                    "SELECT entity, count(*) FROM dead_letters GROUP BY entity"
                ).fetchall(),
            )

        return await self._read(read, snapshot=True)

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
        return [dead_letter_record(row) for row in rows]

    async def discard_dead_letter(
        self, dead_letter: int, *, entities: Collection[str] | None = None
    ) -> bool:
        where, names = _entity_filter(entities)
        sql = f"DELETE FROM dead_letters WHERE id = ?{where}"
        params = (dead_letter, *names)
        return await self._write(lambda conn: conn.execute(sql, params).rowcount > 0)

    async def close(self) -> None:
        await self._thread.close()
        _file_lock.release(self._lock)
        self._lock = None


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


def _check_exists(path: str) -> None:
    if path == ":memory:" or not os.path.isfile(path):
        what = "an in-memory database" if path == ":memory:" else "no such file"
        raise StoreUnavailable(f"cannot open SQLite database {path!r}: {what}")


def _setup(
    conn: sqlite3.Connection,
    path: str,
    synchronous: str,
    schema_version: int | None,
    migrate: bool,
) -> None:
    try:
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        current = _user_version(conn)
        pending = _migrate.pending("sqlite", current=current, target=schema_version)
        if pending and not migrate:
            raise StoreUnavailable(
                f"SQLite database {path!r} is at schema version {current}, not"
                f" {pending[-1].version}: open it with the application first, which migrates it"
            )
        for migration in pending:
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
    rows = _rows(conn, {*touched(items), *(t.actor for t in due), *dead_actors})
    keys = {
        *idempotency_keys(items),
        *(
            (ActorId(entity=m.entity, key=m.key), m.idempotency_key)
            for m in retried
            if m.idempotency_key is not None
        ),
    }
    first_id = meta["next_message_id"]
    ids = itertools.count(first_id)
    batch = Batch(
        rows,
        _handled(conn, keys),
        ids,
        meta["max_purged_generation"],
        due,
        dead,
        _unhandled(conn, items),
    )
    outcomes = decide(batch, items, now)
    _apply(conn, batch, first_id, next(ids))
    return outcomes


def _due_timers(conn: sqlite3.Connection, items: Sequence[WriteItem], now: float) -> list[DueTimer]:
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
        DueTimer(tid, ActorId(entity=entity, key=key), name, gen, handler, payload)
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
                found[item.dead_letter] = dead_letter_record(row)
    return found


def _unhandled(conn: sqlite3.Connection, items: Sequence[WriteItem]) -> set[int]:
    """Which of the messages that ``items`` bury are stored and unhandled."""
    sql = "SELECT 1 FROM messages WHERE id = ? AND done = 0"
    return {
        item.message
        for item in items
        if isinstance(item, BuryMessage) and conn.execute(sql, (item.message,)).fetchone()
    }


def _rows(conn: sqlite3.Connection, actors: set[ActorId]) -> dict[ActorId, Row]:
    ordered = sorted(actors)
    rows: dict[ActorId, Row] = {}
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
            rows[ActorId(entity=entity, key=key)] = Row(
                gen, Status(status), ret, result, error, done, exp
            )
    return rows


def _handled(
    conn: sqlite3.Connection, keys: set[tuple[ActorId, str]]
) -> dict[tuple[ActorId, str], Handled]:
    found: dict[tuple[ActorId, str], Handled] = {}
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
            record = message_record(row)
            done, reply, error, expires = row[12:]
            stored = StoredReply(reply=reply, error=error) if done else None
            actor = ActorId(entity=record.entity, key=record.key)
            idem = str(record.idempotency_key)
            found[(actor, idem)] = Handled(record, stored, expires)
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


def _apply(conn: sqlite3.Connection, batch: Batch, first_id: int, next_id: int) -> None:
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
        # Without its last column, reply_to: only stores shared by several nodes keep it.
        conn.executemany(_INSERT_MESSAGE, [row[:11] for row in batch.inserts])
    if batch.timer_inserts:
        conn.executemany(_INSERT_TIMER, batch.timer_inserts.values())
    upserts, removals = batch.attribute_statements(to_sql)
    if upserts:
        conn.executemany(_UPSERT_ATTRIBUTE, upserts)
    if removals:
        conn.executemany(
            "DELETE FROM attributes WHERE entity = ? AND key = ? AND name = ?", removals
        )
    if next_id != first_id:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'next_message_id'", (next_id,))


def _load_actor(conn: sqlite3.Connection, actor: ActorId) -> ActorRecord | None:
    row = conn.execute(
        "SELECT generation, status, state, result, error, retention, created_at,"
        " updated_at, completed_at, expires_at, recent_turns FROM actors"
        " WHERE entity = ? AND key = ?",
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
    return actor_record(actor, row, attributes)


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
