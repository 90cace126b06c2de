"""Idle passivation: the loop that drops activations that have had no work for a while.

An activation joins the idle list when its last turn commits; this loop sleeps until the
earliest moment one of them may pass its entity's ``idle_timeout`` (a newly idle one wakes it
if sooner) and hands the expired ones to the dispatcher, which runs ``on_passivate`` and
frees their slots. A passivated actor costs no memory: its next message loads it again.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from actors._alarm import Alarm
from actors._clock import Clock


class Passivation:
    def __init__(
        self, clock: Clock, sweep: Callable[[float, float], float | None], shortest: float
    ) -> None:
        self._clock = clock
        self._sweep = sweep
        self._shortest = shortest
        self.alarm = Alarm(clock)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.alarm.reset()
            await self.alarm.sleep_until(self._sweep(self._clock.now(), self._shortest))
