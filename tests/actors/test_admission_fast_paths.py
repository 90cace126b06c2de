"""Duplicate starts answered from memory (issue 7's admission fast paths).

Under the default duplicate policy (adopt) a start of an existing key gets the actor's result:
the stored one if it ended within its retention window, or the one it will end with
(DESIGN.md, "Conflicts are messages"). When the runtime already knows what the store would
say, it answers without a commit: from its recent results, or by adopting the active actor's
result in memory; starts of a key whose first start is on its way wait for that one. These
tests check that the answer is the store's own, commit-free, bounded, and never used where the
store's answer could differ.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from actors import (
    ActorCompleted,
    ActorFailed,
    Context,
    Duplicate,
    Entity,
    HandlerFailed,
    RuntimeClosed,
    RuntimeConfig,
    handler,
)
from actors.testing import VirtualClock
from tests.conftest import running
from tests.entities import ChargeRequest, Job, Payment

DAY = timedelta(hours=24)


class Counted(Entity):
    """Completes on start; its duplicate policy counts the duplicates it sees."""

    name = "counted"
    state: int

    @handler(start=True)
    async def run(self, ctx: Context, n: int) -> int:
        ctx.complete(n)
        return n

    async def on_duplicate(self, ctx: Context, dup: Duplicate[int]) -> int:
        return -dup.payload


async def test_a_late_duplicate_is_answered_without_a_commit(store_url: str) -> None:
    """The result, created=False, the same generation: and nothing written."""
    async with running(store_url, Payment) as rt:
        first = await rt.start(Payment, "p", ChargeRequest(amount=7))
        receipt = await first.reply()
        committed = rt._writer.items
        for _ in range(3):
            late = await rt.start(Payment, "p", ChargeRequest(amount=7))
            assert (late.created, await late.reply()) == (False, receipt)
            assert late.actor.generation == first.actor.generation
        assert rt._writer.items == committed
        assert rt._results.hits == 3


async def test_a_failed_actor_answers_late_duplicates_with_its_error(store_url: str) -> None:
    async with running(store_url, Payment) as rt:
        first = await rt.start(Payment, "bad", ChargeRequest(amount=-1))
        with pytest.raises(HandlerFailed, match="negative amount"):
            await first.reply()
        late = await rt.start(Payment, "bad", ChargeRequest(amount=-1))
        with pytest.raises(ActorFailed) as failed:
            await late.reply()
        assert rt._results.hits == 1
        error = failed.value
        assert (error.generation, error.error_type, error.error_message) == (
            1,
            "ValueError",
            "negative amount",
        )


async def test_after_a_restart_the_store_answers_first_then_memory(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'actors.db'}"
    async with running(store_url, Payment) as rt:
        receipt = await (await rt.start(Payment, "r", ChargeRequest(amount=1))).reply()
    async with running(store_url, Payment) as rt:
        committed = rt._writer.items
        from_store = await rt.start(Payment, "r", ChargeRequest(amount=1))
        assert (from_store.created, await from_store.reply()) == (False, receipt)
        assert rt._writer.items == committed + 1
        from_memory = await rt.start(Payment, "r", ChargeRequest(amount=1))
        assert (from_memory.created, await from_memory.reply()) == (False, receipt)
        assert rt._writer.items == committed + 1
        assert rt._results.hits == 1


async def test_an_entity_with_a_duplicate_policy_always_runs_it(store_url: str) -> None:
    """Its policy sees duplicates after completion too: memory must not answer for it."""
    async with running(store_url, Counted) as rt:
        assert await (await rt.start(Counted, "c", 5)).reply() == 5
        for n in (1, 2):
            late = await rt.start(Counted, "c", n)
            assert (late.created, await late.reply()) == (False, -n)
        assert rt._results.hits == 0


async def test_a_remembered_result_expires_with_the_record(store_url: str) -> None:
    """Remembered until the record expires; after it a start makes generation 2."""
    clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with running(store_url, Payment, clock=clock) as rt:
        await (await rt.start(Payment, "e", ChargeRequest(amount=1))).reply()
        await clock.advance(DAY - timedelta(microseconds=10))
        assert (await rt.start(Payment, "e", ChargeRequest(amount=1))).created is False
        assert rt._results.hits == 1
        await clock.advance(timedelta(microseconds=20))
        again = await rt.start(Payment, "e", ChargeRequest(amount=2))
        assert (again.created, again.actor.generation) == (True, 2)
        assert (await again.reply()).amount == 2


async def test_recent_results_are_bounded_and_can_be_turned_off(store_url: str) -> None:
    config = RuntimeConfig(recent_results=2)
    async with running(store_url, Payment, config=config) as rt:
        for key in ("a", "b", "c"):
            await (await rt.start(Payment, key, ChargeRequest(amount=1))).reply()
        assert len(rt._results) == 2
        await (await rt.start(Payment, "a", ChargeRequest(amount=1))).reply()  # from the store
        assert rt._results.hits == 0
        await (await rt.start(Payment, "c", ChargeRequest(amount=1))).reply()
        assert rt._results.hits == 1
    async with running(store_url, Payment, config=RuntimeConfig(recent_results=0)) as rt:
        await (await rt.start(Payment, "z", ChargeRequest(amount=1))).reply()
        committed = rt._writer.items
        assert (await rt.start(Payment, "z", ChargeRequest(amount=1))).created is False
        assert (len(rt._results), rt._writer.items) == (0, committed + 1)


async def test_a_closed_runtime_refuses_even_a_remembered_key(store_url: str) -> None:
    async with running(store_url, Payment) as rt:
        await (await rt.start(Payment, "k", ChargeRequest(amount=1))).reply()
    with pytest.raises(RuntimeClosed):
        await rt.start(Payment, "k", ChargeRequest(amount=1))


@pytest.mark.parametrize("bad", [-1, True, 1.5, "10"])
def test_recent_results_must_be_a_count(bad: object) -> None:
    with pytest.raises(ValueError, match="recent_results must be an int of at least 0"):
        RuntimeConfig(recent_results=bad)  # type: ignore[arg-type]


async def test_a_duplicate_of_an_active_actor_adopts_its_result_without_a_commit(
    store_url: str,
) -> None:
    async with running(store_url, Job) as rt:
        first = await rt.start(Job, "j", "a")
        assert await first.reply() == "started a"
        committed = rt._writer.items
        duplicate = await rt.start(Job, "j", "b")
        assert (duplicate.created, duplicate.actor.generation) == (False, 1)
        assert rt._writer.items == committed
        await rt.ref(Job, "j").tell(Job.finish, "done")
        with anyio.fail_after(5):
            assert await duplicate.reply() == "done"


async def test_a_duplicate_adopts_an_end_that_is_not_committed_yet(store_url: str) -> None:
    """The end may have run (pipelined) and still be on its way to the store."""
    async with running(store_url, Job) as rt:
        await (await rt.start(Job, "g", "a")).reply()
        await rt.ref(Job, "g").tell(Job.give_up, "no")
        late = await rt.start(Job, "g", "b")
        with pytest.raises(ActorFailed, match="no"):
            await late.reply()
        cancelled = await rt.start(Job, "c", "a")
        assert await cancelled.actor.cancel("stop") is True
        with pytest.raises(ActorCompleted, match="cancelled"):
            await (await rt.start(Job, "c", "b")).reply()


async def test_concurrent_starts_of_a_new_key_store_one_admission(store_url: str) -> None:
    """G1 still: one created=True, one start handler run; the rest wait and adopt."""
    async with running(store_url, Payment) as rt:
        handles = []

        async def start() -> None:
            handles.append(await rt.start(Payment, "storm", ChargeRequest(amount=3)))

        committed = rt._writer.items
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(start)
        assert sorted(h.created for h in handles) == [False] * 49 + [True]
        replies = {(await h.reply()).charge_id for h in handles}
        assert len(replies) == 1
        assert rt._writer.items - committed == 2  # the admission and the start's turn
        assert rt.statistics().turns == 1


async def test_a_passivated_active_actor_is_reached_through_the_store(store_url: str) -> None:
    """Not in memory: the store admits the duplicate, which adopts through the mailbox."""
    config = RuntimeConfig(max_active=1)
    async with running(store_url, Job, config=config) as rt:
        await (await rt.start(Job, "p", "a")).reply()
        await (await rt.start(Job, "other", "a")).reply()  # makes room: "p" is passivated
        committed = rt._writer.items
        duplicate = await rt.start(Job, "p", "b")
        assert duplicate.created is False
        assert rt._writer.items > committed
        await rt.ref(Job, "p").tell(Job.finish, "out")
        with anyio.fail_after(5):
            assert await duplicate.reply() == "out"


class SteppedClock:
    """A wall clock that a correction (NTP) can step back."""

    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(min(max(seconds, 0.0), 0.05))


async def test_a_remembered_result_is_dropped_when_the_key_gets_a_new_generation(
    store_url: str,
) -> None:
    """G6: once a key has a new generation, a start meets that one, even if the clock steps back.

    Expiry alone would keep answering with the old generation's result while the wall clock
    is back before its expiry.
    """
    clock = SteppedClock(1_000_000.0)
    async with running(store_url, Payment, clock=clock) as rt:
        first = await rt.start(
            Payment, "k", ChargeRequest(amount=1), retention=timedelta(seconds=10)
        )
        await first.reply()
        clock.t += 20  # generation 1 has expired
        assert await rt.ref(Payment, "k").ask(Payment.charges) == 0  # creates generation 2
        clock.t -= 15  # the clock steps back to before generation 1 expired
        late = await rt.start(Payment, "k", ChargeRequest(amount=2))
        assert (late.created, late.actor.generation) == (False, 2)
