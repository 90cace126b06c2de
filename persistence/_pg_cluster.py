"""PostgreSQL's side of :class:`persistence.Leases`: sessions, leases, replies, wake-ups.

Statements here run inside the caller's transaction, after the caller took the advisory locks
of the actors concerned (see ``postgres._lock``): a lease changes hands only under its
actor's lock, so a batch that read it under that lock decides on what holds at its commit.
Liveness is judged by the server's clock (``clock_timestamp()``). Wake-ups are ``NOTIFY``s,
sent with the commit that causes them (payloads: :mod:`persistence._ownership`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from persistence._ownership import Lease, Ownership
from persistence._pg_query import escape, unescape
from persistence.records import ActorId, ReplyRecord

__all__ = ["Member", "apply_ownership", "claim", "ownership"]

Connection = Any  # asyncpg.Connection

_LEASES = """
SELECT l.entity, l.key, l.session, l.epoch,
       coalesce(s.expires_at > clock_timestamp(), false), s.channel
FROM leases AS l LEFT JOIN sessions AS s ON s.session = l.session
WHERE (l.entity, l.key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
_SESSION_AND_EPOCHS = """
SELECT coalesce((SELECT expires_at > clock_timestamp() FROM sessions WHERE session = $1), false),
       ARRAY(SELECT nextval('lease_epochs') FROM generate_series(1, $2))
"""
_UPSERT_LEASE = """
INSERT INTO leases (entity, key, session, epoch) VALUES ($1, $2, $3, $4)
ON CONFLICT (entity, key) DO UPDATE SET session = excluded.session, epoch = excluded.epoch
"""
_INSERT_REPLY = """
INSERT INTO replies (message, session, handler, reply, error, error_kind, adopt, forward)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (message) DO UPDATE SET
    session = excluded.session, handler = excluded.handler, reply = excluded.reply,
    error = excluded.error, error_kind = excluded.error_kind, adopt = excluded.adopt,
    forward = excluded.forward
"""
_NOTIFY = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"
JOIN = """
INSERT INTO sessions (session, node, channel, expires_at)
VALUES (nextval('session_ids'), $1, $2, clock_timestamp() + $3 * interval '1 second')
RETURNING session
"""
FORGET_OLD_SESSIONS = """
WITH old AS (
    DELETE FROM sessions WHERE expires_at < clock_timestamp() - interval '1 hour'
    RETURNING session
)
DELETE FROM replies WHERE session IN (SELECT session FROM old)
"""
RENEW = """
UPDATE sessions SET expires_at = clock_timestamp() + $2 * interval '1 second'
WHERE session = $1 AND expires_at > clock_timestamp()
RETURNING session
"""
LEAVE = """
WITH gone AS (DELETE FROM leases WHERE session = $1),
     ended AS (DELETE FROM sessions WHERE session = $1)
SELECT pg_notify($2, 'o')
"""
ORPHANS = """
SELECT DISTINCT m.entity, m.key FROM messages AS m
LEFT JOIN leases AS l ON l.entity = m.entity AND l.key = m.key
LEFT JOIN sessions AS s ON s.session = l.session
WHERE NOT m.done AND m.entity = ANY($1::text[])
  AND (s.session IS NULL OR s.expires_at <= clock_timestamp())
LIMIT $2
"""
MINE_WITH_MAIL = """
SELECT DISTINCT m.entity, m.key FROM messages AS m
JOIN leases AS l ON l.entity = m.entity AND l.key = m.key
WHERE l.session = $1 AND NOT m.done
LIMIT $2
"""
RELEASE = """
DELETE FROM leases
WHERE entity = $1 AND key = $2 AND session = $3 AND epoch = $4
  AND NOT EXISTS (SELECT 1 FROM messages WHERE entity = $1 AND key = $2 AND NOT done)
"""
KEPT_REPLIES = """
SELECT id, reply, reply_error FROM messages WHERE id = ANY($1::bigint[]) AND done
"""
TAKE_REPLIES = """
DELETE FROM replies WHERE session = ANY($1::bigint[])
RETURNING message, handler, reply, error, error_kind, adopt, forward
"""


@dataclass(slots=True)
class Member:
    """A store's membership: its sessions (the live one last) and where it is woken."""

    node: str
    lease: float
    channel: str
    ended_channel: str
    sessions: list[int]

    @property
    def session(self) -> int:
        return self.sessions[-1]


def channels(schema: str) -> tuple[str, str]:
    """A new store's own channel, and the channel every store of ``schema`` hears ends on."""
    digest = hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
    return f"ka_{secrets.token_hex(8)}", f"ka_ended_{digest}"


def _pairs(actors: Iterable[ActorId]) -> tuple[list[str], list[str]]:
    entities: list[str] = []
    keys: list[str] = []
    for actor in actors:
        entities.append(escape(actor.entity))
        keys.append(escape(actor.key))
    return entities, keys


def ownership(
    member: Member,
    leases: Mapping[ActorId, Lease],
    live: bool,
    epochs: Sequence[int],
    channels: Mapping[int, str],
) -> Ownership:
    """The lease decisions of a batch ``member`` writes, from what it read under its locks.

    ``epochs`` holds one new epoch for each actor the batch may claim (those whose lease is
    not the session's), and ``channels`` the channel of each session its replies go to.
    """
    return Ownership(
        session=member.session,
        session_live=live,
        channel=member.channel,
        ended_channel=member.ended_channel,
        leases=leases,
        channels=channels,
        epochs=iter(sorted(epochs)),
    )


async def _read_ownership(conn: Connection, member: Member, actors: set[ActorId]) -> Ownership:
    """The leases of the (locked) ``actors``, for a claim by ``member``'s session."""
    leases: dict[ActorId, Lease] = {}
    if actors:
        for entity, key, owner, epoch, live, channel in await conn.fetch(_LEASES, *_pairs(actors)):
            leases[ActorId(entity=unescape(entity), key=unescape(key))] = Lease(
                owner, epoch, live, channel
            )
    claimable = sum(
        1 for actor in actors if actor not in leases or leases[actor].session != member.session
    )
    live, epochs = await conn.fetchrow(_SESSION_AND_EPOCHS, member.session, claimable)
    return ownership(member, leases, bool(live), epochs, {})


async def apply_ownership(conn: Connection, ownership: Ownership) -> None:
    """Store what ``ownership`` decided, and send its wake-ups with the commit."""
    if ownership.claims:
        await conn.executemany(
            _UPSERT_LEASE,
            [
                (escape(actor.entity), escape(actor.key), ownership.session, epoch)
                for actor, epoch in ownership.claims.items()
            ],
        )
    if ownership.replies:
        await conn.executemany(
            _INSERT_REPLY,
            [
                (
                    reply.message,
                    reply.session,
                    reply.handler,
                    reply.reply,
                    reply.error,
                    reply.error_kind,
                    adopt,
                    forward,
                )
                for reply, forward, adopt in ownership.replies
            ],
        )
    if ownership.notices:
        targets = [channel for channel, _ in ownership.notices]
        payloads = [payload for _, payload in ownership.notices]
        await conn.execute(_NOTIFY, targets, payloads)


async def claim(conn: Connection, member: Member, actors: Sequence[ActorId]) -> dict[ActorId, int]:
    """Claim the (locked) ``actors`` that no live session holds: the epochs held now."""
    decided = await _read_ownership(conn, member, set(actors))
    held = {actor: decided.owner(actor) for actor in actors}
    await apply_ownership(conn, decided)
    return {actor: epoch for actor, epoch in held.items() if epoch is not None}


def reply_record(row: Sequence[Any]) -> ReplyRecord:
    message, handler, reply, error, error_kind, adopt, forward = row
    return ReplyRecord(
        message=message,
        handler=handler,
        reply=reply,
        error=error,
        error_kind=error_kind,
        adopt=adopt,
        forward=forward,
    )
