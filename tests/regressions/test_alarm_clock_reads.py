"""Found by the crash campaign: a deadline passing between two clock readings crashed the runtime.

``Alarm.sleep_until`` read the clock to decide the deadline was still ahead, then read it
again to compute the delay, which could come out negative: ``anyio.sleep`` raised
``ValueError`` in the timer loop and took the runtime down.
"""

from __future__ import annotations

import anyio

from actors._alarm import Alarm
from actors._clock import SystemClock


class CreepingClock:
    """Every reading is a millisecond after the last."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        self.t += 0.001
        return self.t

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"asked to sleep {seconds} s"
        await anyio.sleep(seconds)


async def test_a_deadline_passing_between_readings_is_not_a_negative_sleep() -> None:
    with anyio.fail_after(5):
        await Alarm(CreepingClock()).sleep_until(0.0015)


async def test_the_system_clock_sleeps_no_time_for_a_negative_delay() -> None:
    with anyio.fail_after(5):
        await SystemClock().sleep(-0.5)
