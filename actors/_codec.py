"""Payload encoding and validation: the only place that turns Python values into bytes.

Values are encoded as JSON with msgspec and decoded against the type a handler declares, which
both validates them and gives the receiver its own copy (an actor never shares a mutable object
with its caller). ``Any`` is allowed here and only here: this is the codec edge.
"""

from __future__ import annotations

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


def encode(value: Any, *, what: str, expected: Any) -> bytes:
    """``value`` as bytes.

    Raises:
        InvalidPayload: ``value`` cannot be encoded.
    """
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidPayload(what, type_name(expected), str(exc)) from None


def decode(data: bytes, tp: Any, *, what: str) -> Any:
    """``data`` decoded as ``tp``.

    Raises:
        InvalidPayload: ``data`` does not fit ``tp``.
    """
    try:
        return _decoder(tp).decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidPayload(what, type_name(tp), str(exc)) from None


def check(value: Any, tp: Any, *, what: str) -> tuple[bytes, Any]:
    """Encode ``value`` and decode it as ``tp``: its bytes and a private copy that fits ``tp``.

    Raises:
        InvalidPayload: ``value`` cannot be encoded or does not fit ``tp``.
    """
    data = encode(value, what=what, expected=tp)
    return data, decode(data, tp, what=what)
