r"""SQL for registry queries on PostgreSQL, and how strings and attribute values are stored.

A :class:`Query` becomes one SELECT and its parameters. Everything a query carries (entity,
attribute names, values, the cursor, ``now``) is bound as a ``$n`` parameter; only fixed
fragments chosen here are formatted into the SQL text. Each attribute name a query tests is
one join on ``attributes``; only ``MISSING`` needs ``NOT EXISTS``. This module runs nothing:
``PostgresStore`` executes what it builds.

Stored forms (see ``schema/postgres/0001_core.sql``):

- PostgreSQL text cannot hold NUL, so callers' strings are escaped: NUL becomes ``\x01\x01``
  and ``\x01`` becomes ``\x01\x02``. The code words form a prefix code ordered as the
  characters they stand for, so escaped strings compare (collation "C": by code point) and
  share prefixes exactly as the originals do.
- An attribute is (value_type, num, str): numbers, booleans and datetimes exactly in ``num``
  (``numeric``: big ints and floats compare exactly), strings in ``str``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from persistence import _query_terms
from persistence._attributes import from_sql, to_sql
from persistence._query_terms import (
    COMPARE,
    FAMILY,
    SUMMARY_COLUMNS,
    Select,
    check_arity,
    epoch,
    prefix_end,
    time_column,
)
from persistence.records import (
    ActorSummary,
    AttributeValue,
    Condition,
    Op,
    Query,
    SortValue,
)

__all__ = [
    "Select",
    "attributes_of",
    "count",
    "decode_value",
    "encode_value",
    "escape",
    "find",
    "summaries",
    "unescape",
]

_ESCAPED = re.compile("\x01([\x01\x02])")


def escape(text: str) -> str:
    """``text`` as stored: NUL-free, ordered and prefixed as ``text`` is."""
    if "\x00" in text or "\x01" in text:
        return text.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")
    return text


def unescape(text: str) -> str:
    """The string that :func:`escape` stored as ``text``."""
    if "\x01" in text:
        return _ESCAPED.sub(lambda m: "\x00" if m[1] == "\x01" else "\x01", text)
    return text


def encode_value(value: AttributeValue) -> tuple[str, int | Decimal, str]:
    """The stored (value_type, num, str) of an attribute value.

    Raises:
        TypeError: the value is of no attribute value type.
        ValueError: the value is NaN.
    """
    tag, stored = to_sql(value)
    if tag == "str":
        return tag, 0, escape(str(stored))
    if tag == "float":
        return tag, Decimal(stored), ""  # exact: every float is a finite decimal (or ±inf)
    return tag, int(stored), ""


def decode_value(tag: str, num: Decimal | int, text: str) -> AttributeValue:
    """The attribute value stored as (value_type, num, str)."""
    if tag == "str":
        return unescape(text)
    if tag == "float":
        return float(num)
    return from_sql(tag, int(num))


@dataclass(slots=True)
class _Builder:
    """The FROM and WHERE parts of a query; parameters are numbered as they are added."""

    params: list[Any] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    """The alias joined for each attribute name: an actor has at most one value per name."""

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def join(self, name: str) -> str:
        """The alias of the actor's attribute ``name``, joined on first use."""
        alias = self.aliases.get(name)
        if alias is None:
            alias = self.aliases[name] = f"t{len(self.joins)}"
            self.joins.append(
                f" JOIN attributes AS {alias} ON {alias}.entity = a.entity"
                f" AND {alias}.key = a.key AND {alias}.name = {self.param(escape(name))}"
            )
        return alias

    def statement(self, select: str, tail: str = "") -> Select:
        sql = f"SELECT {select} FROM actors AS a{''.join(self.joins)}"
        return Select(f"{sql} WHERE {' AND '.join(self.where)}{tail}", tuple(self.params))


def find(query: Query) -> Select:
    """The SELECT of up to ``query.limit`` matching actors, in the query's order.

    Its rows are the summary columns, then the sort column when ordering by time, or the sort
    attribute's value_type, num and str when ordering by an attribute.

    Raises:
        ValueError: the query names an unknown time field, or a condition's values do not fit
            its operator.
    """
    builder = _filtered(query)
    columns = SUMMARY_COLUMNS
    sort: list[str] = []
    if query.order_attribute:
        alias = builder.join(query.order_by)
        columns += f", {alias}.value_type, {alias}.num, {alias}.str"
        sort = [f"({alias}.value_type = 'str')", f"{alias}.num", f"{alias}.str"]
    elif query.order_by != "key":
        column = time_column(query.order_by)
        columns += f", {column}"
        sort = [column]
        if query.order_by == "completed_at":
            builder.where.append(f"{column} IS NOT NULL")
    sort.append("a.key")
    direction, after = (" DESC", "<") if query.descending else ("", ">")
    if query.after is not None:
        value, key = query.after
        cursor = [*_cursor_values(query, value), escape(key)]
        marks = ", ".join(builder.param(part) for part in cursor)
        builder.where.append(f"({', '.join(sort)}) {after} ({marks})")
    order = ", ".join(f"{part}{direction}" for part in sort)
    limit = builder.param(max(query.limit, 0))
    return builder.statement(columns, f" ORDER BY {order} LIMIT {limit}")


def count(query: Query) -> Select:
    """The SELECT of how many actors match ``query``; its order, cursor and limit aside.

    Raises:
        ValueError: as :func:`find`.
    """
    return _filtered(query).statement("count(*)")


def attributes_of(entity: str, keys: Sequence[str]) -> Select:
    """The SELECT of (key, name, value_type, num, str) for every attribute of these actors.

    ``keys`` are stored (escaped) keys, as :func:`find` returns them.
    """
    return Select(
        "SELECT key, name, value_type, num, str FROM attributes"
        " WHERE entity = $1 AND key = ANY($2::text[])",
        (escape(entity), list(keys)),
    )


def summaries(
    query: Query, rows: Sequence[Sequence[Any]], attributes: Sequence[Sequence[Any]]
) -> list[ActorSummary]:
    """The summaries of the rows :func:`find` selected, with the attributes read for them."""
    by_key: dict[str, dict[str, AttributeValue]] = {}
    for key, name, tag, num, text in attributes:
        by_key.setdefault(key, {})[unescape(name)] = decode_value(tag, num, text)
    return _query_terms.summaries(
        query,
        rows,
        by_key,
        key=unescape,
        attribute_sort=lambda row: decode_value(row[6], row[7], row[8]),
    )


def _filtered(query: Query) -> _Builder:
    """Every condition of ``query``, the live filter first."""
    builder = _Builder()
    builder.where.append(f"a.entity = {builder.param(escape(query.entity))}")
    builder.where.append(f"(a.expires_at IS NULL OR a.expires_at > {builder.param(query.now)})")
    for condition in query.attributes:
        check_arity(condition)
        if condition.op is Op.MISSING:
            name = builder.param(escape(condition.field))
            builder.where.append(
                "NOT EXISTS (SELECT 1 FROM attributes AS m WHERE m.entity = a.entity"
                f" AND m.key = a.key AND m.name = {name})"
            )
            continue
        alias = builder.join(condition.field)
        if condition.op is not Op.EXISTS:
            _attribute_term(builder, alias, condition)
    for condition in query.times:
        check_arity(condition)
        _time_term(builder, time_column(condition.field), condition)
    if query.statuses:
        statuses = sorted(status.value for status in query.statuses)
        builder.where.append(f"a.status = ANY({builder.param(statuses)}::text[])")
    if query.generation is not None:
        builder.where.append(f"a.generation = {builder.param(query.generation)}")
    return builder


def _family_term(builder: _Builder, alias: str, family: tuple[str, ...]) -> str:
    return f"{alias}.value_type = ANY({builder.param(list(family))}::text[])"


def _attribute_term(builder: _Builder, alias: str, condition: Condition) -> None:
    if condition.op is Op.IN:
        # Grouped by family: a value matches only stored values of its own kind.
        groups: dict[tuple[str, ...], list[Any]] = {}
        for item in condition.values:
            tag, num, text = encode_value(item)
            groups.setdefault(FAMILY[tag], []).append(text if tag == "str" else num)
        parts: list[str] = []
        for family, values in groups.items():
            column, array = ("str", "text[]") if family == FAMILY["str"] else ("num", "numeric[]")
            parts.append(
                f"({_family_term(builder, alias, family)}"
                f" AND {alias}.{column} = ANY({builder.param(values)}::{array}))"
            )
        builder.where.append(parts[0] if len(parts) == 1 else f"({' OR '.join(parts)})")
        return
    encoded = [encode_value(item) for item in condition.values]
    tags = [tag for tag, _, _ in encoded]
    family = FAMILY[tags[0]]
    if any(FAMILY[tag] != family for tag in tags):
        raise ValueError(f"the values of {condition} are not of one kind")
    builder.where.append(_family_term(builder, alias, family))
    is_str = tags[0] == "str"
    column = f"{alias}.str" if is_str else f"{alias}.num"
    operands = [text if is_str else num for _, num, text in encoded]
    if condition.op is Op.PREFIX:
        if not is_str:
            raise ValueError(f"{condition}: a prefix must be a string")
        # A range instead of LIKE: no wildcards, no case folding, and the index seeks to it.
        prefix = condition.values[0]
        assert isinstance(prefix, str)  # a string: its tag is "str"
        builder.where.append(f"{column} >= {builder.param(escape(prefix))}")
        end = prefix_end(prefix)
        if end is not None:
            builder.where.append(f"{column} < {builder.param(escape(end))}")
    elif condition.op is Op.BETWEEN:
        low, high = (builder.param(operand) for operand in operands)
        builder.where.append(f"{column} >= {low} AND {column} <= {high}")
    else:
        builder.where.append(f"{column} {COMPARE[condition.op]} {builder.param(operands[0])}")


def _time_term(builder: _Builder, column: str, condition: Condition) -> None:
    match condition.op:
        case Op.EXISTS:
            builder.where.append(f"{column} IS NOT NULL")
        case Op.MISSING:
            builder.where.append(f"{column} IS NULL")
        case Op.BETWEEN:
            low, high = (builder.param(epoch(value)) for value in condition.values)
            builder.where.append(f"{column} BETWEEN {low} AND {high}")
        case Op.IN:
            times = [epoch(value) for value in condition.values]
            builder.where.append(f"{column} = ANY({builder.param(times)}::float8[])")
        case Op.PREFIX:
            raise ValueError(f"{condition}: a time has no prefix")
        case _:
            value = builder.param(epoch(condition.values[0]))
            builder.where.append(f"{column} {COMPARE[condition.op]} {value}")


def _cursor_values(query: Query, value: SortValue) -> list[Any]:
    """The cursor's sort value as the sort columns hold it (none when ordering by key)."""
    if query.order_by == "key" and not query.order_attribute:
        return []
    if value is None:
        raise ValueError(f"a cursor ordering by {query.order_by!r} needs a sort value")
    if query.order_attribute:
        tag, num, text = encode_value(value)
        return [tag == "str", num, text]
    return [epoch(value)]
