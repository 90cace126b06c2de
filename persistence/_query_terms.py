"""Registry query pieces that do not depend on the SQL dialect, shared by both backends."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from persistence.records import (
    ActorSummary,
    AttributeValue,
    Condition,
    Op,
    Query,
    SortValue,
    Status,
)

# The stored type tags a condition value of each tag may match (its family).
FAMILY: dict[str, tuple[str, ...]] = {
    "int": ("int", "float"),
    "float": ("int", "float"),
    "bool": ("bool",),
    "str": ("str",),
    "datetime": ("datetime",),
}
TIME_COLUMNS = {
    "created_at": "a.created_at",
    "updated_at": "a.updated_at",
    "completed_at": "a.completed_at",
}
COMPARE = {Op.EQ: "=", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}
_ARITY = {Op.BETWEEN: 2, Op.EXISTS: 0, Op.MISSING: 0} | dict.fromkeys((*COMPARE, Op.PREFIX), 1)
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)  # not encodable as UTF-8: never in a stored string
SUMMARY_COLUMNS = "a.key, a.generation, a.status, a.created_at, a.updated_at, a.completed_at"


@dataclass(frozen=True, slots=True)
class Select:
    """One statement to run: its SQL text and its parameters, in order."""

    sql: str
    params: tuple[Any, ...]


def check_arity(condition: Condition) -> None:
    given = len(condition.values)
    expected = _ARITY.get(condition.op)
    if (expected is None and given < 1) or (expected is not None and given != expected):
        raise ValueError(f"{condition}: wrong number of values for {condition.op.name}")


def time_column(name: str) -> str:
    """The column of a time field: a fixed fragment, never the caller's text."""
    try:
        return TIME_COLUMNS[name]
    except KeyError:
        raise ValueError(
            f"unknown time field {name!r} (expected one of {', '.join(TIME_COLUMNS)})"
        ) from None


def epoch(value: AttributeValue) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"a time is epoch seconds, got {value!r}")


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix``; ``None`` if none is.

    The last code point that can grow grows by one (skipping surrogates); code points at the
    maximum after it are dropped. A prefix of maximal code points only has no upper bound.
    """
    for index in range(len(prefix) - 1, -1, -1):
        point = ord(prefix[index])
        if point < _MAX_CODE_POINT:
            point += 1
            if point in _SURROGATES:
                point = _SURROGATES.stop
            return prefix[:index] + chr(point)
    return None


def summaries(
    query: Query,
    rows: Sequence[Sequence[Any]],
    attributes: Mapping[str, Mapping[str, AttributeValue]],
    *,
    key: Callable[[str], str],
    attribute_sort: Callable[[Sequence[Any]], AttributeValue],
) -> list[ActorSummary]:
    """The summaries of the rows a find selected, with their decoded ``attributes``.

    A row holds key, generation, status, three times, then the sort value's columns;
    ``attributes`` go by stored key. ``key`` turns a stored key into the key;
    ``attribute_sort`` reads an attribute sort value from a row.
    """
    found: list[ActorSummary] = []
    for row in rows:
        stored_key, generation, status, created, updated, completed = row[:6]
        sort_value: SortValue
        if query.order_attribute:
            sort_value = attribute_sort(row)
        elif query.order_by == "key":
            sort_value = key(stored_key)
        else:
            sort_value = float(row[6])
        found.append(
            ActorSummary(
                entity=query.entity,
                key=key(stored_key),
                generation=generation,
                status=Status(status),
                attributes=attributes.get(stored_key, {}),
                created_at=created,
                updated_at=updated,
                completed_at=completed,
                sort_value=sort_value,
            )
        )
    return found
