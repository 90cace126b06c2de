"""PostgreSQL backend: one database shared by every node; the only module importing asyncpg.

A small asyncpg pool serves the store. Each write batch is one READ COMMITTED transaction that
first takes a transaction-level advisory lock on every actor it touches (one statement, in
sorted order, so batches never deadlock on each other), then reads the rows it decides on, runs
the shared decision logic (:mod:`persistence._batch`) and applies the result with one
``executemany`` per statement kind. Items whose actors are not known up front (timers to fire,
messages to bury, dead letters to retry) are read before the locks, and read again after them.
Message ids come from a sequence, taken only while the locks are held, so each actor's ids
increase in commit order across nodes; admission of one key is atomic across nodes too.

Advisory locks use the two-int form ``pg_advisory_xact_lock(LOCK_NAMESPACE, h)``, where ``h``
is a 32-bit BLAKE2b hash of (schema, entity, key): the namespace keeps them apart from other
users of advisory locks (the one-bigint form never meets the two-int form), and a hash
collision only makes two actors wait for each other.

Every driver or OS error leaves this module as a :class:`persistence.errors.StoreError`. This
module makes storage decisions only; it never decides what a message means.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, Literal, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import msgspec

from persistence import _migrate, _pg_cluster, _pg_query
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
from persistence._ownership import Lease, parse_notice
from persistence._pg_cluster import Member, channels
from persistence._pg_query import decode_value, encode_value, escape, unescape
from persistence._statistics import entity_statistics
from persistence.cluster import Ended, MailFor, Notification
from persistence.errors import (
    InvalidStoreUrl,
    StorageFull,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
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
    ReplyRecord,
    RetryDeadLetter,
    Status,
    StoredReply,
    TimerRecord,
    TurnCommit,
    WriteItem,
    WriteOutcome,
)

__all__ = ["LOCK_NAMESPACE", "PostgresStore"]

T = TypeVar("T")
Connection = Any  # asyncpg.Connection: asyncpg ships no type information

LOCK_NAMESPACE = 0x6B416374  # "kAct": the first key of every advisory lock this store takes
"""The first int4 key of every advisory lock this backend takes."""

_POOL_SIZE = 4
_CONNECT_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 10.0
_BUSY = frozenset(
    {"40001", "40P01", "55P03", "57014"}
)  # serialization, deadlock, lock/statement timeout
_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})  # shutdown, cannot connect, too many
_DISK_FULL = "53100"

_DUPLICATE = MessageKind.DUPLICATE.value
_MESSAGE_COLUMNS = (
    "id, entity, key, generation, kind, handler, payload, created_at, meta, idempotency_key,"
    " timer, attempts"
)
_DEAD_LETTER_COLUMNS = f"{_MESSAGE_COLUMNS}, error, dead_at"
_LOCK = "SELECT pg_advisory_xact_lock($1::int4, k) FROM unnest($2::int4[]) AS k"
_TRY_LOCK = "SELECT k FROM unnest($2::int4[]) AS k WHERE pg_try_advisory_xact_lock($1::int4, k)"
# Each actor's row (if any) and lease (if any), in one round trip.
_ROWS = """
SELECT t.entity, t.key, a.generation, a.status, a.retention, a.result, a.error,
       a.completed_at, a.expires_at,
       l.session, l.epoch, coalesce(s.expires_at > clock_timestamp(), false), s.channel
FROM unnest($1::text[], $2::text[]) AS t(entity, key)
LEFT JOIN actors AS a ON a.entity = t.entity AND a.key = t.key
LEFT JOIN leases AS l ON l.entity = t.entity AND l.key = t.key
LEFT JOIN sessions AS s ON s.session = l.session
"""
_HANDLED = f"""
SELECT {_MESSAGE_COLUMNS}, done, reply, reply_error, expires_at
FROM messages WHERE (entity, key, idempotency_key)
    IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
"""
_META_AND_IDS = """
SELECT (SELECT value FROM meta WHERE name = 'max_purged_generation'),
       ARRAY(SELECT nextval('message_ids') FROM generate_series(1, $1)),
       coalesce((SELECT expires_at > clock_timestamp() FROM sessions WHERE session = $2), false),
       ARRAY(SELECT nextval('lease_epochs') FROM generate_series(1, $3)),
       ARRAY(SELECT session FROM sessions WHERE session = ANY($4::bigint[]) ORDER BY session),
       ARRAY(SELECT channel FROM sessions WHERE session = ANY($4::bigint[]) ORDER BY session)
"""
_UPSERT_ACTOR = """
INSERT INTO actors (entity, key, generation, status, state, result, error, retention,
                    created_at, updated_at, completed_at, expires_at)
VALUES ($1, $2, $3, 'active', NULL, NULL, NULL, $4, $5, $6, NULL, NULL)
ON CONFLICT (entity, key) DO UPDATE SET
    generation = excluded.generation, status = 'active', state = NULL, result = NULL,
    error = NULL, retention = excluded.retention, created_at = excluded.created_at,
    updated_at = excluded.updated_at, completed_at = NULL, expires_at = NULL,
    recent_turns = NULL
"""
_UPDATE_TURN = """
UPDATE actors SET state = coalesce($1, state), recent_turns = coalesce($2, recent_turns),
                  status = $3, result = $4, error = $5, updated_at = $6, completed_at = $7,
                  expires_at = $8
WHERE entity = $9 AND key = $10 AND generation = $11
"""
_INSERT_MESSAGE = """
INSERT INTO messages (id, entity, key, generation, kind, handler, payload, created_at, meta,
                      idempotency_key, timer, reply_to)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
_INSERT_TIMER = """
INSERT INTO timers (entity, key, name, generation, due_at, handler, payload, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_DUE_TIMERS = """
SELECT id, entity, key, name, generation, handler, payload FROM timers
WHERE due_at <= $1 AND ($2::text[] IS NULL OR entity = ANY($2::text[]))
ORDER BY due_at, id LIMIT $3
"""
_UNHANDLED_TIMER_MESSAGES = "DELETE FROM messages WHERE entity = $1 AND key = $2 AND NOT done"
_KEEP_REPLY = """
UPDATE messages SET done = true, reply = $1, reply_error = $2, expires_at = $3 WHERE id = $4
"""
_BURY = f"""
INSERT INTO dead_letters ({_DEAD_LETTER_COLUMNS})
SELECT {_MESSAGE_COLUMNS.replace("attempts", "$1")}, $2, $3 FROM messages
WHERE id = $4 AND NOT done
"""
_UPSERT_ATTRIBUTE = """
INSERT INTO attributes (entity, key, name, value_type, num, str) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (entity, key, name) DO UPDATE SET
    value_type = excluded.value_type, num = excluded.num, str = excluded.str
"""


async def _keep_session(_conn: Connection) -> None:
    """What a pooled connection needs when it is released: nothing.

    asyncpg's default reset (unlisten, unlock advisory locks, reset settings) costs a round
    trip per operation; this store keeps no session state on pooled connections (its locks
    are transaction-level, and it LISTENs on a connection of its own).
    """


def _entity_filter(param: int) -> str:
    """A test that ``entity`` is in the text[] parameter ``param``, or that it is NULL."""
    return f"(${param}::text[] IS NULL OR entity = ANY(${param}::text[]))"


def lock_key(schema: str, actor: ActorId) -> int:
    """The second (int4) key of the advisory lock of ``actor`` in ``schema``."""
    text = repr((schema, actor.entity, actor.key)).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(text, digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _escaped(values: Sequence[Any], *positions: int) -> tuple[Any, ...]:
    """``values`` with the strings at ``positions`` escaped for storage (None stays)."""
    out = list(values)
    for index in positions:
        if out[index] is not None:
            out[index] = escape(out[index])
    return tuple(out)


def _message(row: Sequence[Any]) -> MessageRecord:
    return message_record(_unescaped(row))


def _dead_letter(row: Sequence[Any]) -> DeadLetterRecord:
    decoded = list(_unescaped(row))
    decoded[12] = unescape(decoded[12])
    return dead_letter_record(decoded)


def _unescaped(row: Sequence[Any]) -> list[Any]:
    """A message row with entity, key, idempotency key and timer name as given."""
    decoded = list(row)
    for index in (1, 2, 9, 10):
        if decoded[index] is not None:
            decoded[index] = unescape(decoded[index])
    return decoded


def _entities(entities: Collection[str] | None) -> list[str] | None:
    return None if entities is None else sorted(escape(name) for name in entities)


def _translate(exc: BaseException) -> StoreError:
    """The store error for a driver or OS error."""
    state = str(getattr(exc, "sqlstate", None) or "")
    text = f"PostgreSQL error{f' {state}' if state else ''}: {exc}"
    if state == _DISK_FULL:
        return StorageFull(text)
    if state in _BUSY:
        return StoreBusy(text)
    if (
        state.startswith("08")
        or state in _UNAVAILABLE
        or isinstance(exc, OSError | asyncpg.ConnectionDoesNotExistError)
        or (isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc))
    ):
        return StoreUnavailable(text)
    return StoreError(text)


class PostgresStore:
    """A :class:`persistence.Store` in one PostgreSQL database (and schema).

    Several stores, in one process or many, may share a database: their write batches
    serialize per actor. Open it with :func:`persistence.open_store`
    (``postgresql://user@host:port/db?schema=name``) or :meth:`open`.
    """

    def __init__(
        self,
        pool: Any,
        schema: str,
        connect: Callable[[], Awaitable[Connection]] | None = None,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._closed = False
        # Multi-node (persistence.Leases): a dedicated connection LISTENs for wake-ups.
        self._connect = connect
        self._member: Member | None = None
        self._listening: Connection | None = None
        self._listener: Callable[[Notification], None] | None = None
        self._channel, self._ended_channel = channels(schema)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        synchronous_commit: bool = True,
        pool_size: int = _POOL_SIZE,
        schema_version: int | None = None,
        migrate: bool = True,
    ) -> PostgresStore:
        """Connect to the database at ``dsn``; create and migrate the schema as needed.

        Args:
            dsn: an asyncpg connection string (``postgresql://user@host:port/db``).
            schema: the schema to keep the tables in, created if missing (a valid, unquoted
                lower-case identifier); the server's search path if ``None``.
            synchronous_commit: ``False`` lets commits return before they are flushed (they
                survive a crash of this process, maybe not of the server's machine).
            pool_size: the most connections this store opens.
            schema_version: migrate only up to this version (tests of the migration runner).
            migrate: ``False`` opens existing tables as they are, for a tool: they must be
                there at the current schema version.

        Raises:
            InvalidStoreUrl: asyncpg refused ``dsn``.
            StoreUnavailable: the server cannot be reached (or, with ``migrate=False``, the
                tables are missing or not at the current schema version).
            SchemaTooNew: the schema was written by a newer version of this library.
        """
        settings = {"synchronous_commit": "on" if synchronous_commit else "off"}
        if schema is not None:
            settings["search_path"] = schema
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                server_settings=settings,
                timeout=_CONNECT_TIMEOUT,
                reset=_keep_session,
            )
        except ValueError as exc:  # asyncpg.ClientConfigurationError is one, too
            raise InvalidStoreUrl(f"asyncpg refused the PostgreSQL URL: {exc}") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

        async def connect() -> Connection:
            return await asyncpg.connect(dsn, server_settings=settings, timeout=_CONNECT_TIMEOUT)

        store = cls(pool, schema or "", connect)
        try:
            if migrate:
                await store._run(lambda conn: _setup(conn, schema, schema_version))
            else:
                await store._run(lambda conn: _check_current(conn, schema))
        except BaseException:
            await store.close()
            raise
        return store

    async def _run(
        self,
        operation: Callable[[Connection], Awaitable[T]],
        *,
        isolation: Literal["read_committed", "repeatable_read"] | None = None,
    ) -> T:
        """Run ``operation`` on a pooled connection, in a transaction if ``isolation`` is set.

        Repeatable-read transactions are reads (read only); read-committed ones are writes.
        """
        if self._closed:
            raise StoreUnavailable("the PostgreSQL store is closed")
        try:
            async with self._pool.acquire() as conn:
                if isolation is None:
                    return await operation(conn)
                readonly = isolation == "repeatable_read"
                async with conn.transaction(isolation=isolation, readonly=readonly):
                    return await operation(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise _translate(exc) from exc

    async def _write(self, operation: Callable[[Connection], Awaitable[T]]) -> T:
        return await self._run(operation, isolation="read_committed")

    async def schema_version(self) -> int:
        """The schema version of the open database."""
        return await self._run(_schema_version)

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        """See :meth:`persistence.Store.write`."""
        member = self._member
        return await self._write(lambda conn: _write(conn, self._schema, items, now, member))

    # -- persistence.Leases --------------------------------------------------------------

    @property
    def session(self) -> int | None:
        """See :attr:`persistence.Leases.session`."""
        return None if self._member is None else self._member.session

    async def join(
        self, node: str, *, lease: float, listener: Callable[[Notification], None]
    ) -> int:
        """See :meth:`persistence.Leases.join`."""
        self._listener = listener
        await self._listen()

        async def join(conn: Connection) -> int:
            await conn.execute(_pg_cluster.FORGET_OLD_SESSIONS)
            return int(await conn.fetchval(_pg_cluster.JOIN, node, self._channel, lease))

        session = await self._write(join)
        if self._member is None:
            self._member = Member(node, lease, self._channel, self._ended_channel, [])
        self._member.sessions.append(session)
        return session

    async def _listen(self) -> None:
        """Have a live connection LISTEN on this store's channels (again, if it was lost)."""
        if self._listening is not None and not self._listening.is_closed():
            return
        assert self._connect is not None
        try:
            conn = await self._connect()
            for channel in (self._channel, self._ended_channel):
                await conn.add_listener(channel, self._notified)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise _translate(exc) from exc
        self._listening = conn

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        notification = parse_notice(payload)
        if notification is None or self._listener is None:
            return
        if isinstance(notification, MailFor | Ended):
            actor = ActorId(
                entity=unescape(notification.actor.entity), key=unescape(notification.actor.key)
            )
            notification = dataclasses.replace(notification, actor=actor)
        self._listener(notification)

    async def renew(self) -> bool:
        """See :meth:`persistence.Leases.renew`."""
        member = self._member
        assert member is not None, "join first"
        await self._listen()
        row = await self._run(
            lambda conn: conn.fetchval(_pg_cluster.RENEW, member.session, member.lease)
        )
        return row is not None

    async def leave(self) -> None:
        """See :meth:`persistence.Leases.leave`."""
        member, self._member = self._member, None
        listening, self._listening = self._listening, None
        self._listener = None
        try:
            if member is not None:
                await self._write(
                    lambda conn: conn.execute(
                        _pg_cluster.LEAVE, member.session, member.ended_channel
                    )
                )
        finally:
            if listening is not None:
                with contextlib.suppress(Exception):
                    await listening.close(timeout=_CLOSE_TIMEOUT)

    async def claim(self, actors: Sequence[ActorId]) -> dict[ActorId, int]:
        """See :meth:`persistence.Leases.claim`."""
        member = self._member
        assert member is not None, "join first"

        async def claim(conn: Connection) -> dict[ActorId, int]:
            await _lock(conn, self._schema, actors)
            return await _pg_cluster.claim(conn, member, actors)

        return await self._write(claim)

    async def claim_orphans(self, *, entities: frozenset[str], limit: int) -> dict[ActorId, int]:
        """See :meth:`persistence.Leases.claim_orphans`."""
        names = sorted(escape(name) for name in entities)
        rows = await self._run(lambda conn: conn.fetch(_pg_cluster.ORPHANS, names, limit))
        if not rows:
            return {}
        return await self.claim(
            [ActorId(entity=unescape(entity), key=unescape(key)) for entity, key in rows]
        )

    async def mine_with_mail(self, *, limit: int) -> list[ActorId]:
        """See :meth:`persistence.Leases.mine_with_mail`."""
        member = self._member
        if member is None:
            return []
        sql, session = _pg_cluster.MINE_WITH_MAIL, member.session
        rows = await self._run(lambda conn: conn.fetch(sql, session, limit))
        return [ActorId(entity=unescape(entity), key=unescape(key)) for entity, key in rows]

    async def release(self, actor: ActorId, epoch: int) -> bool:
        """See :meth:`persistence.Leases.release`."""
        member = self._member
        if member is None:
            return False
        params = (escape(actor.entity), escape(actor.key), member.session, epoch)

        async def release(conn: Connection) -> bool:
            await _lock(conn, self._schema, [actor])
            return bool(await conn.execute(_pg_cluster.RELEASE, *params) != "DELETE 0")

        return await self._write(release)

    async def unhandled(self, messages: Sequence[int]) -> set[int]:
        """See :meth:`persistence.Leases.unhandled`."""
        if not messages:
            return set()
        ids = sorted(messages)
        return await self._run(lambda conn: _still(conn, "messages", ids, " AND NOT done"))

    async def kept_replies(self, messages: Sequence[int]) -> dict[int, StoredReply]:
        """See :meth:`persistence.Leases.kept_replies`."""
        if not messages:
            return {}
        sql, ids = _pg_cluster.KEPT_REPLIES, sorted(messages)
        rows = await self._run(lambda conn: conn.fetch(sql, ids))
        return {mid: StoredReply(reply=reply, error=error) for mid, reply, error in rows}

    async def take_replies(self) -> list[ReplyRecord]:
        """See :meth:`persistence.Leases.take_replies`."""
        member = self._member
        if member is None:
            return []
        sessions = list(member.sessions)
        rows = await self._write(lambda conn: conn.fetch(_pg_cluster.TAKE_REPLIES, sessions))
        return [_pg_cluster.reply_record(row) for row in rows]

    async def record_attempts(self, messages: Sequence[int]) -> None:
        """See :meth:`persistence.Store.record_attempts`."""
        sql = "UPDATE messages SET attempts = attempts + 1 WHERE id = $1 AND NOT done"
        ids = [(mid,) for mid in sorted(messages)]  # one row order for every writer
        await self._write(lambda conn: conn.executemany(sql, ids))

    async def dead_letters(
        self, *, entities: Collection[str] | None, after: int | None, limit: int
    ) -> list[DeadLetterRecord]:
        """See :meth:`persistence.Store.dead_letters`."""
        sql = (
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id > $1"
            f" AND {_entity_filter(2)} ORDER BY id LIMIT $3"
        )
        params = (after or 0, _entities(entities), max(limit, 0))
        rows = await self._run(lambda conn: conn.fetch(sql, *params))
        return [_dead_letter(row) for row in rows]

    async def discard_dead_letter(
        self, dead_letter: int, *, entities: Collection[str] | None = None
    ) -> bool:
        """See :meth:`persistence.Store.discard_dead_letter`."""
        names = _entities(entities)

        async def discard(conn: Connection) -> bool:
            # Under its actor's lock: a retry of it in flight either ran first or finds it gone.
            row = await conn.fetchrow(
                f"SELECT entity, key FROM dead_letters WHERE id = $1 AND {_entity_filter(2)}",
                dead_letter,
                names,
            )
            if row is None:
                return False
            actor = ActorId(entity=unescape(row[0]), key=unescape(row[1]))
            await _lock(conn, self._schema, [actor])
            status = await conn.execute(
                f"DELETE FROM dead_letters WHERE id = $1 AND {_entity_filter(2)}",
                dead_letter,
                names,
            )
            return bool(status != "DELETE 0")

        return await self._write(discard)

    async def next_timer_due(self, entities: Collection[str] | None = None) -> float | None:
        """See :meth:`persistence.Store.next_timer_due`."""
        sql = f"SELECT min(due_at) FROM timers WHERE {_entity_filter(1)}"
        return await self._scalar(sql, _entities(entities))

    async def next_expiry(self) -> float | None:
        """See :meth:`persistence.Store.next_expiry`."""
        return await self._scalar(
            "SELECT least((SELECT min(expires_at) FROM actors),"
            " (SELECT min(expires_at) FROM messages))"
        )

    async def _scalar(self, sql: str, *params: Any) -> float | None:
        value = await self._run(lambda conn: conn.fetchval(sql, *params))
        return None if value is None else float(value)

    async def load_actor(self, actor: ActorId) -> ActorRecord | None:
        """See :meth:`persistence.Store.load_actor`."""
        return await self._run(lambda conn: _load_actor(conn, actor))

    async def load_timers(self, actor: ActorId) -> list[TimerRecord]:
        """See :meth:`persistence.Store.load_timers`."""
        sql = (
            "SELECT name, generation, due_at, handler, payload, created_at FROM timers"
            " WHERE entity = $1 AND key = $2 ORDER BY due_at, id"
        )
        params = (escape(actor.entity), escape(actor.key))
        rows = await self._run(lambda conn: conn.fetch(sql, *params))
        return [timer_record(actor, (unescape(row[0]), *row[1:])) for row in rows]

    async def entity_names(self) -> list[str]:
        """See :meth:`persistence.Store.entity_names`."""
        sql = "SELECT DISTINCT entity FROM actors ORDER BY entity"
        rows = await self._run(lambda conn: conn.fetch(sql))
        return [unescape(entity) for (entity,) in rows]

    async def statistics(self, *, now: float) -> list[EntityStatistics]:
        """See :meth:`persistence.Store.statistics`."""

        async def read(conn: Connection) -> list[EntityStatistics]:
            actors = await conn.fetch(
                "SELECT entity, status, count(*) FILTER (WHERE NOT coalesce(expires_at <= $1,"
                " false)), count(*) FILTER (WHERE expires_at <= $1) FROM actors"
                " GROUP BY entity, status",
                now,
            )
            messages = await conn.fetch(
                "SELECT entity, count(*) FILTER (WHERE NOT done), count(*) FILTER (WHERE done),"
                " min(created_at) FILTER (WHERE NOT done) FROM messages GROUP BY entity"
            )
            timers = await conn.fetch(
                "SELECT entity, count(*), min(due_at) FROM timers GROUP BY entity"
            )
            dead = await conn.fetch("SELECT entity, count(*) FROM dead_letters GROUP BY entity")
            return entity_statistics(
                actors=[(unescape(e), status, live, gone) for e, status, live, gone in actors],
                messages=[(unescape(row[0]), *row[1:]) for row in messages],
                timers=[(unescape(row[0]), *row[1:]) for row in timers],
                dead_letters=[(unescape(e), count) for e, count in dead],
            )

        return await self._run(read, isolation="repeatable_read")

    async def load_mailbox(self, actor: ActorId) -> list[MessageRecord]:
        """See :meth:`persistence.Store.load_mailbox`."""
        sql = (
            f"SELECT {_MESSAGE_COLUMNS}, reply_to FROM messages WHERE entity = $1 AND key = $2"
            " AND NOT done ORDER BY id"
        )
        params = (escape(actor.entity), escape(actor.key))
        rows = await self._run(lambda conn: conn.fetch(sql, *params))
        return [
            _message(row)
            if row[12] is None
            else msgspec.structs.replace(_message(row), reply_to=row[12])
            for row in rows
        ]

    async def actors_with_mail(self, *, after: ActorId | None, limit: int) -> list[ActorId]:
        """See :meth:`persistence.Store.actors_with_mail`."""
        start = (escape(after.entity), escape(after.key)) if after else ("", "")
        sql = (
            "SELECT DISTINCT entity, key FROM messages"
            " WHERE (entity, key) > ($1, $2) AND NOT done ORDER BY entity, key LIMIT $3"
        )
        rows = await self._run(lambda conn: conn.fetch(sql, *start, max(limit, 0)))
        return [ActorId(entity=unescape(entity), key=unescape(key)) for entity, key in rows]

    async def find(self, query: Query) -> list[ActorSummary]:
        """See :meth:`persistence.Store.find`."""
        select = _pg_query.find(query)  # a malformed query fails before a connection is held

        async def find(conn: Connection) -> list[ActorSummary]:
            rows = await conn.fetch(select.sql, *select.params)
            if not rows:
                return []
            lookup = _pg_query.attributes_of(query.entity, [row[0] for row in rows])
            attributes = await conn.fetch(lookup.sql, *lookup.params)
            return _pg_query.summaries(query, rows, attributes)

        return await self._run(find, isolation="repeatable_read")

    async def count(self, query: Query) -> int:
        """See :meth:`persistence.Store.count`."""
        select = _pg_query.count(query)
        value = await self._run(lambda conn: conn.fetchval(select.sql, *select.params))
        return int(value or 0)

    async def purge_expired(self, *, now: float, limit: int) -> int:
        """See :meth:`persistence.Store.purge_expired`."""
        return await self._write(lambda conn: _purge_expired(conn, self._schema, now, limit))

    async def close(self) -> None:
        """See :meth:`persistence.Store.close`."""
        if self._closed:
            return
        self._closed = True
        listening, self._listening = self._listening, None
        if listening is not None:
            with contextlib.suppress(Exception):
                await listening.close(timeout=_CLOSE_TIMEOUT)
        try:
            await self._pool.close()  # waits for connections in use to be released
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            self._pool.terminate()


# Operations: coroutine functions of one connection, run inside the caller's transaction.


async def _schema_version(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def _check_current(conn: Connection, schema: str | None) -> None:
    """Raise unless the tables are there, at the newest schema version."""
    where = f"schema {schema!r}" if schema else "the search path's schema"
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        raise StoreUnavailable(f"no keyed-actors tables in {where} of this database")
    current = await _schema_version(conn)
    pending = _migrate.pending("postgres", current=current)
    if pending:
        raise StoreUnavailable(
            f"the tables in {where} are at schema version {current}, not"
            f" {pending[-1].version}: open them with the application first, which migrates them"
        )


async def _setup(conn: Connection, schema: str | None, schema_version: int | None) -> None:
    """Create the schema if missing and apply the pending migrations, one node at a time."""
    async with conn.transaction():
        # Nodes opening one schema at once: the first migrates, the others then find it done.
        key = lock_key(schema or "", ActorId(entity="", key="schema migrations"))
        await conn.execute("SELECT pg_advisory_xact_lock($1::int4, $2::int4)", LOCK_NAMESPACE, key)
        if schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')  # validated name
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await _schema_version(conn)
        for migration in _migrate.pending("postgres", current=current, target=schema_version):
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_version (version) VALUES ($1)", migration.version
            )


async def _lock(conn: Connection, schema: str, actors: Iterable[ActorId]) -> None:
    """Take the advisory locks of ``actors`` until the transaction ends, in one sorted order."""
    keys = sorted({lock_key(schema, actor) for actor in actors})
    if keys:
        await conn.execute(_LOCK, LOCK_NAMESPACE, keys)


async def _try_lock(conn: Connection, schema: str, actors: set[ActorId]) -> set[ActorId]:
    """Those of ``actors`` whose advisory locks are free, now locked (never waits)."""
    by_key: dict[int, list[ActorId]] = {}
    for actor in actors:
        by_key.setdefault(lock_key(schema, actor), []).append(actor)
    rows = await conn.fetch(_TRY_LOCK, LOCK_NAMESPACE, sorted(by_key))
    return {actor for row in rows for actor in by_key[row[0]]}


async def _write(
    conn: Connection,
    schema: str,
    items: Sequence[WriteItem],
    now: float,
    member: Member | None = None,
) -> list[WriteOutcome]:
    # Items whose actors only the database knows: read them, lock, then read them again.
    due = await _due_timers(conn, items, now)
    dead = await _dead_for(conn, items)
    buried = await _bury_candidates(conn, items)
    actors = {
        *touched(items),
        *(timer.actor for timer in due),
        *(ActorId(entity=d.message.entity, key=d.message.key) for d in dead.values()),
        *buried.values(),
    }
    await _lock(conn, schema, actors)
    if due:
        # Read again: another node may have fired some meanwhile, and then the next ones are
        # this batch's. Their actors not locked yet are only tried (a wait here, out of the
        # sorted order, could deadlock); a timer whose actor is busy waits for the next call.
        due = await _due_timers(conn, items, now)
        extra = {timer.actor for timer in due} - actors
        if extra:
            actors |= await _try_lock(conn, schema, extra)
            due = [timer for timer in due if timer.actor in actors]
    if dead:
        kept = await _still(conn, "dead_letters", list(dead))
        dead = {key: value for key, value in dead.items() if key in kept}
    unhandled: set[int] = set()
    if buried:
        unhandled = await _still(conn, "messages", list(buried), " AND NOT done")
    rows, leases = await _rows(conn, actors)
    retried = [d.message for d in dead.values()]
    keys = {
        *idempotency_keys(items),
        *(
            (ActorId(entity=m.entity, key=m.key), m.idempotency_key)
            for m in retried
            if m.idempotency_key is not None
        ),
    }
    handled = await _handled(conn, keys)
    # Ids are taken after the locks: a later batch of one of these actors gets larger ones.
    # Multi-node: with them, the session's liveness, an epoch for each actor it may claim,
    # and the channels of the sessions its replies go to.
    session = None if member is None else member.session
    claimable = (
        0
        if session is None
        else sum(1 for actor in actors if actor not in leases or leases[actor].session != session)
    )
    targets = sorted({r.session for i in items if isinstance(i, TurnCommit) for r in i.replies})
    max_purged, ids, live, epochs, sessions, channels = await conn.fetchrow(
        _META_AND_IDS, _most_messages(items, len(due)), session, claimable, targets
    )
    ownership = None
    if member is not None:
        ownership = _pg_cluster.ownership(
            member, leases, bool(live), epochs, dict(zip(sessions, channels, strict=True))
        )
    batch = Batch(
        rows, handled, iter(sorted(ids)), int(max_purged), due, dead, unhandled, ownership
    )
    outcomes = decide(batch, items, now)
    await _apply(conn, batch)
    if ownership is not None:
        await _pg_cluster.apply_ownership(conn, ownership)
    return outcomes


def _most_messages(items: Sequence[WriteItem], due: int) -> int:
    """The most messages ``items`` may store (each due timer fires at most once)."""
    most = due
    for item in items:
        if isinstance(item, TurnCommit):
            most += len(item.outgoing) + 2  # a successor and a readmission
        elif not isinstance(item, FireTimers | BuryMessage):
            most += 1
    return most


async def _still(conn: Connection, table: str, ids: list[int], where: str = "") -> set[int]:
    """Which of ``ids`` are still rows of ``table`` (a fixed name) matching ``where``."""
    rows = await conn.fetch(f"SELECT id FROM {table} WHERE id = ANY($1::bigint[]){where}", ids)
    return {row[0] for row in rows}


async def _due_timers(conn: Connection, items: Sequence[WriteItem], now: float) -> list[DueTimer]:
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
    rows = await conn.fetch(_DUE_TIMERS, now, _entities(entities), limit)
    return [
        DueTimer(
            tid, ActorId(entity=unescape(entity), key=unescape(key)), unescape(name), gen, h, p
        )
        for tid, entity, key, name, gen, h, p in rows
    ]


async def _dead_for(conn: Connection, items: Sequence[WriteItem]) -> dict[int, DeadLetterRecord]:
    """The dead letters that ``items`` retry."""
    wanted = [item.dead_letter for item in items if isinstance(item, RetryDeadLetter)]
    if not wanted:
        return {}
    rows = await conn.fetch(
        f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ANY($1::bigint[])", wanted
    )
    return {row[0]: _dead_letter(row) for row in rows}


async def _bury_candidates(conn: Connection, items: Sequence[WriteItem]) -> dict[int, ActorId]:
    """The actors of the stored, unhandled messages that ``items`` bury."""
    wanted = [item.message for item in items if isinstance(item, BuryMessage)]
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT id, entity, key FROM messages WHERE id = ANY($1::bigint[]) AND NOT done", wanted
    )
    return {mid: ActorId(entity=unescape(entity), key=unescape(key)) for mid, entity, key in rows}


async def _rows(
    conn: Connection, actors: set[ActorId]
) -> tuple[dict[ActorId, Row], dict[ActorId, Lease]]:
    """The rows and the leases of ``actors`` (those that have one)."""
    rows: dict[ActorId, Row] = {}
    leases: dict[ActorId, Lease] = {}
    if not actors:
        return rows, leases
    entities = [escape(actor.entity) for actor in actors]
    keys = [escape(actor.key) for actor in actors]
    for record in await conn.fetch(_ROWS, entities, keys):
        entity, key, gen, status, ret, result, error, done, exp = record[:9]
        actor = ActorId(entity=unescape(entity), key=unescape(key))
        if gen is not None:
            rows[actor] = Row(gen, Status(status), ret, result, error, done, exp)
        if record[9] is not None:
            leases[actor] = Lease(*record[9:])
    return rows, leases


async def _handled(
    conn: Connection, keys: set[tuple[ActorId, str]]
) -> dict[tuple[ActorId, str], Handled]:
    if not keys:
        return {}
    columns: tuple[list[str], list[str], list[str]] = ([], [], [])
    for actor, idem in keys:
        columns[0].append(escape(actor.entity))
        columns[1].append(escape(actor.key))
        columns[2].append(escape(idem))
    found: dict[tuple[ActorId, str], Handled] = {}
    for row in await conn.fetch(_HANDLED, *columns):
        record = _message(row)
        done, reply, error, expires = row[12:]
        stored = StoredReply(reply=reply, error=error) if done else None
        actor = ActorId(entity=record.entity, key=record.key)
        found[(actor, str(record.idempotency_key))] = Handled(record, stored, expires)
    return found


async def _drop_owned(
    conn: Connection, actors: Sequence[Sequence[str]], *, keep_duplicates: bool = False
) -> None:
    """Delete the messages, attributes and timers of these stored (entity, key) pairs.

    With ``keep_duplicates``, unhandled duplicates stay: they are accepted starts that the
    runtime re-admits to the next generation, so they must survive a crash meanwhile.
    """
    keep = f" AND (kind != '{_DUPLICATE}' OR done)" if keep_duplicates else ""
    await conn.executemany(f"DELETE FROM messages WHERE entity = $1 AND key = $2{keep}", actors)
    await conn.executemany("DELETE FROM attributes WHERE entity = $1 AND key = $2", actors)
    await conn.executemany("DELETE FROM timers WHERE entity = $1 AND key = $2", actors)


async def _apply(conn: Connection, batch: Batch) -> None:
    """Run the statements ``batch`` collected, in the order the SQLite backend runs them."""
    run = conn.executemany
    if batch.buried:
        # Before anything else: a generation this batch replaces takes its messages along.
        await run(_BURY, [_escaped(row, 1) for row in batch.buried])
        await run("DELETE FROM messages WHERE id = $1", [(mid,) for *_, mid in batch.buried])
    if batch.retried:
        await run("DELETE FROM dead_letters WHERE id = $1", [(d,) for d in batch.retried])
    if batch.reset_actors:
        pairs = [_escaped(pair, 0, 1) for pair in batch.reset_actors]
        await _drop_owned(conn, pairs, keep_duplicates=True)
    if batch.timer_clears:
        pairs = [_escaped(pair, 0, 1) for pair in batch.timer_clears]
        await run("DELETE FROM timers WHERE entity = $1 AND key = $2", pairs)
        await run(f"{_UNHANDLED_TIMER_MESSAGES} AND timer IS NOT NULL", pairs)
    if batch.timer_cancels:
        triples = [_escaped(triple, 0, 1, 2) for triple in batch.timer_cancels]
        await run("DELETE FROM timers WHERE entity = $1 AND key = $2 AND name = $3", triples)
        await run(f"{_UNHANDLED_TIMER_MESSAGES} AND timer = $3", triples)
    if batch.timers_fired:
        await run("DELETE FROM timers WHERE id = $1", batch.timers_fired)
    if batch.upserts:
        await run(_UPSERT_ACTOR, [_escaped(row, 0, 1) for row in batch.upserts])
    if batch.updates:
        await run(_UPDATE_TURN, [_escaped(row, 8, 9) for row in batch.updates.values()])
    if batch.consumed:
        await run("DELETE FROM messages WHERE id = $1", batch.consumed)
    if batch.kept:
        await run(_KEEP_REPLY, batch.kept)
    if batch.inserts:
        await run(_INSERT_MESSAGE, [_escaped(row, 1, 2, 9, 10) for row in batch.inserts])
    if batch.timer_inserts:
        await run(_INSERT_TIMER, [_escaped(row, 0, 1, 2) for row in batch.timer_inserts.values()])
    upserts, removals = batch.attribute_statements(encode_value)
    if upserts:
        await run(_UPSERT_ATTRIBUTE, [_escaped(row, 0, 1, 2) for row in upserts])
    if removals:
        await run(
            "DELETE FROM attributes WHERE entity = $1 AND key = $2 AND name = $3",
            [_escaped(row, 0, 1, 2) for row in removals],
        )


async def _load_actor(conn: Connection, actor: ActorId) -> ActorRecord | None:
    # One statement: the record and its attributes from one snapshot.
    rows = await conn.fetch(
        "SELECT a.generation, a.status, a.state, a.result, a.error, a.retention, a.created_at,"
        " a.updated_at, a.completed_at, a.expires_at, a.recent_turns,"
        " t.name, t.value_type, t.num, t.str"
        " FROM actors AS a LEFT JOIN attributes AS t ON t.entity = a.entity AND t.key = a.key"
        " WHERE a.entity = $1 AND a.key = $2",
        escape(actor.entity),
        escape(actor.key),
    )
    if not rows:
        return None
    attributes: dict[str, AttributeValue] = {
        unescape(row[11]): decode_value(row[12], row[13], row[14])
        for row in rows
        if row[11] is not None
    }
    return actor_record(actor, rows[0], attributes)


async def _purge_expired(conn: Connection, schema: str, now: float, limit: int) -> int:
    limit = max(limit, 0)
    candidates = await conn.fetch(
        "SELECT entity, key FROM actors WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
        now,
        limit,
    )
    replies = await conn.fetch(
        "SELECT id, entity, key FROM messages WHERE expires_at <= $1 LIMIT $2", now, limit
    )
    owners = [(entity, key) for entity, key in candidates]
    owners += [(entity, key) for _, entity, key in replies]
    # Locked like a write batch's actors, then checked again: one may have been re-created.
    await _lock(conn, schema, {ActorId(entity=unescape(e), key=unescape(k)) for e, k in owners})
    expired = []
    if candidates:
        expired = await conn.fetch(
            "DELETE FROM actors WHERE (entity, key) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[])) AND expires_at <= $3"
            " RETURNING entity, key, generation",
            [row[0] for row in candidates],
            [row[1] for row in candidates],
            now,
        )
    if expired:
        await _drop_owned(conn, [(entity, key) for entity, key, _ in expired])
        await conn.execute(
            "UPDATE meta SET value = greatest(value, $1) WHERE name = 'max_purged_generation'",
            max(gen for _, _, gen in expired),
        )
    purged_replies = 0
    if replies:
        status = await conn.execute(
            "DELETE FROM messages WHERE id = ANY($1::bigint[]) AND expires_at <= $2",
            [row[0] for row in replies],
            now,
        )
        purged_replies = int(status.split()[-1])
    return len(expired) + purged_replies
