"""Store calls retried through transient failures (a locked database, a full disk)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog

from persistence import StoreError

T = TypeVar("T")

log = structlog.get_logger("actors.retry")

DELAYS = (0.02, 0.1, 0.5)
"""Pauses before each new try of a call the store refused with a retryable error."""


async def retrying(call: Callable[[], Awaitable[T]], *, what: str) -> T:
    """``call()``, tried again after each of ``DELAYS`` while it fails retryably.

    Raises:
        StoreError: a non-retryable failure, or the last retryable one.
    """
    for delay in (*DELAYS, None):
        try:
            return await call()
        except StoreError as exc:
            if not exc.retryable or delay is None:
                raise
            log.warning("store_call_retried", call=what, error=str(exc), delay=delay)
            await anyio.sleep(delay)
    raise AssertionError("unreachable: the last try returns or raises")
