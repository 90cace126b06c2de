"""Completion: ctx.complete / ctx.fail, results, and messages after the end."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from actors import ActorCompleted, ActorFailed, AskTimeout, HandlerFailed, Status
from tests.conftest import running
from tests.entities import Job


async def test_result_waits_for_completion_and_returns_the_stored_result(store_url: str) -> None:
    """A completed actor's result is stored and returned to every waiter."""
    async with running(store_url, Job) as rt:
        h = await rt.start(Job, "a", "x")
        assert await h.actor.status() == Status.ACTIVE
        results: list[str] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                results.append(await h.actor.result())

            for _ in range(3):
                tg.start_soon(wait)
            await anyio.sleep(0.02)
            await h.actor.tell(Job.finish, "done")
        assert results == ["done"] * 3
        assert await h.actor.status() == Status.COMPLETED
        assert await rt.ref(Job, "a").result() == "done"


async def test_messages_to_a_completed_actor_get_a_clear_error(store_url: str) -> None:
    """Only duplicates and status/result queries reach a completed actor."""
    async with running(store_url, Job) as rt:
        h = await rt.start(Job, "b", "x")
        await h.actor.ask(Job.finish, "out")
        with pytest.raises(ActorCompleted, match=r"job/b \(generation 1\) is completed") as caught:
            await h.actor.ask(Job.finish, "again")
        assert caught.value.status == "completed"
        with pytest.raises(ActorCompleted):
            await rt.ref(Job, "b").tell(Job.finish, "again")


async def test_a_failed_actor_reports_its_error_from_result(store_url: str) -> None:
    """ctx.fail ends the generation; result() raises ActorFailed with the reason."""
    async with running(store_url, Job) as rt:
        h = await rt.start(Job, "c", "x")
        await h.actor.ask(Job.give_up, "out of stock")
        assert await h.actor.status() == Status.FAILED
        with pytest.raises(ActorFailed, match="out of stock") as caught:
            await h.actor.result()
        assert caught.value.error_type == "Failure"


async def test_completing_twice_in_one_turn_is_an_error(store_url: str) -> None:
    """A turn may end its actor once; a second attempt fails the turn."""
    async with running(store_url, Job) as rt:
        h = await rt.start(Job, "d", "x")
        with pytest.raises(HandlerFailed, match="already completed"):
            await h.actor.ask(Job.finish_twice)
        assert await h.actor.status() == Status.ACTIVE


async def test_result_times_out_with_a_clear_error(store_url: str) -> None:
    """result(timeout=...) raises AskTimeout naming what it waited for."""
    async with running(store_url, Job) as rt:
        h = await rt.start(Job, "e", "x")
        with pytest.raises(AskTimeout, match="job/e"):
            await h.actor.result(timeout=timedelta(milliseconds=20))


async def test_messages_queued_behind_the_completing_turn_get_actor_completed(
    store_url: str,
) -> None:
    """Messages accepted before completion but handled after it are answered, not lost."""
    async with running(store_url, Job) as rt:
        h = await rt.start(Job, "f", "x")
        outcomes: list[str] = []

        async def finish(output: str) -> None:
            try:
                await h.actor.ask(Job.finish, output)
                outcomes.append("finished")
            except ActorCompleted:
                outcomes.append("completed")

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(finish, f"o{i}")
        assert sorted(outcomes) == ["completed"] * 9 + ["finished"]
