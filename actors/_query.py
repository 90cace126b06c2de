"""Registry queries: the operators of ``where=``, their checks, and the store query they make.

``Runtime.find`` / ``find_all`` / ``count`` take plain values (equality) and the operators
below, check every term before anything reaches the store (a bad query is an
:class:`~actors.errors.InvalidQuery` that says what was wrong), and compile them into a
:class:`persistence.Query`. Values travel to the store as values; the store binds them as
parameters.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

import msgspec

from actors._entity import Entity, EntitySpec
from actors._registry import MAX_STRING, check_attribute_name, family, in_range, is_text
from actors.errors import InvalidQuery
from persistence import (
    ActorSummary,
    AttributeValue,
    Condition,
    Op,
    Query,
    SortValue,
    Status,
)

if TYPE_CHECKING:
    from actors._refs import ActorRef

__all__ = [
    "ActorInfo",
    "Between",
    "Exists",
    "Ge",
    "Gt",
    "In",
    "Le",
    "Lt",
    "Missing",
    "Operator",
    "Page",
    "Prefix",
]

E = TypeVar("E", bound=Entity)

MAX_TERMS = 16
MAX_LIMIT = 1000
MAX_IN = 500
TIME_FIELDS = ("created_at", "updated_at", "completed_at")
_CURSOR_VERSION = 1


class Operator:
    """Base of the ``where=`` operators; an attribute compared to a plain value means equality."""

    __slots__ = ()
    _op: Op

    def _values(self) -> tuple[Any, ...]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Compare(Operator):
    value: AttributeValue

    def _values(self) -> tuple[Any, ...]:
        return (self.value,)


@final
class Gt(_Compare):
    """The attribute is greater than ``value`` (a number, string or datetime)."""

    __slots__ = ()
    _op = Op.GT


@final
class Ge(_Compare):
    """The attribute is greater than or equal to ``value``."""

    __slots__ = ()
    _op = Op.GE


@final
class Lt(_Compare):
    """The attribute is less than ``value``."""

    __slots__ = ()
    _op = Op.LT


@final
class Le(_Compare):
    """The attribute is less than or equal to ``value``."""

    __slots__ = ()
    _op = Op.LE


@final
@dataclass(frozen=True, slots=True)
class Between(Operator):
    """The attribute lies between ``low`` and ``high``, both included."""

    low: AttributeValue
    high: AttributeValue
    _op = Op.BETWEEN

    def _values(self) -> tuple[Any, ...]:
        return (self.low, self.high)


@final
@dataclass(frozen=True, slots=True, init=False)
class In(Operator):
    """The attribute equals one of ``values`` (all of one kind; at most 500)."""

    values: tuple[AttributeValue, ...]
    _op = Op.IN

    def __init__(self, values: Iterable[AttributeValue]) -> None:
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise InvalidQuery(f"In takes a collection of values, got {values!r}")
        object.__setattr__(self, "values", tuple(values))

    def _values(self) -> tuple[Any, ...]:
        return self.values


@final
@dataclass(frozen=True, slots=True)
class Prefix(Operator):
    """The attribute is a string that starts with ``prefix``."""

    prefix: str
    _op = Op.PREFIX

    def _values(self) -> tuple[Any, ...]:
        return (self.prefix,)


@final
@dataclass(frozen=True, slots=True)
class Exists(Operator):
    """The actor has the attribute, whatever its value."""

    _op = Op.EXISTS

    def _values(self) -> tuple[Any, ...]:
        return ()


@final
@dataclass(frozen=True, slots=True)
class Missing(Operator):
    """The actor does not have the attribute."""

    _op = Op.MISSING

    def _values(self) -> tuple[Any, ...]:
        return ()


_RANGES = (Op.GT, Op.GE, Op.LT, Op.LE, Op.BETWEEN)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ActorInfo(Generic[E]):
    """One actor found in the registry. Handed out by ``Runtime.find``; never constructed.

    Attributes:
        entity: the entity name.
        key: the actor's key.
        generation: its current generation.
        status: its status.
        attributes: its attributes, as committed.
        created_at, updated_at: when the generation was created and last changed (UTC).
        completed_at: when it ended, or ``None`` while active.
        ref: a reference to this generation.
    """

    entity: str
    key: str
    generation: int
    status: Status
    attributes: Mapping[str, AttributeValue]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    ref: ActorRef[E]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[E]):
    """One page of ``Runtime.find``: its actors, and the cursor of the next page.

    Attributes:
        items: the actors, in the query's order.
        cursor: pass it as ``after=`` to get the next page; ``None`` on the last page.
    """

    items: list[ActorInfo[E]]
    cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    field: str
    attribute: bool
    descending: bool

    @property
    def token(self) -> str:
        return ("-" if self.descending else "") + self.field


def check_limit(limit: object, *, what: str = "limit") -> int:
    """``limit`` if it is a page size: an int from 1 to ``MAX_LIMIT``.

    Raises:
        InvalidQuery: it is not.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"{what} must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


class Queried(Protocol):
    """What a query needs of its entity: an ``EntitySpec``, or the command line's view."""

    @property
    def name(self) -> str: ...

    @property
    def attribute_types(self) -> Mapping[str, str]: ...  # name -> kind; empty: any


def compile_query(
    spec: Queried,
    *,
    now: float,
    where: Mapping[str, Any] | None,
    status: Status | str | Iterable[Status | str] | None,
    generation: int | None,
    created: Operator | None,
    updated: Operator | None,
    completed: Operator | None,
    order_by: str = "key",
    limit: int = 50,
    after: str | None = None,
) -> tuple[Query, Order]:
    """The store query for these arguments, checked.

    Raises:
        InvalidQuery: what is wrong with the query.
    """
    where = {} if where is None else where
    if not isinstance(where, Mapping):
        raise InvalidQuery(f"where must be a mapping of attribute names, got {where!r}")
    if len(where) > MAX_TERMS:
        raise InvalidQuery(f"at most {MAX_TERMS} attribute terms per query, got {len(where)}")
    attributes = tuple(_condition(spec, name, term) for name, term in where.items())
    times = tuple(
        _time_condition(name, term)
        for name, term in (
            ("created_at", created),
            ("updated_at", updated),
            ("completed_at", completed),
        )
        if term is not None
    )
    if generation is not None and (
        isinstance(generation, bool) or not isinstance(generation, int) or generation < 1
    ):
        raise InvalidQuery(f"generation must be a positive int, got {generation!r}")
    check_limit(limit)
    order = _order(spec, order_by)
    query = Query(
        entity=spec.name,
        now=now,
        attributes=attributes,
        times=times,
        statuses=_statuses(status),
        generation=generation,
        order_by=order.field,
        order_attribute=order.attribute,
        descending=order.descending,
        after=None if after is None else _read_cursor(after, order),
        limit=limit,
    )
    return query, order


def _condition(spec: Queried, name: object, term: object) -> Condition:
    try:
        check_attribute_name(name)
    except ValueError as exc:
        raise InvalidQuery(f"where: {exc}") from None
    assert isinstance(name, str)
    declared = spec.attribute_types.get(name) if spec.attribute_types else None
    if spec.attribute_types and declared is None:
        known = ", ".join(sorted(spec.attribute_types))
        raise InvalidQuery(
            f"where[{name!r}]: entity {spec.name!r} has no attribute {name!r} (it has {known})"
        )
    if isinstance(term, Operator):
        op, values = term._op, term._values()
    else:
        op, values = Op.EQ, (term,)
    where = f"where[{name!r}]"
    kinds = {_kind(where, value) for value in values}
    if len(kinds) > 1:
        raise InvalidQuery(
            f"{where}: the values of one term must be of one kind, got {sorted(kinds)}"
        )
    kind = next(iter(kinds), None)
    if declared is not None and kind is not None and kind != declared:
        raise InvalidQuery(
            f"{where}: attribute {name!r} of {spec.name!r} holds {declared} values, got {kind}"
        )
    if op in _RANGES and kind == "bool":
        raise InvalidQuery(f"{where}: {type(term).__name__} does not apply to booleans")
    if op is Op.PREFIX and (kind != "str" or not values[0]):
        raise InvalidQuery(f"{where}: Prefix needs a non-empty string, got {values[0]!r}")
    if op is Op.BETWEEN and values[0] > values[1]:
        raise InvalidQuery(f"{where}: Between({values[0]!r}, {values[1]!r}) is empty (low > high)")
    if op is Op.IN and not 1 <= len(values) <= MAX_IN:
        raise InvalidQuery(f"{where}: In needs 1 to {MAX_IN} values, got {len(values)}")
    return Condition(field=name, op=op, values=values)


def _kind(where: str, value: object) -> str:
    """The kind of a query value, or InvalidQuery if it cannot be compared with attributes."""
    if isinstance(value, Operator):
        raise InvalidQuery(f"{where}: operators do not nest, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidQuery(f"{where}: a number must be finite, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise InvalidQuery(f"{where}: {value} does not fit in 64 bits")
    if isinstance(value, str) and (len(value) > MAX_STRING or not is_text(value)):
        raise InvalidQuery(f"{where}: a string is valid Unicode of at most {MAX_STRING} characters")
    if isinstance(value, datetime) and (value.tzinfo is None or not in_range(value)):
        raise InvalidQuery(
            f"{where}: a datetime must be timezone-aware, in years 1-9999 in UTC; got {value!r}"
        )
    kind = family(value)
    if kind is None:
        raise InvalidQuery(
            f"{where}: {type(value).__name__} is neither an attribute value (str, int, float, "
            "bool, datetime) nor an operator (Gt, Ge, Lt, Le, Between, In, Prefix, Exists, "
            "Missing)"
        )
    return kind


def _time_condition(field: str, term: object) -> Condition:
    where = field.removesuffix("_at")
    if not isinstance(term, Gt | Ge | Lt | Le | Between):
        raise InvalidQuery(f"{where}= takes Gt, Ge, Lt, Le or Between of datetimes, got {term!r}")
    values = term._values()
    for value in values:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidQuery(f"{where}= compares timezone-aware datetimes, got {value!r}")
    if term._op is Op.BETWEEN and values[0] > values[1]:
        raise InvalidQuery(f"{where}=Between({values[0]}, {values[1]}) is empty (low > high)")
    return Condition(field=field, op=term._op, values=tuple(v.timestamp() for v in values))


def _statuses(status: object) -> frozenset[Status]:
    if status is None:
        return frozenset()
    items = [status] if isinstance(status, str | Status) else status
    if not isinstance(items, Iterable):
        raise InvalidQuery(
            f"status must be a Status, a status name or a collection of them, got {status!r}"
        )
    found: set[Status] = set()
    for item in items:
        try:
            found.add(Status(item))
        except ValueError:
            names = ", ".join(s.value for s in Status)
            raise InvalidQuery(f"unknown status {item!r} (statuses: {names})") from None
    return frozenset(found)


def _order(spec: Queried, order_by: object) -> Order:
    if not isinstance(order_by, str) or not order_by:
        raise InvalidQuery(f"order_by must be a field name, got {order_by!r}")
    descending = order_by.startswith("-")
    field = order_by.removeprefix("-")
    if field == "key" or field in TIME_FIELDS:
        return Order(field=field, attribute=False, descending=descending)
    try:
        check_attribute_name(field)
    except ValueError:
        raise InvalidQuery(
            f"order_by {order_by!r}: use key, created_at, updated_at, completed_at or an "
            "attribute name, with '-' in front for descending order"
        ) from None
    if spec.attribute_types and field not in spec.attribute_types:
        raise InvalidQuery(f"order_by {order_by!r}: entity {spec.name!r} has no such attribute")
    return Order(field=field, attribute=True, descending=descending)


def make_cursor(order: Order, row: ActorSummary) -> str:
    """An opaque cursor that resumes ``order`` after ``row``."""
    value = row.sort_value
    tagged: list[Any] = (
        ["datetime", value.isoformat()]
        if isinstance(value, datetime)
        else [family(value) or "none", value]
    )
    raw = msgspec.json.encode([_CURSOR_VERSION, order.token, *tagged, row.key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def with_lookahead(query: Query) -> Query:
    """``query`` for one row more than its page: that row tells whether a next page exists."""
    return msgspec.structs.replace(query, limit=query.limit + 1)


def page_of(
    rows: list[ActorSummary], order: Order, limit: int
) -> tuple[list[ActorSummary], str | None]:
    """The page of ``limit`` rows read by ``with_lookahead``, and the cursor after it (if more)."""
    cursor = make_cursor(order, rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], cursor


def _read_cursor(cursor: object, order: Order) -> tuple[SortValue, str]:
    bad = InvalidQuery(f"after= is not a cursor of this query's order ({order.token}): {cursor!r}")
    if not isinstance(cursor, str) or len(cursor) > 8192:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, token, tag, value, key = msgspec.json.decode(raw)
    except (binascii.Error, msgspec.DecodeError, ValueError, TypeError):
        raise bad from None
    if version != _CURSOR_VERSION or token != order.token or not isinstance(key, str):
        raise bad
    if tag == "datetime" and isinstance(value, str):
        try:
            return datetime.fromisoformat(value), key
        except ValueError:
            raise bad from None
    if tag == "bool" and isinstance(value, bool):
        return value, key
    if tag in ("number", "str", "none"):
        return value, key
    raise bad


def info(rt: Any, spec: EntitySpec, row: ActorSummary) -> ActorInfo[Any]:
    """The public view of a store row."""
    from actors._refs import ActorRef  # refs import the runtime, which imports this

    def when(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    return ActorInfo(
        entity=row.entity,
        key=row.key,
        generation=row.generation,
        status=row.status,
        attributes=dict(row.attributes),
        created_at=when(row.created_at),
        updated_at=when(row.updated_at),
        completed_at=None if row.completed_at is None else when(row.completed_at),
        ref=ActorRef(rt, spec, row.key, row.generation),
    )
