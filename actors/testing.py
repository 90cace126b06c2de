"""Test kit for code that uses keyed-actors: a clock that tests move by hand.

Give a runtime a :class:`VirtualClock` and time stands still until the test moves it.
``await clock.advance(delta)`` moves it forward and returns once everything that came due on
the way has run: timers fired and their turns committed, idle actors passivated, expired
actors purged. A day of timers and retention runs in milliseconds, the same way every time::

    clock = VirtualClock()
    async with Runtime.open("sqlite:///:memory:", entities=[Payment], clock=clock) as rt:
        ...
        await clock.advance(timedelta(hours=25))   # retention windows pass at once
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import final

import anyio
import anyio.lowlevel

__all__ = ["VirtualClock"]

_SETTLE_LIMIT = 30.0  # real seconds a runtime may take to finish what came due


@dataclass(order=True, slots=True)
class _Sleeper:
    deadline: float
    order: int
    event: anyio.Event = field(compare=False)
    woken: bool = field(default=False, compare=False)
    gone: bool = field(default=False, compare=False)


@final
class VirtualClock:
    """A :class:`actors.Clock` whose time moves only when a test calls :meth:`advance`.

    Args:
        start: the initial time (default: the real current time).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = time.time() if start is None else start.timestamp()
        self._sleepers: list[_Sleeper] = []
        self._order = itertools.count()
        self._waking = 0  # sleepers woken that have not resumed yet
        self._quiet: dict[int, Callable[[], bool]] = {}

    def now(self) -> float:
        """The virtual time, in seconds since the Unix epoch."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the virtual time has advanced by ``seconds``."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self._now + seconds, next(self._order), anyio.Event())
        heapq.heappush(self._sleepers, sleeper)
        try:
            await sleeper.event.wait()
        finally:
            if sleeper.woken:
                self._waking -= 1
            else:
                sleeper.gone = True

    async def advance(self, delta: timedelta) -> None:
        """Move time forward by ``delta``; return when what came due on the way has run.

        Time moves in steps, to each moment something sleeps until, and the runtimes using
        this clock finish what is due at that moment before the next step: a timer whose
        handler schedules another inside ``delta`` sees both fire, each at its own time.

        Raises:
            ValueError: ``delta`` is negative.
            TimeoutError: a runtime did not finish its due work within 30 real seconds
                (a handler that waits on this clock, for instance, never finishes).
        """
        if delta < timedelta(0):
            raise ValueError(f"time only moves forward; got {delta}")
        target = self._now + delta.total_seconds()
        await self._settle()
        while True:
            while self._sleepers and self._sleepers[0].gone:
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0].deadline > target:
                break
            self._now = max(self._now, self._sleepers[0].deadline)
            while self._sleepers and self._sleepers[0].deadline <= self._now:
                sleeper = heapq.heappop(self._sleepers)
                if not sleeper.gone:
                    sleeper.woken = True
                    self._waking += 1
                    sleeper.event.set()
            await self._settle()
        self._now = target
        await self._settle()

    def track(self, quiet: Callable[[], bool]) -> Callable[[], None]:
        """Make :meth:`advance` wait until ``quiet()`` is true at each step.

        A runtime opened with this clock calls it with its own test of quiet; users do not
        need to. Returns the function that stops tracking.
        """
        key = next(self._order)
        self._quiet[key] = quiet

        def untrack() -> None:
            self._quiet.pop(key, None)

        return untrack

    async def _settle(self) -> None:
        try:
            await self._until_quiet()
        except TimeoutError:
            raise TimeoutError(
                f"the runtime did not finish its due work within {_SETTLE_LIMIT:g} s of real "
                "time (does a handler wait on the clock, or on something that never comes?)"
            ) from None

    async def _until_quiet(self) -> None:
        with anyio.fail_after(_SETTLE_LIMIT):
            calm = 0
            while calm < 3:
                # A few rounds with nothing woken and every runtime quiet: tasks that were
                # ready when quiet was first seen have run too.
                await anyio.lowlevel.checkpoint()
                if self._waking or not all(quiet() for quiet in self._quiet.values()):
                    calm = 0
                    await anyio.sleep(0.0005)
                else:
                    calm += 1
