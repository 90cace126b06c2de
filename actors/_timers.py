"""Durable timers: the loop that fires them when they come due.

Timers are stored by the turns that schedule them. This loop sleeps until the earliest due
time (a commit that schedules an earlier one wakes it), then asks the writer to fire the due
timers: one store transaction deletes them and stores their messages, and the dispatcher
delivers those like any other committed message. Going through the writer keeps every
mailbox in id order; firing in one transaction makes each timer fire once, also across a
crash (a timer that came due while the process was down fires when it starts).
"""

from __future__ import annotations

import anyio
import structlog
from anyio.abc import TaskStatus

from actors._alarm import Alarm
from actors._clock import Clock
from actors._future import Future
from actors._writer import Request, Writer
from actors.errors import ActorsError, RuntimeClosed
from persistence import FireOutcome, FireTimers, Store, StoreError

log = structlog.get_logger("actors.timers")

_RETRY = 1.0


class Timers:
    def __init__(
        self, store: Store, clock: Clock, writer: Writer, *, batch: int, entities: frozenset[str]
    ) -> None:
        self._store = store
        # Only timers of the hosted entities: tenants sharing a store leave each other's alone.
        self._entities = entities
        self._clock = clock
        self._writer = writer
        self._batch = batch
        self.alarm = Alarm(clock)
        self.fired = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.alarm.reset()
            try:
                due = await self._store.next_timer_due(self._entities)
                if due is not None and due <= self._clock.now():
                    await self._fire()
                    continue
            except RuntimeClosed:
                return
            except (StoreError, ActorsError) as exc:
                log.error("timers_failed", error=str(exc))
                due = self._clock.now() + _RETRY
            await self.alarm.sleep_until(due)

    async def _fire(self) -> None:
        fire = FireTimers(limit=self._batch, entities=self._entities)
        request = Request(item=fire, accepted=Future())
        try:
            self._writer.submit(request)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise RuntimeClosed("the runtime is closed") from None
        outcome = await request.accepted.wait()
        assert isinstance(outcome, FireOutcome)
        self.fired += len(outcome.messages)
        if outcome.messages:
            log.debug("timers_fired", count=len(outcome.messages))
