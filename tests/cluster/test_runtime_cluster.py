"""G1, G2, G3, G7 across nodes, in one process: two or three runtimes share one PostgreSQL schema.

Each runtime is a node with a session of its own, so what crosses nodes here crosses the
store exactly as between processes: messages and replies go through the database, wake-ups
through LISTEN/NOTIFY. A lost session is simulated by expiring it in the database, which is
what a node sees when it was paused past its lease.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import anyio
import pytest

from actors import (
    Context,
    Duplicate,
    Entity,
    HandlerFailed,
    Runtime,
    RuntimeConfig,
    handler,
)
from persistence import (
    ActorId,
    ActorInit,
    Enqueue,
    EnqueueOutcome,
    Leases,
    MessageKind,
    NewMessage,
    open_store,
)
from tests.cluster.entities import Add, Counter
from tests.postgres import expire_session, fresh_schema_url

pytestmark = pytest.mark.anyio

LIMIT = 60.0
CONFIG = RuntimeConfig(lease=timedelta(seconds=30))


class Task(Entity):
    """Active until told to finish; its result is what ``finish`` says."""

    name = "task"
    result: str

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        return f"began {label} on {ctx.node_id}"

    @handler
    async def finish(self, ctx: Context, result: str) -> None:
        ctx.complete(result)

    @handler
    async def explode(self, ctx: Context) -> None:
        raise ValueError("boom")


class Shift(Entity):
    """A duplicate start replaces the running generation (supersede)."""

    name = "shift"

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        return f"{label}@{ctx.generation}"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> str:
        return ctx.supersede()


ENTITIES = (Counter, Task, Shift)


@asynccontextmanager
async def nodes(
    url: str, *names: str, config: RuntimeConfig = CONFIG
) -> AsyncIterator[list[Runtime]]:
    async with AsyncExitStack() as stack:
        runtimes = [
            await stack.enter_async_context(
                Runtime.open(url, entities=ENTITIES, node_id=name, config=config)
            )
            for name in names
        ]
        yield runtimes


async def test_asks_and_tells_reach_an_actor_owned_by_another_node() -> None:
    """G2, G3: node b's asks run on node a, which owns the actor; replies cross the store."""
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "a", "b") as (a, b):
            assert await a.ref(Counter, "k").ask("add", Add(token="a1")) == 1
            assert (await b.ref(Counter, "k").ask("owner"))[0] == "a"
            await b.ref(Counter, "k").tell("add", Add(token="b1"))
            assert await b.ref(Counter, "k").ask("add", Add(token="b2")) == 3
            state = await b.ref(Counter, "k").ask("snapshot")
            assert [turn[2] for turn in state.log] == ["a1", "b1", "b2"]
            assert {turn[0] for turn in state.log} == {"a"}


async def test_errors_cross_nodes_as_they_are_raised_locally() -> None:
    """A handler's failure and an ended actor's refusal reach a caller on another node."""
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "a", "b") as (a, b):
            await a.start(Task, "t", "x")
            with pytest.raises(HandlerFailed) as failed:
                await b.ref(Task, "t").ask("explode")
            assert failed.value.error_type == "ValueError"
            assert failed.value.error_message == "boom"
            await b.ref(Task, "t").ask("finish", "done")
            assert await b.ref(Task, "t").result() == "done"


async def test_a_duplicate_start_on_another_node_adopts_the_result() -> None:
    """G1 across nodes: one creator; a duplicate elsewhere gets the actor's result."""
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "a", "b") as (a, b):
            first = await a.start(Task, "t", "x")
            again = await b.start(Task, "t", "y")
            assert (first.created, again.created) == (True, False)
            assert await first.reply() == "began x on a"
            waiting = b.ref(Task, "t")
            async with anyio.create_task_group() as tg:
                results: list[str] = []

                async def result() -> None:
                    results.append(await waiting.result())

                tg.start_soon(result)
                await anyio.sleep(0.2)
                await a.ref(Task, "t").tell("finish", "all done")
            assert results == ["all done"]
            assert await again.reply() == "all done"


async def test_a_superseding_duplicate_from_another_node_gets_the_new_start_reply() -> None:
    """The duplicate's message goes on as the next generation's start; its reply follows."""
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "a", "b") as (a, b):
            first = await a.start(Shift, "s", "one")
            assert await first.reply() == "one@1"
            second = await b.start(Shift, "s", "two")
            assert second.created is False
            assert await second.reply() == "two@2"


async def test_a_node_whose_session_expired_is_fenced_and_rejoins() -> None:
    """G7: the paused node's in-flight turn is refused; the new owner runs it once."""
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "a", "b") as (a, b):
            assert await a.ref(Counter, "k").ask("add", Add(token="first")) == 1
            async with anyio.create_task_group() as tg:
                slow: list[int] = []

                async def slow_add() -> None:
                    slow.append(await a.ref(Counter, "k").ask("add", Add(token="slow", sleep=1.0)))

                tg.start_soon(slow_add)
                await anyio.sleep(0.3)  # a runs the slow turn now
                await expire_session(url, "a")
                # b takes the actor over (a's session is not live) and runs its mail:
                # the slow message (unconsumed) and this one.
                assert await b.ref(Counter, "k").ask("add", Add(token="b")) in (2, 3)
            state = await b.ref(Counter, "k").ask("snapshot")
            tokens = [turn[2] for turn in state.log]
            assert sorted(tokens) == ["b", "first", "slow"]
            assert [turn[0] for turn in state.log] == ["a", "b", "b"]
            assert slow[0] in (2, 3)
            epochs = [turn[1] for turn in state.log]
            assert epochs == sorted(epochs)
            assert epochs[0] < epochs[1]
            # a noticed, dropped the actor and joined anew: it still works.
            a._cluster.check_session()  # type: ignore[union-attr]
            with anyio.fail_after(10):
                while a._cluster.lost_sessions == 0:  # type: ignore[union-attr]  # noqa: ASYNC110  # no event to wait on
                    await anyio.sleep(0.05)
            assert await a.ref(Counter, "k").ask("add", Add(token="after")) == 4


async def test_a_leaving_node_hands_its_actors_over_at_once() -> None:
    """A node that closes releases its leases: the next message claims the actor elsewhere."""
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "b") as (b,):
            async with nodes(url, "a") as (a,):
                assert await a.ref(Counter, "k").ask("add", Add(token="a")) == 1
                assert (await b.ref(Counter, "k").ask("owner"))[0] == "a"
            assert await b.ref(Counter, "k").ask("add", Add(token="b")) == 2
            assert (await b.ref(Counter, "k").ask("owner"))[0] == "b"


async def test_a_passivated_actor_is_released_and_claimed_by_its_next_sender() -> None:
    """An idle actor's lease goes with its activation: any node may run it next."""
    config = RuntimeConfig(lease=timedelta(seconds=30), idle_timeout=timedelta(seconds=0.2))
    with anyio.fail_after(LIMIT):
        async with (
            fresh_schema_url("cluster") as url,
            nodes(url, "a", "b", config=config) as (
                a,
                b,
            ),
        ):
            assert await a.ref(Counter, "k").ask("add", Add(token="a")) == 1
            await anyio.sleep(1.0)  # passivated, lease released
            assert await b.ref(Counter, "k").ask("add", Add(token="b")) == 2
            assert (await b.ref(Counter, "k").ask("owner"))[0] == "b"


async def test_concurrent_starts_of_one_key_on_three_nodes_create_it_once() -> None:
    """G1: of 300 concurrent starts spread over three nodes, exactly one creates."""
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "a", "b", "c") as runtimes:
            created: list[bool] = []

            async def start(rt: Runtime, n: int) -> None:
                handle = await rt.start(Task, "once", f"s{n}")
                created.append(handle.created)

            async with anyio.create_task_group() as tg:
                for n in range(300):
                    tg.start_soon(start, runtimes[n % 3], n)
            assert created.count(True) == 1
            assert len(created) == 300


async def test_mail_whose_wake_up_was_lost_is_found_by_the_safety_poll() -> None:
    """A message stored without a wake-up (a dropped connection) still runs, within a lease."""
    config = RuntimeConfig(lease=timedelta(seconds=1))
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url, nodes(url, "a", config=config) as (a,):
            assert await a.ref(Counter, "k").ask("add", Add(token="first")) == 1
            silent = await open_store(url)  # no session: it wakes nobody
            try:
                await silent.write(
                    [
                        Enqueue(
                            actor=ActorId(entity="counter", key="k"),
                            message=NewMessage(
                                kind=MessageKind.TELL, handler="add", payload=b'{"token":"quiet"}'
                            ),
                        )
                    ],
                    now=a.clock.now(),
                )
            finally:
                await silent.close()
            with anyio.fail_after(5):
                while (await a.ref(Counter, "k").ask("snapshot")).count < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            state = await a.ref(Counter, "k").ask("snapshot")
            assert [turn[2] for turn in state.log] == ["first", "quiet"]


async def test_a_message_that_keeps_stopping_its_nodes_is_buried_when_taken_over() -> None:
    """Suspects across nodes: takeover counts attempts at the heads, as a restart does."""
    config = RuntimeConfig(lease=timedelta(seconds=30), max_attempts=3)
    counter = ActorId(entity="counter", key="k")
    with anyio.fail_after(LIMIT):
        async with fresh_schema_url("cluster") as url:
            # Nodes that ran the first of the actor's two messages and stopped, three times
            # (three recorded attempts); the last one's session expires.
            dead = await open_store(url)
            try:
                assert isinstance(dead, Leases)
                await dead.join("dead", lease=30.0, listener=lambda _: None)
                stored = await dead.write(
                    [
                        Enqueue(
                            actor=counter,
                            init=ActorInit(retention=60.0),
                            message=NewMessage(
                                kind=MessageKind.TELL,
                                handler="add",
                                payload=f'{{"token":"{token}"}}'.encode(),
                            ),
                        )
                        for token in ("poison", "fine")
                    ],
                    now=1.0,
                )
                poison = stored[0]
                assert isinstance(poison, EnqueueOutcome)
                assert poison.message is not None
                for _ in range(3):
                    await dead.record_attempts([poison.message.id])
                await expire_session(url, "dead")
            finally:
                await dead.close()
            async with nodes(url, "b", config=config) as (b,):
                # b takes the actor over as it opens: a fourth attempt is one too many.
                state = await b.ref(Counter, "k").ask("snapshot")
                assert [turn[2] for turn in state.log] == ["fine"]
                [buried] = await b.dead_letters()
                assert buried.id == poison.message.id
