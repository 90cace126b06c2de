"""Duplicate: what a duplicate policy (``Entity.on_duplicate``) receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar, final

from persistence import AttributeValue

__all__ = ["Duplicate"]

P = TypeVar("P")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate(Generic[P]):
    """A start of a key whose actor already exists, as its owner's policy sees it.

    Handed to ``on_duplicate`` by the runtime; users never construct it.

    Attributes:
        payload: the duplicate caller's payload, decoded as the policy's ``Duplicate[P]``.
        attributes: the attributes the duplicate caller passed to ``start``.
        message_id: the id of the duplicate message.
        received_at: when the store accepted it (UTC).
    """

    payload: P
    attributes: Mapping[str, AttributeValue]
    message_id: int
    received_at: datetime
