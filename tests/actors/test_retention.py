"""Retention and purge (guarantee 6), on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from actors import ActorNotFound, RuntimeConfig, Status
from actors.testing import VirtualClock
from tests.conftest import running
from tests.entities import ChargeRequest, Payment

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
        await clock.advance(DAY + timedelta(minutes=1))
        with anyio.fail_after(5):
            # The sweep runs in the background; there is no event to wait on from outside.
            while await rt._store.load_actor(handles[0].actor._id) is not None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
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
