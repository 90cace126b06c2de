"""Backpressure: bounded mailboxes and in-flight work; past them a retryable Overloaded."""

from __future__ import annotations

from collections import defaultdict

import anyio
import pytest

from actors import Context, Entity, Overloaded, Runtime, RuntimeConfig, handler
from tests.conftest import running

# Gates the tests open to let blocked handlers finish, by actor key.
GATES: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)


class Sink(Entity):
    """Counts messages; ``block`` waits until the test opens the actor's gate."""

    name = "sink"
    state: int

    @handler(start=True)
    async def block(self, ctx: Context) -> None:
        await GATES[ctx.key].wait()

    @handler
    async def add(self, ctx: Context) -> None:
        self.state = (self.state or 0) + 1

    @handler
    async def count(self, ctx: Context) -> int:
        return self.state or 0


@pytest.fixture(autouse=True)
def fresh_gates() -> None:
    GATES.clear()


async def wait_until_quiet(rt: Runtime) -> None:
    """Until every accepted message has been handled."""
    while rt.statistics().queued:  # noqa: ASYNC110  # no event says so: poll the counter
        await anyio.sleep(0.01)


async def test_a_full_mailbox_refuses_more_and_stores_nothing(store_url: str) -> None:
    async with running(store_url, Sink, config=RuntimeConfig(max_mailbox=5)) as rt:
        ref = rt.ref(Sink, "s")
        await ref.tell(Sink.block)  # runs, and holds the actor until the gate opens
        accepted = 0
        refused: list[Overloaded] = []
        for _ in range(20):
            try:
                await ref.tell(Sink.add)
                accepted += 1
            except Overloaded as exc:
                refused.append(exc)
        assert accepted == 5
        assert len(refused) == 15
        assert refused[0].retryable is True
        assert "sink/s has 5 messages not yet handled (max_mailbox 5)" in str(refused[0])
        # Other actors are not affected.
        await rt.ref(Sink, "other").tell(Sink.add)
        GATES["s"].set()
        await wait_until_quiet(rt)
        assert await ref.ask(Sink.count) == 5  # the refused ones were never stored
        await ref.tell(Sink.add)  # room again
        assert await ref.ask(Sink.count) == 6


async def test_concurrent_callers_cannot_overshoot_the_mailbox(store_url: str) -> None:
    """Callers racing in one commit are counted before they are stored."""
    async with running(store_url, Sink, config=RuntimeConfig(max_mailbox=100)) as rt:
        ref = rt.ref(Sink, "s")
        await ref.tell(Sink.block)
        outcomes: list[bool] = []

        async def send() -> None:
            try:
                await ref.tell(Sink.add)
                outcomes.append(True)
            except Overloaded:
                outcomes.append(False)

        async with anyio.create_task_group() as tg:
            for _ in range(2000):
                tg.start_soon(send)
        assert outcomes.count(True) == 100
        assert rt.statistics().queued == 101  # the blocked one, and the hundred waiting
        GATES["s"].set()
        await wait_until_quiet(rt)
        assert await ref.ask(Sink.count) == 100


async def test_the_runtime_bounds_its_work_in_flight(store_url: str) -> None:
    async with running(store_url, Sink, config=RuntimeConfig(max_in_flight=10)) as rt:
        for i in range(10):
            await rt.start(Sink, f"k{i}")  # each start blocks its actor
        with pytest.raises(Overloaded, match=r"holds 10 messages .*max_in_flight 10"):
            await rt.start(Sink, "one-more")
        with pytest.raises(Overloaded):
            await rt.ref(Sink, "k0").tell(Sink.add)
        for i in range(10):
            GATES[f"k{i}"].set()
        await wait_until_quiet(rt)
        assert rt.statistics().queued == 0
        handle = await rt.start(Sink, "one-more")
        assert handle.created
