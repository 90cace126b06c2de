"""Retention: the loop that purges completed actors once their window has passed.

Expiry itself is exact without it: the store treats a record whose ``expires_at`` has passed
as absent (a start creates the next generation; reads report it gone). The loop reclaims the
rows: it sleeps until the earliest expiry (at most once per ``interval``, so that expiries
spread over time are purged together), then purges in bounded batches, letting other store
work run between them.
"""

from __future__ import annotations

import time

import anyio
import structlog
from anyio.abc import TaskStatus

from actors._alarm import Alarm
from actors._clock import Clock
from persistence import Store, StoreError

log = structlog.get_logger("actors.retention")


class Retention:
    def __init__(self, store: Store, clock: Clock, *, interval: float, batch: int) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self.alarm = Alarm(clock)
        self.purged = 0
        self.purges = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        last = self._clock.now()
        while True:
            self.alarm.reset()
            self.alarm.not_before = last + self._interval
            try:
                expiry = await self._store.next_expiry()
            except StoreError as exc:
                log.error("purge_failed", error=str(exc))
                expiry = self._clock.now()
            due = None if expiry is None else max(expiry, self.alarm.not_before)
            if due is not None and due <= self._clock.now():
                last = self._clock.now()
                await self._purge()
                continue
            # Woken early (a commit kept something expiring sooner) or on time: look again.
            await self.alarm.sleep_until(due)

    async def _purge(self) -> None:
        try:
            purged = self._batch
            # It counts expired actors and expired kept replies, each up to the batch size:
            # a full batch of either means there may be more.
            while purged >= self._batch:
                began = time.monotonic()
                purged = await self._store.purge_expired(now=self._clock.now(), limit=self._batch)
                self.purges += 1
                self.purged += purged
                if purged:
                    log.info("actors_purged", count=purged)
                # Leave the store to message handling for as long as the batch held it, so
                # that a large purge never takes more than half of the store's time. (Real
                # time: this paces the store, it is no deadline of the runtime's.)
                await anyio.sleep(time.monotonic() - began)
        except StoreError as exc:
            log.error("purge_failed", error=str(exc))
