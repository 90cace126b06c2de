"""Atomic admission (guarantee 1) and the default duplicate policy."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import HandlerFailed, Status
from tests.conftest import running
from tests.entities import ChargeRequest, Counter, Payment, Receipt, Refund


async def test_concurrent_starts_of_one_key_create_exactly_one_actor(store_url: str) -> None:
    """G1: of 1,000 concurrent starts of one key, exactly one sees created=True."""
    handles: list[Any] = []
    async with running(store_url, Payment) as rt:

        async def start() -> None:
            handles.append(await rt.start(Payment, "order-1", ChargeRequest(amount=42)))

        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(start)
        replies = [await h.reply() for h in handles]
        charges = await rt.ref(Payment, "order-1").status()
    assert len(handles) == 1000
    assert sum(h.created for h in handles) == 1
    assert {h.actor.generation for h in handles} == {1}
    assert len({r.charge_id for r in replies}) == 1, "every caller gets the one result"
    assert charges == Status.COMPLETED


async def test_the_start_handler_runs_once_however_many_duplicates_arrive(store_url: str) -> None:
    """G1: duplicates are messages to the owner; they never run the start handler again."""
    async with running(store_url, Payment) as rt:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(rt.start, Payment, "order-2", ChargeRequest(amount=1))
        record = await rt._store.load_actor(rt.ref(Payment, "order-2")._id)
    assert record is not None
    assert record.state is not None
    assert b'"charges":1' in record.state


async def test_a_start_after_completion_gets_the_stored_result_without_running(
    store_url: str,
) -> None:
    """G1, G5: a late duplicate gets the stored result; nothing runs, nothing is stored."""
    async with running(store_url, Payment) as rt:
        first = await rt.start(Payment, "order-3", ChargeRequest(amount=7))
        receipt = await first.reply()
        turns = rt.statistics().turns
        late = await rt.start(Payment, "order-3", ChargeRequest(amount=7))
        assert late.created is False
        assert await late.reply() == receipt
        assert rt.statistics().turns == turns
        assert await rt._store.load_mailbox(late.actor._id) == []
    assert first.created is True
    assert isinstance(receipt, Receipt)
    assert receipt.amount == 7


async def test_a_duplicate_of_an_active_actor_adopts_its_result(store_url: str) -> None:
    """G1: the default policy replies to a duplicate with the actor's eventual result."""
    from tests.entities import Job

    async with running(store_url, Job) as rt:
        owner = await rt.start(Job, "j1", "first")
        assert await owner.reply() == "started first"
        duplicate = await rt.start(Job, "j1", "second")
        assert duplicate.created is False
        async with anyio.create_task_group() as tg:
            results: list[str] = []

            async def adopt() -> None:
                results.append(await duplicate.reply())

            tg.start_soon(adopt)
            await anyio.sleep(0.05)
            assert results == [], "the duplicate waits for completion"
            await rt.ref(Job, "j1").tell(Job.finish, "output")
        assert results == ["output"]


async def test_entity_names_scope_keys(store_url: str) -> None:
    """The same key under two entity names names two independent actors."""
    async with running(store_url, Payment, Refund) as rt:
        payment = await rt.start(Payment, "order-9", ChargeRequest(amount=5))
        refund = await rt.start(Refund, "order-9", 5)
        assert payment.created
        assert refund.created
        assert (await payment.reply()).amount == 5
        assert await refund.reply() == "refund 5 for order-9"


async def test_a_start_handler_that_raises_fails_the_actor_for_every_caller(
    store_url: str,
) -> None:
    """A failed start is the actor's outcome: duplicates get the error, not a hang."""
    from actors import ActorFailed

    async with running(store_url, Payment) as rt:
        h = await rt.start(Payment, "bad", ChargeRequest(amount=-1))
        with pytest.raises(HandlerFailed) as failed:
            await h.reply()
        assert failed.value.handler == "charge"
        assert failed.value.error_type == "ValueError"
        assert await h.actor.status() == Status.FAILED
        late = await rt.start(Payment, "bad", ChargeRequest(amount=-1))
        assert late.created is False
        with pytest.raises(ActorFailed) as adopted:
            await late.reply()
        assert adopted.value.error_message == "negative amount"


async def test_virtual_actors_are_created_on_first_message(store_url: str) -> None:
    """An ask to a key that never existed creates its actor."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "fresh")
        assert await ref.ask(Counter.add, 3) == 3
        assert await ref.status() == Status.ACTIVE
