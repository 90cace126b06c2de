"""How attribute values are stored: a type tag beside a SQL-friendly value.

SQL engines' own typing loses ``bool`` (stored as integer) and ``datetime`` (stored as integer
microseconds since the Unix epoch, exact for every year from 1 to 9999, which keeps range
queries numeric); the tag brings the Python type back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from persistence.records import AttributeValue

SqlValue = str | int | float

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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
        return "datetime", (value - _EPOCH) // _MICROSECOND
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
            return _EPOCH + int(value) * _MICROSECOND
    raise ValueError(f"unknown attribute value type tag {value_type!r}")
