"""How attribute values are stored: a type tag beside a SQL-friendly value.

SQL engines' own typing loses ``bool`` (stored as integer) and ``datetime`` (stored as UTC epoch
seconds, which keeps range queries numeric); the tag brings the Python type back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from persistence.records import AttributeValue

SqlValue = str | int | float


def to_sql(value: AttributeValue) -> tuple[str, SqlValue]:
    """The (type tag, stored value) pair for ``value``."""
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "bool", int(value)
    if isinstance(value, int):
        return "int", value
    if isinstance(value, float):
        if value != value:
            # SQL engines store NaN as NULL, which would make the actor unreadable.
            raise ValueError("an attribute value must not be NaN")
        return "float", value
    if isinstance(value, str):
        return "str", value
    if isinstance(value, datetime):
        return "datetime", value.timestamp()
    raise TypeError(f"unsupported attribute value type {type(value).__name__}")


def from_sql(value_type: str, value: SqlValue) -> AttributeValue:
    """The Python value stored as ``(value_type, value)``."""
    match value_type:
        case "bool":
            return bool(value)
        case "int":
            return int(value)
        case "float":
            return float(value)
        case "str":
            return str(value)
        case "datetime":
            return datetime.fromtimestamp(float(value), UTC)
    raise ValueError(f"unknown attribute value type tag {value_type!r}")
