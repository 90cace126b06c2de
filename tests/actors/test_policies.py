"""Peer idempotency policies as duplicate handlers (examples/idempotency_policies.py).

Each Temporal id-reuse and id-conflict policy, Inngest's idempotency key and DBOS's workflow
id, exercised on a duplicate start while the first run is active, after it completed and after
it failed: the duplicate's reply, the created flags, the generations, and the stored record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from actors import ActorCompleted, ActorFailed, ActorNotFound, HandlerFailed, Runtime, Status
from actors.testing import VirtualClock
from examples.idempotency_policies import (
    POLICIES,
    AllowDuplicate,
    AllowDuplicateFailedOnly,
    DbosWorkflowId,
    Fail,
    InngestIdempotency,
    RejectDuplicate,
    Started,
    Task,
    TerminateExisting,
    TerminateIfRunning,
    UseExisting,
    first_run,
)
from persistence import ActorRecord
from tests.conftest import running

ALL = tuple(POLICIES.values())
ACTIVE, COMPLETED, FAILED = Status.ACTIVE, Status.COMPLETED, Status.FAILED


async def record(rt: Runtime, policy: type[Task], key: str) -> ActorRecord:
    """The stored record of ``key``'s current generation."""
    found = await rt._store.load_actor(rt.ref(policy, key)._id)
    assert found is not None
    return found


def essence(found: ActorRecord) -> tuple[Any, ...]:
    """What a duplicate must not change: everything but the bookkeeping time of the last turn."""
    return (
        found.generation,
        found.status,
        found.state,
        found.result,
        found.error,
        dict(found.attributes),
        found.completed_at,
        found.expires_at,
    )


def test_the_example_defines_one_policy_per_peer_value() -> None:
    """Every Temporal reuse and conflict value, Inngest and DBOS each have their own entity."""
    assert len(ALL) == 9
    assert len({p.name for p in ALL}) == 9
    assert all("on_duplicate" in vars(p) for p in ALL)


@pytest.mark.parametrize(
    ("policy", "state"),
    [
        (AllowDuplicate, ACTIVE),
        (AllowDuplicateFailedOnly, ACTIVE),
        (AllowDuplicateFailedOnly, COMPLETED),
        (RejectDuplicate, ACTIVE),
        (RejectDuplicate, COMPLETED),
        (RejectDuplicate, FAILED),
        (Fail, ACTIVE),
    ],
)
async def test_a_rejected_duplicate_raises_the_policy_error_and_changes_nothing(
    store_url: str, policy: type[Task], state: Status
) -> None:
    """Reject: the caller gets HandlerFailed(DuplicateRejected); the actor stays as it was."""
    async with running(store_url, policy) as rt:
        first = await first_run(rt, policy, "k", state)
        before = await record(rt, policy, "k")
        duplicate = await rt.start(policy, "k", "second")
        assert (first.created, duplicate.created) == (True, False)
        assert duplicate.actor.generation == 1
        with pytest.raises(HandlerFailed) as rejected:
            await duplicate.reply()
        assert rejected.value.error_type == "DuplicateRejected"
        assert rejected.value.handler == "on_duplicate"
        assert rejected.value.generation == 1
        assert essence(await record(rt, policy, "k")) == essence(before)
        if state is ACTIVE:
            # The first run goes on undisturbed and its callers get its own result.
            await first.actor.tell(Task.finish, "first's result")
            assert await first.actor.result() == "first's result"


@pytest.mark.parametrize(
    ("policy", "state"),
    [
        (AllowDuplicate, COMPLETED),
        (AllowDuplicate, FAILED),
        (AllowDuplicateFailedOnly, FAILED),
        (TerminateIfRunning, COMPLETED),
        (TerminateIfRunning, FAILED),
        (Fail, COMPLETED),
        (Fail, FAILED),
        (UseExisting, COMPLETED),
        (UseExisting, FAILED),
        (TerminateExisting, COMPLETED),
        (TerminateExisting, FAILED),
    ],
)
async def test_a_duplicate_of_an_ended_run_starts_generation_2_with_its_payload(
    store_url: str, policy: type[Task], state: Status
) -> None:
    """Reuse after the end: the duplicate's reply is generation 2's start reply."""
    async with running(store_url, policy) as rt:
        first = await first_run(rt, policy, "k", state)
        duplicate = await rt.start(policy, "k", "second")
        assert (first.created, duplicate.created) == (True, False)
        assert await duplicate.reply() == Started(label="second", generation=2)
        current = await record(rt, policy, "k")
        assert (current.generation, current.status) == (2, ACTIVE)
        with pytest.raises(ActorNotFound):
            await first.actor.status()  # a ref to generation 1 never reaches generation 2
        await rt.ref(policy, "k").tell(Task.finish, "second's result")
        assert await rt.ref(policy, "k").result() == "second's result"
        later = await rt.start(policy, "k", "third")
        assert (later.created, later.actor.generation) == (False, 2)


async def test_allow_duplicate_failed_only_also_reruns_a_cancelled_run(store_url: str) -> None:
    """ALLOW_DUPLICATE_FAILED_ONLY: cancelled (Temporal: cancelled, terminated) allows reuse."""
    async with running(store_url, AllowDuplicateFailedOnly) as rt:
        first = await first_run(rt, AllowDuplicateFailedOnly, "k", ACTIVE)
        assert await first.actor.cancel("operator") is True
        duplicate = await rt.start(AllowDuplicateFailedOnly, "k", "second")
        assert duplicate.created is False
        assert await duplicate.reply() == Started(label="second", generation=2)


@pytest.mark.parametrize("policy", [TerminateIfRunning, TerminateExisting])
async def test_a_terminating_duplicate_supersedes_the_running_first_and_starts_generation_2(
    store_url: str, policy: type[Task]
) -> None:
    """Terminate: generation 1 ends as superseded, generation 2 runs the duplicate's payload."""
    async with running(store_url, policy) as rt:
        first = await first_run(rt, policy, "k", ACTIVE)
        ended: list[BaseException] = []

        async def wait_for_first() -> None:
            with pytest.raises(ActorCompleted) as caught:
                await first.actor.result()
            ended.append(caught.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_first)
            await anyio.sleep(0.05)  # let the waiter register on generation 1
            duplicate = await rt.start(policy, "k", "second")
            assert (first.created, duplicate.created) == (True, False)
            assert await duplicate.reply() == Started(label="second", generation=2)
        assert [getattr(e, "status", None) for e in ended] == ["superseded"]
        current = await record(rt, policy, "k")
        assert (current.generation, current.status) == (2, ACTIVE)
        with pytest.raises(ActorNotFound):
            await first.actor.tell(Task.finish, "too late")


@pytest.mark.parametrize("policy", [TerminateIfRunning, TerminateExisting])
async def test_concurrent_terminating_duplicates_each_start_a_generation_of_their_own(
    store_url: str, policy: type[Task]
) -> None:
    """Terminate under contention: N duplicates make generations 2..N+1, one each, no gaps."""
    async with running(store_url, policy) as rt:
        await first_run(rt, policy, "k", ACTIVE)
        replies: list[Started] = []

        async def duplicate(n: int) -> None:
            handle = await rt.start(policy, "k", f"dup-{n}")
            assert handle.created is False
            replies.append(await handle.reply())

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(duplicate, n)
        assert sorted(r.generation for r in replies) == list(range(2, 12))
        assert len({r.label for r in replies}) == 10
        current = await record(rt, policy, "k")
        assert (current.generation, current.status) == (11, ACTIVE)


@pytest.mark.parametrize("policy", [UseExisting, DbosWorkflowId])
async def test_a_duplicate_of_a_running_first_adopts_its_result(
    store_url: str, policy: type[Task]
) -> None:
    """USE_EXISTING and DBOS: the duplicate waits for the first run and gets its result."""
    async with running(store_url, policy) as rt:
        first = await first_run(rt, policy, "k", ACTIVE)
        duplicate = await rt.start(policy, "k", "second")
        assert (first.created, duplicate.created) == (True, False)
        assert duplicate.actor == first.actor
        replies: list[str] = []
        async with anyio.create_task_group() as tg:

            async def adopt() -> None:
                replies.append(await duplicate.reply())

            tg.start_soon(adopt)
            await anyio.sleep(0.05)
            assert replies == [], "the reply waits for the first run's result"
            await first.actor.tell(Task.finish, "first's result")
        assert replies == ["first's result"]
        current = await record(rt, policy, "k")
        assert (current.generation, current.status) == (1, COMPLETED)


async def test_a_dbos_duplicate_after_the_end_gets_the_stored_result_or_error(
    store_url: str,
) -> None:
    """DBOS: after completion the recorded result, after failure the recorded error."""
    async with running(store_url, DbosWorkflowId) as rt:
        await first_run(rt, DbosWorkflowId, "done", COMPLETED)
        await first_run(rt, DbosWorkflowId, "broken", FAILED)
        done = await rt.start(DbosWorkflowId, "done", "second")
        broken = await rt.start(DbosWorkflowId, "broken", "second")
        assert (done.created, broken.created) == (False, False)
        assert await done.reply() == "first's result"
        with pytest.raises(ActorFailed) as failed:
            await broken.reply()
        assert (failed.value.generation, failed.value.error_message) == (1, "first broke")
        for key in ("done", "broken"):
            assert (await record(rt, DbosWorkflowId, key)).generation == 1


@pytest.mark.parametrize("state", [ACTIVE, COMPLETED, FAILED])
async def test_an_inngest_duplicate_is_skipped_in_every_state(
    store_url: str, state: Status
) -> None:
    """Inngest: a repeat of the key runs nothing; its caller gets None; the actor is unchanged."""
    async with running(store_url, InngestIdempotency) as rt:
        first = await first_run(rt, InngestIdempotency, "k", state)
        before = await record(rt, InngestIdempotency, "k")
        duplicate = await rt.start(InngestIdempotency, "k", "second")
        assert (first.created, duplicate.created) == (True, False)
        assert await duplicate.reply() is None
        assert essence(await record(rt, InngestIdempotency, "k")) == essence(before)


async def test_an_inngest_key_runs_again_once_its_24_hours_have_passed(store_url: str) -> None:
    """Inngest: the key is remembered for 24 h (here from the end of the run), then freed."""
    clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with running(store_url, InngestIdempotency, clock=clock) as rt:
        await first_run(rt, InngestIdempotency, "k", COMPLETED)
        await clock.advance(timedelta(hours=23))
        inside = await rt.start(InngestIdempotency, "k", "second")
        assert (inside.created, await inside.reply()) == (False, None)
        await clock.advance(timedelta(hours=1, seconds=1))
        after = await rt.start(InngestIdempotency, "k", "third")
        assert (after.created, after.actor.generation) == (True, 2)
        assert await after.reply() == Started(label="third", generation=2)


@pytest.mark.parametrize("policy", [TerminateIfRunning, AllowDuplicate])
async def test_the_generation_a_policy_starts_keeps_the_duplicates_own_retention(
    store_url: str, policy: type[Task]
) -> None:
    """G6: ``start(..., retention=)`` holds for the generation its duplicate starts too."""
    async with running(store_url, policy) as rt:
        await first_run(rt, policy, "k", ACTIVE if policy is TerminateIfRunning else COMPLETED)
        duplicate = await rt.start(policy, "k", "second", retention=timedelta(minutes=5))
        assert await duplicate.reply() == Started(label="second", generation=2)
        current = await record(rt, policy, "k")
        assert (current.generation, current.retention) == (2, 300.0)
        again = await rt.start(policy, "k2", "first")
        await again.reply()
        assert (await record(rt, policy, "k2")).retention == policy.retention.total_seconds()
