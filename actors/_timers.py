"""Retention: the sweep that purges completed actors once their window has passed.

Expiry itself is exact without the sweep: the store treats a record whose ``expires_at`` has
passed as absent (a start creates the next generation; reads report it gone). The sweep only
reclaims the rows, in bounded batches so that it never holds the store for long.
"""

from __future__ import annotations

import anyio
import structlog
from anyio.abc import TaskStatus

from actors._clock import Clock
from persistence import Store, StoreError

log = structlog.get_logger("actors.retention")


async def purge_loop(
    store: Store,
    clock: Clock,
    *,
    interval: float,
    batch: int,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    while True:
        await clock.sleep(interval)
        try:
            purged = batch
            while purged == batch:
                purged = await store.purge_expired(now=clock.now(), limit=batch)
                if purged:
                    log.info("actors_purged", count=purged)
                await anyio.lowlevel.checkpoint()
        except StoreError as exc:
            log.error("purge_failed", error=str(exc))
