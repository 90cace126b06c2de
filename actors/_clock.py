"""Clocks: where the runtime's notion of time comes from.

Durable times (retention expiry) are UTC wall-clock seconds from ``now()``; waiting uses
``sleep()``. Tests inject :class:`actors.testing.VirtualClock` to skip time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, final

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A source of wall-clock time that the runtime can also sleep on."""

    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``now()`` has advanced by ``seconds``."""
        ...


@final
class SystemClock:
    """The real clock: ``time.time()`` and ``anyio.sleep``."""

    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of real time (none if it is negative: a deadline passed)."""
        await anyio.sleep(max(seconds, 0.0))


def track(clock: Clock, quiet: Callable[[], bool]) -> Callable[[], None]:
    """Show a clock that waits for quiet (a test clock) how to see that a runtime is quiet.

    Returns the function that stops it; a clock without ``track`` is left alone.
    """
    hook = getattr(clock, "track", None)
    if callable(hook):
        untrack: Callable[[], None] = hook(quiet)
        return untrack
    return lambda: None
