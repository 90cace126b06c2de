"""Payload encoding and validation: the only place that turns Python values into bytes.

Values are encoded as JSON with msgspec and decoded against the type a handler declares, which
both validates them and gives the receiver its own copy (an actor never shares a mutable object
with its caller). ``Any`` is allowed here and only here: this is the codec edge.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import msgspec

from actors.errors import InvalidPayload

_encoder = msgspec.json.Encoder()


class _NoPayload:
    """The marker for "this handler takes no payload"."""

    _instance: _NoPayload | None = None

    def __new__(cls) -> _NoPayload:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_PAYLOAD"


NO_PAYLOAD = _NoPayload()
"""The default for ``payload`` arguments: "no payload given" (``None`` is a payload)."""


@lru_cache(maxsize=1024)
def _decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(tp)


def type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def encode(value: Any, *, what: str, expected: Any, limit: int | None = None) -> bytes:
    """``value`` as bytes, of at most ``limit`` bytes when one is given.

    Raises:
        InvalidPayload: ``value`` cannot be encoded (an unsupported type, a string with a lone
            surrogate, a NaN or infinite float), or its encoding is over ``limit`` bytes.
    """
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidPayload(what, type_name(expected), str(exc)) from None
    # JSON has no NaN or infinity: msgspec writes them as null, which would come back as
    # None (or not decode at all). Only a value whose encoding holds a null can hold one.
    if b"null" in data and _has_non_finite(value):
        raise InvalidPayload(
            what, type_name(expected), "NaN and infinite floats cannot be encoded (JSON has none)"
        )
    if limit is not None and len(data) > limit:
        raise InvalidPayload(
            what,
            type_name(expected),
            f"it is {len(data):,} bytes encoded, over the limit of {limit:,} bytes "
            "(RuntimeConfig.max_payload)",
        )
    return data


def _has_non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or infinite float anywhere."""
    try:
        stack = [msgspec.to_builtins(value)]
    except (TypeError, ValueError, OverflowError):  # it encoded, so this should not happen
        return False
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def decode(data: bytes, tp: Any, *, what: str) -> Any:
    """``data`` decoded as ``tp``.

    Raises:
        InvalidPayload: ``data`` does not fit ``tp``.
    """
    try:
        return _decoder(tp).decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidPayload(what, type_name(tp), str(exc)) from None


def check(value: Any, tp: Any, *, what: str, limit: int | None = None) -> tuple[bytes, Any]:
    """Encode ``value`` and decode it as ``tp``: its bytes and a private copy that fits ``tp``.

    Raises:
        InvalidPayload: ``value`` cannot be encoded, is over ``limit`` bytes encoded, or does
            not fit ``tp``.
    """
    data = encode(value, what=what, expected=tp, limit=limit)
    return data, decode(data, tp, what=what)
