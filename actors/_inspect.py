"""What the command line reads and changes in a store, as plain data, without entity classes.

An operator's tool sees stored bytes, not typed values: payloads, state and results are shown
as the JSON they are stored as, and attribute values in a query take the kind that stored
actors have for that attribute. Everything goes through the storage contract, on a store
opened with ``migrate=False`` (it must exist; nothing is created or migrated), so it is safe
while a runtime has the same store open: reads see committed data only, and the writes (retry
or discard a dead letter, purge expired records) are the store's own atomic operations.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from actors import _recent
from actors._dead_letters import check_retried
from actors._query import Between, In, Operator, compile_query, page_of, with_lookahead
from actors.errors import ActorNotFound, InvalidQuery
from persistence import (
    ActorId,
    ActorSummary,
    AttributeValue,
    Condition,
    DeadLetterRecord,
    MessageRecord,
    Op,
    Query,
    RetryDeadLetter,
    RetryOutcome,
    Status,
    Store,
    TimerRecord,
)

__all__ = ["Inspector", "Untyped"]

Json = Any  # what json.dumps takes


@dataclasses.dataclass(frozen=True, slots=True)
class Untyped:
    """An entity known by name only: its attributes may be of any kind (``_query.Queried``)."""

    name: str
    attribute_types: Mapping[str, str] = dataclasses.field(default_factory=dict)


def when(seconds: float | None) -> str | None:
    """An epoch time as an ISO 8601 UTC string."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def stored_json(data: bytes | None) -> Json:
    """Stored bytes as the JSON value they hold (every payload, state and result is JSON)."""
    if data is None or data == b"":
        return None
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return {"undecodable": data.hex()}


def attribute_json(value: AttributeValue) -> Json:
    return value.isoformat() if isinstance(value, datetime) else value


def summary_json(row: ActorSummary) -> dict[str, Json]:
    return {
        "entity": row.entity,
        "key": row.key,
        "generation": row.generation,
        "status": row.status.value,
        "attributes": {name: attribute_json(v) for name, v in sorted(row.attributes.items())},
        "created_at": when(row.created_at),
        "updated_at": when(row.updated_at),
        "completed_at": when(row.completed_at),
    }


def message_json(record: MessageRecord) -> dict[str, Json]:
    return {
        "id": record.id,
        "kind": record.kind.value,
        "handler": record.handler,
        "generation": record.generation,
        "payload": stored_json(record.payload),
        "created_at": when(record.created_at),
        "attempts": record.attempts,
        "idempotency_key": record.idempotency_key,
        "timer": record.timer,
    }


def timer_json(timer: TimerRecord) -> dict[str, Json]:
    return {
        "name": timer.name,
        "due_at": when(timer.due_at),
        "handler": timer.handler,
        "payload": stored_json(timer.payload),
        "generation": timer.generation,
        "created_at": when(timer.created_at),
    }


def dead_letter_json(dead: DeadLetterRecord) -> dict[str, Json]:
    message = dead.message
    return {
        "id": message.id,
        "actor": f"{message.entity}/{message.key}",
        **message_json(message),
        "error": dead.error,
        "dead_at": when(dead.dead_at),
    }


def turn_json(turn: _recent.TurnNote) -> dict[str, Json]:
    return {
        "message": turn.message,
        "kind": turn.kind,
        "handler": turn.handler,
        "at": when(turn.at),
        "took_ms": round(turn.took * 1000, 3),
        "outcome": turn.outcome,
    }


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What ``ls`` and ``find`` select: the arguments of ``Runtime.find``, untyped."""

    where: Mapping[str, str | Operator] = dataclasses.field(default_factory=dict)
    """Attribute terms, values as typed on the command line (converted by ``Inspector``)."""
    status: Sequence[str] = ()
    created: Operator | None = None
    updated: Operator | None = None
    completed: Operator | None = None
    order_by: str = "key"


class Inspector:
    """Reads and operator actions on one open store."""

    def __init__(self, store: Store, *, now: float | None = None) -> None:
        self._store = store
        self._now = time.time() if now is None else now

    async def entities(self) -> list[str]:
        """The names of the entities that have stored actors."""
        return await self._store.entity_names()

    async def find(
        self, entity: str, filters: Filters, *, limit: int, after: str | None = None
    ) -> tuple[list[dict[str, Json]], str | None]:
        """One page of ``entity``'s live actors matching ``filters``, and the next cursor.

        Raises:
            InvalidQuery: a bad term, order, limit or cursor.
        """
        query, order = await self._query(entity, filters, limit=limit, after=after)
        rows, cursor = page_of(await self._store.find(with_lookahead(query)), order, limit)
        return [summary_json(row) for row in rows], cursor

    async def find_across(
        self, entities: Sequence[str], filters: Filters, *, limit: int
    ) -> tuple[list[dict[str, Json]], bool]:
        """The first ``limit`` matching live actors of several entities, and if more match.

        Merged in the order asked, then by entity. A cursor pages through one entity's
        actors only: to page, name one entity.

        Raises:
            InvalidQuery: a bad term, order or limit.
        """
        if not entities:
            return [], False
        rows: list[ActorSummary] = []
        for entity in entities:
            query, order = await self._query(entity, filters, limit=limit)
            rows.extend(await self._store.find(with_lookahead(query)))
        if order.field == "key":  # by entity, then key
            rows.sort(key=lambda row: (row.entity, row.key), reverse=order.descending)
        else:  # by the value, then (as each entity's rows) by key, then entity
            rows.sort(key=_merge_order, reverse=order.descending)
        return [summary_json(row) for row in rows[:limit]], len(rows) > limit

    async def count(self, entity: str, filters: Filters) -> int:
        query, _ = await self._query(entity, filters, limit=1)
        return await self._store.count(query)

    async def _query(
        self, entity: str, filters: Filters, *, limit: int, after: str | None = None
    ) -> tuple[Query, Any]:
        where = {
            name: await self._typed(entity, name, term) for name, term in filters.where.items()
        }
        return compile_query(
            Untyped(entity),
            now=self._now,
            where=where,
            status=list(filters.status) or None,
            generation=None,
            created=filters.created,
            updated=filters.updated,
            completed=filters.completed,
            order_by=filters.order_by,
            limit=limit,
            after=after,
        )

    async def _typed(self, entity: str, name: str, term: str | Operator) -> Any:
        """``term`` with its text values converted to the kind ``name`` has in the store.

        The command line cannot know an attribute's type, so it asks one stored actor that has
        the attribute; if none has it, the text is read as a number, boolean or timestamp if
        it looks like one (nothing can match anyway).
        """
        sample = await self._store.find(
            Query(
                entity=entity,
                now=self._now,
                attributes=(Condition(field=name, op=Op.EXISTS),),
                limit=1,
            )
        )
        example = sample[0].attributes.get(name) if sample else None
        if isinstance(term, str):
            return typed(term, example, name=name)
        values = tuple(
            typed(v, example, name=name) if isinstance(v, str) else v for v in term._values()
        )
        return _with_values(term, values)

    async def show(self, actor: ActorId) -> dict[str, Json]:
        """Everything stored of one actor.

        Raises:
            ActorNotFound: there is no record of it (never created, or purged).
        """
        record = await self._store.load_actor(actor)
        if record is None:
            raise ActorNotFound(f"no actor {actor.entity}/{actor.key} in this store")
        mailbox = await self._store.load_mailbox(actor)
        timers = await self._store.load_timers(actor)
        expired = record.expires_at is not None and record.expires_at <= self._now
        return {
            "entity": record.entity,
            "key": record.key,
            "generation": record.generation,
            "status": record.status.value,
            "expired": expired,
            "created_at": when(record.created_at),
            "updated_at": when(record.updated_at),
            "completed_at": when(record.completed_at),
            "expires_at": when(record.expires_at),
            "retention_seconds": record.retention,
            "attributes": {
                name: attribute_json(v) for name, v in sorted(record.attributes.items())
            },
            "state": stored_json(record.state),
            "result": stored_json(record.result),
            "error": stored_json(record.error),
            "mailbox": [message_json(m) for m in mailbox],
            "timers": [timer_json(t) for t in timers],
            "recent_turns": [turn_json(t) for t in _recent.decode(record.recent_turns)],
        }

    async def dead_letters(
        self, *, entity: str | None, after: int | None, limit: int
    ) -> list[dict[str, Json]]:
        rows = await self._store.dead_letters(
            entities=None if entity is None else {entity}, after=after, limit=limit
        )
        return [dead_letter_json(row) for row in rows]

    async def discard_dead_letter(self, dead_letter: int) -> bool:
        return await self._store.discard_dead_letter(dead_letter)

    async def retry_dead_letter(self, dead_letter: int) -> dict[str, Json] | None:
        """Put a dead letter back at the end of its actor's mailbox: the stored message.

        ``None`` if there is no such dead letter. On SQLite the store must be opened with
        ``exclusive=True``: a runtime keeps its mailboxes in memory and would not see it.

        Raises:
            ActorNotFound: its actor no longer exists (the dead letter is kept).
            IdempotencyConflict: another message holds its idempotency key (kept).
        """
        [outcome] = await self._store.write(
            [RetryDeadLetter(dead_letter=dead_letter)], now=time.time()
        )
        assert isinstance(outcome, RetryOutcome)
        check_retried(dead_letter, outcome)
        return None if outcome.message is None else message_json(outcome.message)

    async def purge_expired(self, *, batch: int = 500) -> int:
        """Delete every record whose retention is over; how many went."""
        total = 0
        while True:
            purged = await self._store.purge_expired(now=time.time(), limit=batch)
            total += purged
            if purged < batch:
                return total

    async def statistics(self) -> list[dict[str, Json]]:
        rows = await self._store.statistics(now=self._now)
        return [
            {
                "entity": row.entity,
                "actors": {status.value: row.actors.get(status, 0) for status in Status},
                "expired": row.expired,
                "messages": row.messages,
                "oldest_message_at": when(row.oldest_message_at),
                "kept_replies": row.kept_replies,
                "timers": row.timers,
                "next_timer_at": when(row.next_timer_at),
                "dead_letters": row.dead_letters,
            }
            for row in rows
        ]


def _rank(value: Any) -> tuple[int, Any]:
    """A sort key for sort values of any kind (entities may hold different kinds)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, datetime):
        return (3, value.timestamp())
    return (4, value)


def _merge_order(row: ActorSummary) -> tuple[Any, ...]:
    return (_rank(row.sort_value), row.key, row.entity)


def typed(text: str, example: AttributeValue | None, *, name: str) -> AttributeValue:
    """``text`` as a value of ``example``'s kind (or a guess from the text without one).

    Raises:
        InvalidQuery: the text is not a value of that kind.
    """
    if example is None:
        return guess(text)
    try:
        if isinstance(example, bool):
            return {"true": True, "false": False}[text.lower()]
        if isinstance(example, int | float):
            number = float(text)
            return int(text) if number.is_integer() and text.lstrip("+-").isdigit() else number
        if isinstance(example, datetime):
            return timestamp(text)
    except (KeyError, ValueError):
        kind = "number" if isinstance(example, int | float) else type(example).__name__
        raise InvalidQuery(f"attribute {name!r} holds {kind} values, got {text!r}") from None
    return text


def guess(text: str) -> AttributeValue:
    """A number, boolean or timestamp if ``text`` reads as one, else the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float, timestamp):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def timestamp(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC.

    Raises:
        ValueError: it is not one.
    """
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _with_values(term: Operator, values: tuple[Any, ...]) -> Operator:
    """An operator like ``term`` on ``values``."""
    if isinstance(term, Between):
        return Between(values[0], values[1])
    if isinstance(term, In):
        return In(values)
    if not values:
        return term
    return type(term)(values[0])  # type: ignore[call-arg]
