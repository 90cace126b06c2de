"""SQL for registry queries on SQLite: a :class:`Query` becomes one SELECT and its parameters.

Everything a query carries (entity, attribute names, values, the cursor, ``now``) is bound as
a parameter; only fixed fragments chosen here are formatted into the SQL text. Each attribute
name a query tests is one join on ``attributes`` (not a correlated subquery), so the planner
may drive from the most selective index; only ``MISSING`` needs ``NOT EXISTS``. This module
runs nothing: ``SQLiteStore`` executes what it builds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from persistence import _query_terms
from persistence._attributes import SqlValue, from_sql, to_sql
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

__all__ = ["Select", "attributes_of", "count", "find", "summaries"]

_KEY_CHUNK = 500  # keys per attribute lookup: well below SQLite's parameter limit


@dataclass(slots=True)
class _Builder:
    """The FROM and WHERE parts of a query, with their parameters kept in text order."""

    joins: list[str] = field(default_factory=list)
    join_params: list[Any] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    where_params: list[Any] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    """The alias joined for each attribute name: an actor has at most one value per name,
    so every term on one name tests one join."""
    equal: str | None = None
    """The alias of the first attribute tested for equality, if any."""

    def join(self, name: str) -> str:
        """The alias of the actor's attribute ``name``, joined on first use."""
        alias = self.aliases.get(name)
        if alias is None:
            alias = self.aliases[name] = f"t{len(self.joins)}"
            self.joins.append(
                f" JOIN attributes AS {alias} ON {alias}.entity = a.entity"
                f" AND {alias}.key = a.key AND {alias}.name = ?"
            )
            self.join_params.append(name)
        return alias

    def term(self, sql: str, *params: Any) -> None:
        self.where.append(sql)
        self.where_params.extend(params)

    def statement(self, select: str, tail: str = "", tail_params: Sequence[Any] = ()) -> Select:
        sql = f"SELECT {select} FROM actors AS a{''.join(self.joins)}"
        sql += f" WHERE {' AND '.join(self.where)}{tail}"
        return Select(sql, (*self.join_params, *self.where_params, *tail_params))


def find(query: Query) -> Select:
    """The SELECT of up to ``query.limit`` matching actors, in the query's order.

    Its rows are the summary columns, then the sort column when ordering by time, or the sort
    attribute's type tag and value when ordering by an attribute.

    Raises:
        ValueError: the query names an unknown time field, or a condition's values do not fit
            its operator.
    """
    builder = _filtered(query)
    columns = SUMMARY_COLUMNS
    if query.order_attribute:
        # The sort attribute's own terms narrow the index range that is read in order.
        alias = builder.join(query.order_by)
        columns += f", {alias}.value_type, {alias}.value"
        sort, tie = f"{alias}.value", f"{alias}.key"
    elif query.order_by == "key":
        # The entries of attributes_lookup for one value are in key order: naming that
        # join's key (equal to a.key) lets the planner read them without a sort.
        sort, tie = "", f"{builder.equal or 'a'}.key"
    else:
        sort, tie = time_column(query.order_by), "a.key"
        columns += f", {sort}"
        if query.order_by == "completed_at":
            builder.term(f"{sort} IS NOT NULL")  # matches the partial index's condition
    direction, after = (" DESC", "<") if query.descending else ("", ">")
    if query.after is not None:
        value, key = query.after
        if not sort:
            builder.term(f"{tie} {after} ?", key)
        else:
            builder.term(f"({sort}, {tie}) {after} (?, ?)", _cursor_value(query, value), key)
    order = f"{sort}{direction}, {tie}{direction}" if sort else f"{tie}{direction}"
    return builder.statement(columns, f" ORDER BY {order} LIMIT ?", (max(query.limit, 0),))


def count(query: Query) -> Select:
    """The SELECT of how many actors match ``query``; its order, cursor and limit aside.

    Raises:
        ValueError: as :func:`find`.
    """
    return _filtered(query).statement("count(*)")


def attributes_of(entity: str, keys: Sequence[str]) -> Iterator[Select]:
    """SELECTs of (key, name, type tag, value) for every attribute of these actors."""
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        marks = ", ".join("?" * len(chunk))
        yield Select(
            "SELECT key, name, value_type, value FROM attributes"
            f" WHERE entity = ? AND key IN ({marks})",
            (entity, *chunk),
        )


def summaries(
    query: Query, rows: Sequence[Sequence[Any]], attributes: Sequence[Sequence[Any]]
) -> list[ActorSummary]:
    """The summaries of the rows :func:`find` selected, with the attributes read for them."""
    by_key: dict[str, dict[str, AttributeValue]] = {}
    for key, name, tag, value in attributes:
        by_key.setdefault(key, {})[name] = from_sql(tag, value)
    return _query_terms.summaries(
        query, rows, by_key, key=str, attribute_sort=lambda row: from_sql(row[6], row[7])
    )


def _filtered(query: Query) -> _Builder:
    """Every condition of ``query``, the live filter first."""
    builder = _Builder()
    # With a cursor on an attribute order, the cursor is where the index scan must start.
    # The range bound on the same side is then written `+value`, which SQLite does not use
    # to seek: otherwise it seeks to the bound and skips every entry up to the cursor, and a
    # page deep into a range costs as much as reading the range up to it.
    resume: str | None = None
    if query.after is not None and query.order_attribute:
        resume = "<" if query.descending else ">"
    builder.term("a.entity = ?", query.entity)
    builder.term("(a.expires_at IS NULL OR a.expires_at > ?)", query.now)
    for condition in query.attributes:
        check_arity(condition)
        if condition.op is Op.MISSING:
            builder.term(
                "NOT EXISTS (SELECT 1 FROM attributes AS m WHERE m.entity = a.entity"
                " AND m.key = a.key AND m.name = ?)",
                condition.field,
            )
            continue
        alias = builder.join(condition.field)
        if condition.op is Op.EQ and builder.equal is None:
            builder.equal = alias
        if condition.op is not Op.EXISTS:
            side = resume if condition.field == query.order_by else None
            _attribute_term(builder, alias, condition, side)
    for condition in query.times:
        check_arity(condition)
        _time_term(builder, time_column(condition.field), condition)
    if query.statuses:
        statuses = sorted(status.value for status in query.statuses)
        builder.term(f"a.status IN ({', '.join('?' * len(statuses))})", *statuses)
    if query.generation is not None:
        builder.term("a.generation = ?", query.generation)
    return builder


def _attribute_term(
    builder: _Builder, alias: str, condition: Condition, resume: str | None = None
) -> None:
    """The condition's SQL; ``resume`` (``>`` or ``<``) marks the side a cursor seeks from."""
    value = f"{alias}.value"
    low = f"+{value}" if resume == ">" else value  # bounds on the cursor's side: no seek
    high = f"+{value}" if resume == "<" else value
    if condition.op is Op.IN:
        # Grouped by family: a value matches only stored values of its own kind.
        groups: dict[tuple[str, ...], list[SqlValue]] = {}
        for item in condition.values:
            tag, stored = to_sql(item)
            groups.setdefault(FAMILY[tag], []).append(stored)
        parts: list[str] = []
        params: list[Any] = []
        for family, stored_values in groups.items():
            parts.append(
                f"({alias}.value_type IN ({', '.join('?' * len(family))})"
                f" AND {value} IN ({', '.join('?' * len(stored_values))}))"
            )
            params.extend((*family, *stored_values))
        builder.term(parts[0] if len(parts) == 1 else f"({' OR '.join(parts)})", *params)
        return
    tags, operands = zip(*(to_sql(item) for item in condition.values), strict=True)
    family = FAMILY[tags[0]]
    if any(FAMILY[tag] != family for tag in tags):
        raise ValueError(f"the values of {condition} are not of one kind")
    builder.term(f"{alias}.value_type IN ({', '.join('?' * len(family))})", *family)
    if condition.op is Op.PREFIX:
        if tags[0] != "str":
            raise ValueError(f"{condition}: a prefix must be a string")
        prefix = str(operands[0])
        # A range on the index instead of LIKE/GLOB: no escaping, no case folding, and
        # the index seeks to the prefix. TEXT compares as UTF-8 bytes: code point order.
        builder.term(f"{low} >= ?", prefix)
        end = prefix_end(prefix)
        if end is not None:
            builder.term(f"{high} < ?", end)
    elif condition.op is Op.BETWEEN:
        builder.term(f"{low} >= ? AND {high} <= ?", *operands)
    else:
        side = (
            low if condition.op in (Op.GT, Op.GE) else high if condition.op is not Op.EQ else value
        )
        builder.term(f"{side} {COMPARE[condition.op]} ?", operands[0])


def _time_term(builder: _Builder, column: str, condition: Condition) -> None:
    match condition.op:
        case Op.EXISTS:
            builder.term(f"{column} IS NOT NULL")
        case Op.MISSING:
            builder.term(f"{column} IS NULL")
        case Op.BETWEEN:
            low, high = (epoch(value) for value in condition.values)
            builder.term(f"{column} BETWEEN ? AND ?", low, high)
        case Op.IN:
            times = [epoch(value) for value in condition.values]
            builder.term(f"{column} IN ({', '.join('?' * len(times))})", *times)
        case Op.PREFIX:
            raise ValueError(f"{condition}: a time has no prefix")
        case _:
            builder.term(f"{column} {COMPARE[condition.op]} ?", epoch(condition.values[0]))


def _cursor_value(query: Query, value: SortValue) -> SqlValue:
    """The stored form of the cursor's sort value, compared as the sort column is stored."""
    if value is None:
        raise ValueError(f"a cursor ordering by {query.order_by!r} needs a sort value")
    if query.order_attribute:
        return to_sql(value)[1]
    return epoch(value)
