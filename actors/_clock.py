"""Clocks: where the runtime's notion of time comes from.

Durable times (retention expiry) are UTC wall-clock seconds from ``now()``; waiting uses
``sleep()``. Tests inject :class:`actors.testing.VirtualClock` to skip time.
"""

from __future__ import annotations

import time
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
        """Sleep for ``seconds`` of real time."""
        await anyio.sleep(seconds)
