"""Serialization: one turn at a time per actor, in mailbox order (guarantee 2)."""

from __future__ import annotations

from collections import defaultdict

import anyio

from actors import Context, Entity, handler
from tests.conftest import running
from tests.entities import Counter


async def test_concurrent_asks_across_ten_keys_are_serialized_per_key(store_url: str) -> None:
    """G2: 2,000 concurrent add(1) over 10 keys: each ends at 200, replies 1..200 per key."""
    replies: defaultdict[str, list[int]] = defaultdict(list)
    async with running(store_url, Counter) as rt:

        async def add(key: str) -> None:
            replies[key].append(await rt.ref(Counter, key).ask(Counter.add, 1))

        async with anyio.create_task_group() as tg:
            for i in range(2000):
                tg.start_soon(add, f"key-{i % 10}")
        finals = {key: await rt.ref(Counter, key).ask(Counter.get) for key in replies}
    assert finals == {f"key-{i}": 200 for i in range(10)}
    for key, values in replies.items():
        assert sorted(values) == list(range(1, 201)), key


class Overlap(Entity):
    name = "overlap"
    running = 0
    most = 0

    @handler
    async def work(self, ctx: Context) -> None:
        Overlap.running += 1
        Overlap.most = max(Overlap.most, Overlap.running)
        await anyio.sleep(0.001)
        Overlap.running -= 1


async def test_turns_of_one_actor_never_overlap(store_url: str) -> None:
    """G2: a handler that awaits still never runs concurrently with its actor's next turn."""
    Overlap.running = Overlap.most = 0
    async with running(store_url, Overlap) as rt:
        ref = rt.ref(Overlap, "one")
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(ref.ask, Overlap.work)
    assert Overlap.most == 1


async def test_messages_from_one_sender_are_handled_in_the_order_sent(store_url: str) -> None:
    """G2: mailbox order is acceptance order."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "ordered")
        tokens = [f"t{i}" for i in range(300)]
        for token in tokens:
            await ref.tell(Counter.record, token)
        assert await ref.ask(Counter.seen) == tokens


async def test_different_actors_run_concurrently(store_url: str) -> None:
    """Serialization is per actor: slow turns of many actors overlap in time."""
    Overlap.running = Overlap.most = 0
    async with running(store_url, Overlap) as rt, anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(rt.ref(Overlap, f"k{i}").ask, Overlap.work)
    assert Overlap.most > 1
