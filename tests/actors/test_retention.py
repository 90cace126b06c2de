"""Retention and purge (guarantee 6), on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors import ActorNotFound, RuntimeConfig, Status
from actors.testing import VirtualClock
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    Completion,
    MessageKind,
    NewMessage,
    TurnCommit,
    open_store,
)
from tests.conftest import running
from tests.entities import ChargeRequest, Counter, Payment

DAY = timedelta(hours=24)


async def test_a_start_inside_retention_reuses_the_result_and_after_it_makes_a_new_generation(
    store_url: str,
) -> None:
    """G6: one tick before expiry the stored result; one tick after, generation 2."""
    clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with running(store_url, Payment, clock=clock) as rt:
        first = await rt.start(Payment, "p", ChargeRequest(amount=1))
        receipt = await first.reply()
        await clock.advance(DAY - timedelta(microseconds=10))
        before = await rt.start(Payment, "p", ChargeRequest(amount=1))
        assert (before.created, await before.reply()) == (False, receipt)
        await clock.advance(timedelta(microseconds=20))
        after = await rt.start(Payment, "p", ChargeRequest(amount=2))
        assert after.created is True
        assert after.actor.generation == 2
        assert (await after.reply()).amount == 2
        with pytest.raises(ActorNotFound):
            await first.actor.status()  # generation 1 can never address generation 2


async def test_an_expired_actor_is_gone_even_before_the_sweep(store_url: str) -> None:
    """G6: expiry is exact: reads treat an expired record as purged."""
    clock = VirtualClock()
    async with running(store_url, Payment, clock=clock) as rt:
        h = await rt.start(Payment, "q", ChargeRequest(amount=1))
        await h.reply()
        await clock.advance(DAY + timedelta(seconds=1))
        with pytest.raises(ActorNotFound):
            await rt.ref(Payment, "q").status()


async def test_the_sweep_purges_expired_actors_from_the_store(store_url: str) -> None:
    """G6: the purge sweep removes the record, and a later start gets a larger generation."""
    clock = VirtualClock()
    config = RuntimeConfig(purge_interval=timedelta(minutes=1))
    async with running(store_url, Payment, clock=clock, config=config) as rt:
        handles = [await rt.start(Payment, f"k{i}", ChargeRequest(amount=i)) for i in range(5)]
        for h in handles:
            await h.reply()
        await clock.advance(DAY + timedelta(minutes=1))  # returns once the purge has run
        assert rt.statistics().purged == 5
        for h in handles:
            assert await rt._store.load_actor(h.actor._id) is None
        again = await rt.start(Payment, "k0", ChargeRequest(amount=0))
        assert again.created
        assert (again.actor.generation or 0) > 1


async def test_retention_can_be_set_per_start(store_url: str) -> None:
    """G6: retention= on start overrides the entity's window."""
    clock = VirtualClock()
    async with running(store_url, Payment, clock=clock) as rt:
        short = await rt.start(
            Payment, "s", ChargeRequest(amount=1), retention=timedelta(minutes=5)
        )
        await short.reply()
        await clock.advance(timedelta(minutes=6))
        assert (await rt.start(Payment, "s", ChargeRequest(amount=1))).created is True
        with pytest.raises(ValueError, match="retention"):
            await rt.start(Payment, "t", ChargeRequest(amount=1), retention=timedelta(seconds=-1))


async def test_an_active_actor_never_expires(store_url: str) -> None:
    """G6: retention starts at completion; an active actor is kept however long."""
    from tests.entities import Job

    clock = VirtualClock()
    async with running(store_url, Job, clock=clock) as rt:
        h = await rt.start(Job, "long", "x")
        await h.reply()
        await clock.advance(timedelta(days=400))
        assert await h.actor.status() == Status.ACTIVE


async def test_purging_100k_expired_actors_runs_in_bounded_batches_while_asks_go_on(
    tmp_path: Path,
) -> None:
    """G6: a large purge goes batch by batch; message handling carries on throughout."""
    url = f"sqlite:///{tmp_path / 'big.db'}"
    total, chunk = 100_000, 2000
    store = await open_store(url)
    try:
        for first in range(0, total, chunk):
            admits = [
                Admit(
                    actor=ActorId(entity="payment", key=f"p{i}"),
                    message=NewMessage(kind=MessageKind.START, handler="charge", payload=b"{}"),
                    init=ActorInit(retention=60.0),
                )
                for i in range(first, first + chunk)
            ]
            outcomes = await store.write(admits, now=1000.0)
            commits = []
            for admit, outcome in zip(admits, outcomes, strict=True):
                assert isinstance(outcome, AdmitOutcome)
                assert outcome.message is not None
                commits.append(
                    TurnCommit(
                        actor=admit.actor,
                        generation=outcome.generation,
                        consumed=outcome.message.id,
                        completion=Completion(status=Status.COMPLETED, result=b"1"),
                    )
                )
            await store.write(commits, now=1000.0)  # expired since 1060, long ago
    finally:
        await store.close()
    config = RuntimeConfig(purge_batch=500, purge_interval=timedelta(milliseconds=10))
    async with running(url, Counter, config=config, limit=300) as rt:
        ref = rt.ref(Counter, "busy")
        asked = 0
        while rt.statistics().purged < total:
            asked += 1
            assert await ref.ask(Counter.add, 1) == asked
        assert asked > 1  # asks were answered while the purge ran
        assert rt._retention.purges >= total // 500
        assert await rt._store.load_actor(ActorId(entity="payment", key="p99999")) is None
        assert await rt._store.next_expiry() is None
