"""Test kit for code that uses keyed-actors: a clock that tests move by hand.

Example::

    clock = VirtualClock()
    async with Runtime.open("sqlite:///:memory:", entities=[Payment], clock=clock) as rt:
        ...
        await clock.advance(timedelta(hours=25))   # retention windows pass at once
"""

from __future__ import annotations

import heapq
import itertools
import time
from datetime import datetime, timedelta
from typing import final

import anyio

__all__ = ["VirtualClock"]


@final
class VirtualClock:
    """A :class:`actors.Clock` whose time moves only when a test calls :meth:`advance`.

    Args:
        start: the initial time (default: the real current time).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = time.time() if start is None else start.timestamp()
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The virtual time, in seconds since the Unix epoch."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the virtual time has advanced by ``seconds``."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), event))
        await event.wait()

    async def advance(self, delta: timedelta) -> None:
        """Move time forward by ``delta`` and wake every sleeper whose time has come.

        Raises:
            ValueError: ``delta`` is negative.
        """
        if delta < timedelta(0):
            raise ValueError(f"time only moves forward; got {delta}")
        self._now += delta.total_seconds()
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()
        await anyio.lowlevel.checkpoint()
