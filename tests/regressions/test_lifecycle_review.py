"""Review of durable timers, idle passivation, max_active and retention: the bugs found.

Each test shows one defect of the change that added timers, passivation hooks, a strict
``max_active``, the expiry-driven retention loop and the settling ``VirtualClock``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from actors import Context, Duplicate, Entity, Runtime, RuntimeConfig, handler
from actors.testing import VirtualClock
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    FireOutcome,
    FireTimers,
    MessageKind,
    NewMessage,
    NewTimer,
    TurnCommit,
    open_store,
)
from tests.conftest import running

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


# -- retention ---------------------------------------------------------------------------


class Job(Entity):
    """Completes at once with ``run(True)``; stays active with ``run(False)``."""

    name = "job"
    retention = timedelta(hours=1)

    @handler(start=True)
    async def run(self, ctx: Context, finish: bool) -> str:
        if finish:
            ctx.complete("done")
        return "running"

    @handler
    async def ping(self, ctx: Context) -> str:
        return "pong"


async def test_a_backlog_of_expired_actors_and_kept_replies_is_purged_in_one_go(
    tmp_path: Path,
) -> None:
    """G6: when expired actors fill a purge batch, the batches go on until none is left.

    ``purge_expired`` returns expired actors *plus* expired kept replies, and the retention
    loop goes on only while that sum equals ``purge_batch``. A batch with a full page of
    actors and one reply returns more than ``purge_batch`` and the loop stops, leaving
    expired actors in the store until the next ``purge_interval``.
    """
    clock = VirtualClock(T0)
    config = RuntimeConfig(purge_batch=2)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    async with running(url, Job, clock=clock, config=config, limit=10) as rt:
        for key in ("j1", "j2", "j3"):
            await (await rt.start(Job, key, True)).reply()
        await (await rt.start(Job, "keeper", False)).reply()
        assert await rt.ref(Job, "keeper").ask(Job.ping, idempotency_key="once") == "pong"
        await clock.advance(timedelta(hours=1, seconds=1))
        left = [k for k in ("j1", "j2", "j3") if await rt._store.load_actor(_id(Job, k))]
        assert (left, rt.statistics().purged) == ([], 4)


async def test_a_wake_up_for_a_later_expiry_does_not_postpone_its_purge(tmp_path: Path) -> None:
    """G6: an actor whose retention ends is purged then, not one purge interval later.

    A completion wakes the sleeping retention loop with ``wake_by(expires_at)``. The wake-up
    cuts the sleep at once (not at ``expires_at``), and the loop then purges right away,
    finds nothing, and counts that empty purge as the last one: the real purge waits for
    ``purge_interval`` after it.
    """
    clock = VirtualClock(T0)

    class Brief(Job):
        name = "brief"
        retention = timedelta(seconds=10)

    url = f"sqlite:///{tmp_path / 'a.db'}"
    async with running(url, Brief, clock=clock, limit=10) as rt:
        await clock.advance(MINUTE)  # the last purge was long ago
        await (await rt.start(Brief, "b", True)).reply()
        await clock.advance(timedelta(seconds=11))  # purge_interval is 30 s
        assert await rt._store.load_actor(_id(Brief, "b")) is None
        assert rt.statistics().purged == 1


def _id(entity: type[Entity], key: str) -> ActorId:
    return ActorId(entity=str(entity.name), key=key)
