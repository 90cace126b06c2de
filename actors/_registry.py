"""Actor attributes: what may be attached to an actor for the registry to index.

Validation lives here so that ``start(..., attributes=...)`` and ``ctx.set_attributes(...)``
reject the same things with the same messages, before anything is stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from persistence import ActorInit, AttributeValue

MAX_ATTRIBUTES = 64
MAX_NAME = 64
MAX_STRING = 1024
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_attribute_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME:
        raise ValueError(
            f"attribute names are identifiers of at most {MAX_NAME} characters, got {name!r}"
        )
    return name


KINDS = {str: "str", int: "number", float: "number", bool: "bool", datetime: "datetime"}


def in_range(value: datetime) -> bool:
    """Whether the aware ``value`` is an instant of years 1 to 9999 in UTC."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def is_text(value: str) -> bool:
    """Whether ``value`` can be stored as UTF-8 (it holds no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def family(value: object) -> str | None:
    """The kind of an attribute value: number (int or float), str, bool or datetime."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, datetime):
        return "datetime"
    return None


def check_attributes(
    values: Mapping[str, object], types: Mapping[str, str] | None = None
) -> dict[str, AttributeValue]:
    """``values`` as attributes (of the declared ``types`` by kind, if the entity has any).

    Raises:
        ValueError: not a mapping, too many attributes, a malformed name, or a value that is
            not a str (at most 1024 characters), int (64-bit), finite float, bool or
            timezone-aware datetime; with declared types, an undeclared name or a value of
            another kind.
    """
    if not isinstance(values, Mapping):
        raise ValueError(
            f"attributes must be a mapping of names to values, got {type(values).__name__}"
        )
    if len(values) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes per actor, got {len(values)}")
    checked: dict[str, AttributeValue] = {}
    for name, value in values.items():
        check_attribute_name(name)
        if isinstance(value, bool | float | int) and not isinstance(value, bool):
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise ValueError(f"attribute {name!r}: int {value} does not fit in 64 bits")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"attribute {name!r}: float must be finite, got {value}")
        elif isinstance(value, str):
            if not is_text(value):
                raise ValueError(f"attribute {name!r}: a string with a lone surrogate: {value!r}")
            if len(value) > MAX_STRING:
                raise ValueError(f"attribute {name!r}: string over {MAX_STRING} characters")
        elif isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"attribute {name!r}: datetime must be timezone-aware")
            if not in_range(value):
                raise ValueError(f"attribute {name!r}: {value} is outside years 1-9999 in UTC")
        elif not isinstance(value, bool):
            raise ValueError(
                f"attribute {name!r}: {type(value).__name__} is not an attribute type "
                "(str, int, float, bool, datetime)"
            )
        if types:
            declared = types.get(name)
            if declared is None:
                known = ", ".join(sorted(types))
                raise ValueError(f"attribute {name!r} is not declared (attribute_types: {known})")
            if family(value) != declared:
                raise ValueError(f"attribute {name!r} holds {declared} values, got {value!r}")
        checked[name] = value
    return checked


_RETENTION = "@retention"  # not an attribute name: those are identifiers


def encode_attributes(
    values: Mapping[str, AttributeValue], *, retention: float | None = None
) -> bytes:
    """A start's metadata: its attributes, each value's type kept, and its own retention.

    A duplicate carries it to the owner, whose policy may start a generation with them.
    """
    tagged: dict[str, list[Any]] = {
        name: ["datetime", value.isoformat()]
        if isinstance(value, datetime)
        else [type(value).__name__, value]
        for name, value in values.items()
    }
    if retention is not None:
        tagged[_RETENTION] = ["float", retention]
    return msgspec.json.encode(tagged)


def decode_attributes(data: bytes | None) -> dict[str, AttributeValue]:
    """The attributes :func:`encode_attributes` wrote."""
    return _attributes(msgspec.json.decode(data)) if data else {}


def start_init(data: bytes | None, retention: float) -> ActorInit:
    """The generation a duplicate start makes, with the attributes and retention it came with.

    See :func:`encode_attributes`; ``retention`` if it named none.
    """
    if not data:
        return ActorInit(retention=retention)
    tagged: dict[str, tuple[str, Any]] = msgspec.json.decode(data)
    asked = tagged.get(_RETENTION)
    return ActorInit(
        retention=retention if asked is None else float(asked[1]), attributes=_attributes(tagged)
    )


def _attributes(tagged: Mapping[str, tuple[str, Any]]) -> dict[str, AttributeValue]:
    return {
        name: datetime.fromisoformat(str(value)) if tag == "datetime" else value
        for name, (tag, value) in tagged.items()
        if name != _RETENTION
    }
