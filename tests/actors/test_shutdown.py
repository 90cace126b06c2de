"""Graceful shutdown: leaving ``Runtime.open`` drains or abandons turns, and loses nothing.

Leaving the block stops new turns, lets commits already handed to the writer finish (within
``RuntimeConfig.close_timeout``), abandons turns still running (their messages stay stored and
run again after a restart) and answers every caller still waiting with ``RuntimeClosed`` (or
with its reply, if its commit made it). Close durations are checked only against generous
bounds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal

import anyio
import pytest

from actors import Context, Entity, RuntimeClosed, RuntimeConfig, handler
from persistence import ActorId, StoreBusy, TurnCommit
from tests.faults import FaultyStore, faulty_store, runtime_on, stored_state, until

Hang = Literal["no", "sleep", "swallow", "shield"]


@dataclass
class WorkState:
    count: int = 0
    seen: list[str] = field(default_factory=list)


class Worker(Entity):
    """``work`` records its token, then (while ``Worker.hang`` says so) takes its time."""

    name = "worker"
    state: WorkState
    hang: ClassVar[Hang] = "no"
    running: ClassVar[int] = 0  # turns of ``work`` that reached their wait

    @handler
    async def work(self, ctx: Context, token: str) -> int:
        self.state.count += 1
        self.state.seen.append(token)
        Worker.running += 1
        if Worker.hang == "sleep":
            await anyio.sleep(30)
        elif Worker.hang == "swallow":
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                await anyio.sleep(30)  # ignores the first cancellation
        elif Worker.hang == "shield":
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.5)
        return self.state.count

    @handler
    async def seen(self, ctx: Context) -> list[str]:
        return self.state.seen


KEY = ActorId(entity=Worker.name, key="w")


@pytest.fixture(autouse=True)
def _reset_worker() -> Iterator[None]:
    Worker.hang, Worker.running = "no", 0
    yield
    Worker.hang, Worker.running = "no", 0


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[FaultyStore]:
    async with faulty_store(f"sqlite:///{tmp_path / 'shutdown.db'}") as store:
        yield store


def _mail(store: FaultyStore, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await store.inner.load_mailbox(KEY)) == count

    return check


async def _seen_after_restart(store: FaultyStore) -> list[str]:
    store.clear()
    Worker.hang = "no"
    async with runtime_on(store, Worker) as rt:
        seen: list[str] = await rt.ref(Worker, "w").ask(Worker.seen)
    return seen


@pytest.mark.parametrize("hang", ["sleep", "swallow"])
async def test_leaving_mid_turn_abandons_it_and_it_reruns_once_after_restart(
    faulty: FaultyStore, hang: Hang
) -> None:
    """G3, G4: a running turn is cancelled, its callers told; it re-runs once on reopening."""
    config = RuntimeConfig(close_timeout=timedelta(seconds=1))
    outcomes: dict[str, object] = {}
    Worker.hang = hang
    async with anyio.create_task_group() as outer:
        async with runtime_on(faulty, Worker, config=config) as rt:
            ref = rt.ref(Worker, "w")

            async def call(token: str) -> None:
                try:
                    outcomes[token] = await ref.ask(Worker.work, token)
                except Exception as exc:
                    outcomes[token] = exc

            outer.start_soon(call, "running")
            await until(lambda: Worker.running == 1)
            outer.start_soon(call, "queued")
            await until(_mail(faulty, 2))  # both accepted
            left = time.monotonic()
        closed_in = time.monotonic() - left
    assert closed_in < 1 + 2
    assert all(isinstance(outcome, RuntimeClosed) for outcome in outcomes.values()), outcomes
    # Neither turn committed; both messages are still stored, in order.
    assert await stored_state(faulty.inner, KEY) in (None, {"count": 0, "seen": []})
    assert await _seen_after_restart(faulty) == ["running", "queued"]


async def test_a_handler_that_shields_itself_delays_close_but_loses_nothing(
    faulty: FaultyStore,
) -> None:
    """Cancellation cannot stop a shielded handler: close waits for it, then abandons its turn.

    (No runtime can preempt such a handler; what matters is that its message is not lost and
    not applied twice.)
    """
    config = RuntimeConfig(close_timeout=timedelta(milliseconds=200))
    Worker.hang = "shield"
    outcome: list[object] = []
    async with anyio.create_task_group() as outer:
        async with runtime_on(faulty, Worker, config=config) as rt:
            ref = rt.ref(Worker, "w")

            async def call() -> None:
                try:
                    outcome.append(await ref.ask(Worker.work, "shielded"))
                except Exception as exc:
                    outcome.append(exc)

            outer.start_soon(call)
            await until(lambda: Worker.running == 1)
            left = time.monotonic()
        closed_in = time.monotonic() - left
    assert closed_in < 0.5 + 0.2 + 2
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeClosed), outcome
    assert await _seen_after_restart(faulty) == ["shielded"]


async def test_leaving_while_commits_are_pending_drains_them(faulty: FaultyStore) -> None:
    """Turns already handed to the writer are committed on the way out; callers get replies."""
    config = RuntimeConfig(close_timeout=timedelta(seconds=5))
    tokens = [f"t{i}" for i in range(5)]
    replies: dict[str, object] = {}
    async with anyio.create_task_group() as outer:
        async with runtime_on(faulty, Worker, config=config) as rt:
            ref = rt.ref(Worker, "w")
            faulty.slow_writes(0.1, kinds={TurnCommit})

            async def call(token: str) -> None:
                try:
                    replies[token] = await ref.ask(Worker.work, token)
                except Exception as exc:
                    replies[token] = exc

            for token in tokens:
                await ref.tell(Worker.work, token)
            outer.start_soon(call, "asked")
            await until(lambda: faulty.writes_in_progress["TurnCommit"] > 0)
            left = time.monotonic()
        closed_in = time.monotonic() - left
    assert closed_in < 5 + 2
    # Every message is either committed or still stored: none lost, none doubled.
    state = await stored_state(faulty.inner, KEY)
    assert state is not None
    done = state["seen"]
    assert isinstance(done, list)
    assert done, "the commit in flight when the block was left was drained"
    left_over = [m.payload for m in await faulty.inner.load_mailbox(KEY)]
    everything = [*tokens, "asked"]
    assert [*done, *(p.decode().strip('"') for p in left_over)] == everything
    answer = replies["asked"]
    if "asked" in done:
        assert answer == len(everything)
    else:
        assert isinstance(answer, RuntimeClosed), answer
    assert await _seen_after_restart(faulty) == everything


@pytest.mark.parametrize("after", [False, True], ids=["slow-commit", "slow-answer"])
async def test_leaving_finishes_within_close_timeout_despite_a_slow_commit(
    faulty: FaultyStore, after: bool
) -> None:
    """A commit slower than close_timeout is cut off; its caller gets RuntimeClosed.

    Whether the transaction happened (slow answer) or not (slow commit), the message is
    applied exactly once in the end.
    """
    config = RuntimeConfig(close_timeout=timedelta(milliseconds=300))
    outcome: list[object] = []
    async with anyio.create_task_group() as outer:
        async with runtime_on(faulty, Worker, config=config) as rt:
            ref = rt.ref(Worker, "w")
            faulty.slow_writes(5.0, kinds={TurnCommit}, after=after)

            async def call() -> None:
                try:
                    outcome.append(await ref.ask(Worker.work, "slow"))
                except Exception as exc:
                    outcome.append(exc)

            outer.start_soon(call)
            await until(lambda: faulty.writes_in_progress["TurnCommit"] > 0)
            left = time.monotonic()
        closed_in = time.monotonic() - left
    assert closed_in < 0.3 + 2
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeClosed), outcome
    committed = await stored_state(faulty.inner, KEY)
    if after:
        assert committed == {"count": 1, "seen": ["slow"]}
    else:
        assert committed in (None, {"count": 0, "seen": []})
    assert await _seen_after_restart(faulty) == ["slow"]


async def test_callers_waiting_when_the_runtime_closes_get_runtime_closed(
    faulty: FaultyStore,
) -> None:
    """Asks, result() waits and calls made after close: all RuntimeClosed, none hangs."""
    Worker.hang = "sleep"
    outcomes: list[object] = []
    async with anyio.create_task_group() as outer, runtime_on(faulty, Worker) as rt:
        ref = rt.ref(Worker, "w")

        async def call(token: str) -> None:
            try:
                outcomes.append(await ref.ask(Worker.work, token))
            except Exception as exc:
                outcomes.append(exc)

        for token in ("a", "b", "c"):
            outer.start_soon(call, token)
        await until(_mail(faulty, 3))
    assert len(outcomes) == 3
    assert all(isinstance(outcome, RuntimeClosed) for outcome in outcomes), outcomes
    with pytest.raises(RuntimeClosed):
        await ref.ask(Worker.seen)
    assert sorted(await _seen_after_restart(faulty)) == ["a", "b", "c"]


async def test_leaving_while_the_writer_backs_off_from_a_busy_store(faulty: FaultyStore) -> None:
    """A commit being retried when the block is left is cut off at close_timeout; not lost."""
    config = RuntimeConfig(close_timeout=timedelta(milliseconds=200))
    outcome: list[object] = []
    faulty.fail_writes(None, error=StoreBusy, kinds={TurnCommit})
    async with anyio.create_task_group() as outer:
        async with runtime_on(faulty, Worker, config=config) as rt:
            ref = rt.ref(Worker, "w")

            async def call() -> None:
                try:
                    outcome.append(await ref.ask(Worker.work, "busy"))
                except Exception as exc:
                    outcome.append(exc)

            outer.start_soon(call)
            await until(lambda: faulty.injected["write"] >= 2)  # in the writer's backoff
            left = time.monotonic()
        closed_in = time.monotonic() - left
    assert closed_in < 0.2 + 2
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeClosed), outcome
    assert await _seen_after_restart(faulty) == ["busy"]
