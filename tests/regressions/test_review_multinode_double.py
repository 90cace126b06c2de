"""Review of the multi-node runtime: messages handled twice, or turns on stale state."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from actors import Runtime, RuntimeConfig
from persistence import ActorId
from tests.cluster.entities import Add, Counter
from tests.cluster.test_runtime_cluster import nodes
from tests.postgres import fresh_schema_url

pytestmark = pytest.mark.anyio


async def test_a_message_waiting_for_room_is_not_handled_twice_after_a_wake_up() -> None:
    """max_active=1 on node a: y's message waits for room (``Dispatcher._waiting``).

    A wake-up for y (b's tell: NOTIFY) makes ``Cluster._claim`` -> ``Dispatcher.claimed``
    add an activation over the cap that reads y's stored mailbox and runs both messages, the
    waiting one without its caller. The entry in ``_waiting`` stays; when y's activation goes
    idle it is passivated to make room for that entry, which gets an activation of its own
    (before the lease is released). The entry says ``created=True`` (a's ask created y), so
    ``_put`` makes the new activation ``fresh()``: y-a runs again on an empty state and its
    commit overwrites y-b's turn. Observed: the log is ["y-a"], y-b is lost.
    """
    config = RuntimeConfig(lease=timedelta(seconds=30), max_active=1)
    async with fresh_schema_url("review") as url, nodes(url, "a", "b", config=config) as (a, b):
        got: dict[str, object] = {}
        async with anyio.create_task_group() as tg:

            async def ask(key: str, token: str, sleep: float) -> None:
                try:
                    got[token] = await a.ref(Counter, key).ask("add", Add(token=token, sleep=sleep))
                except Exception as exc:  # recorded for the assert
                    got[token] = exc

            tg.start_soon(ask, "x", "x-slow", 1.0)  # x fills a's table
            await anyio.sleep(0.2)
            tg.start_soon(ask, "y", "y-a", 0.0)  # stored (a claims y), waits for room
            await anyio.sleep(0.2)
            # Wakes a for y; slow, so that y is still busy when x goes idle.
            await b.ref(Counter, "y").tell("add", Add(token="y-b", sleep=1.5))
            with anyio.move_on_after(10):
                while len(got) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        await anyio.sleep(0.5)
        state = await b.ref(Counter, "y").ask("snapshot")
        assert sorted(turn[2] for turn in state.log) == ["y-a", "y-b"]
        assert state.count == 2
        assert got == {"x-slow": 1, "y-a": 1}


async def test_a_waiting_message_is_not_handled_twice_after_the_safety_poll() -> None:
    """One node, max_active=1: the safety poll also runs a waiting message twice.

    ``_wake_idle_with_mail`` finds y's stored message (waiting for room in memory) and
    claims y: the same double run, with no other node.

    Here the first activation's lease was released before the second run, whose commit is
    fenced; the caller (parked in ``Cluster._pending``) then gets ActorNotFound from
    ``_unanswered`` although its message was handled (reply 1).
    """
    config = RuntimeConfig(lease=timedelta(seconds=1), max_active=1)
    async with fresh_schema_url("review") as url, nodes(url, "a", config=config) as (a,):
        got: dict[str, object] = {}
        async with anyio.create_task_group() as tg:

            async def ask(key: str, token: str, sleep: float) -> None:
                try:
                    got[token] = await a.ref(Counter, key).ask("add", Add(token=token, sleep=sleep))
                except Exception as exc:  # recorded for the assert
                    got[token] = exc

            tg.start_soon(ask, "x", "x-slow", 2.0)
            await anyio.sleep(0.3)
            tg.start_soon(ask, "y", "y-a", 0.0)
            with anyio.move_on_after(10):
                while len(got) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        await anyio.sleep(0.5)
        state = await a.ref(Counter, "y").ask("snapshot")
        assert [turn[2] for turn in state.log] == ["y-a"]
        assert got.get("y-a") == 1


async def test_a_lease_released_under_a_live_activation_does_not_lose_turns() -> None:
    """``Cluster._release`` looks for a new activation only before its statement.

    Node a passivates y; the release statement is slow (a busy pool: simulated by a delay).
    Meanwhile a's next ask activates y again (lease still held, epoch e1) and commits, so the
    release finds no mail and deletes the lease under a live activation. Node b then runs y
    (a new epoch), and releases it. a's next ask claims y with a new epoch, and ``deliver``
    only changes ``act.epoch`` (no ``loaded = False``): the turn runs on a's stale state,
    commits under the new epoch, and b's turn is lost.
    """
    config = RuntimeConfig(lease=timedelta(seconds=30), idle_timeout=timedelta(seconds=60))
    async with fresh_schema_url("review") as url, nodes(url, "a", "b", config=config) as (a, b):
        leases = a._cluster._leases  # type: ignore[union-attr]
        original = leases.release
        released = anyio.Event()

        async def slow_release(actor: ActorId, epoch: int) -> bool:
            await anyio.sleep(1.0)
            try:
                return await original(actor, epoch)
            finally:
                released.set()

        leases.release = slow_release  # type: ignore[method-assign]
        y = ActorId(entity="counter", key="y")

        async def passivate(rt: Runtime) -> None:
            await anyio.sleep(0.2)  # the driver has let go
            act = rt._dispatcher.activations.find(y)
            if act is not None and act.idle:  # (after the fix, a keeps y: b runs nothing)
                rt._dispatcher.passivate(act)

        assert await a.ref(Counter, "y").ask("add", Add(token="a1")) == 1
        await passivate(a)  # release under way (slow)
        assert await a.ref(Counter, "y").ask("add", Add(token="a2")) == 2
        with anyio.fail_after(5):
            await released.wait()
        leases.release = original  # type: ignore[method-assign]
        assert await b.ref(Counter, "y").ask("add", Add(token="b1")) == 3
        await passivate(b)
        await anyio.sleep(0.5)  # b's lease released
        assert await a.ref(Counter, "y").ask("add", Add(token="a3")) == 4
        state = await b.ref(Counter, "y").ask("snapshot")
        assert [turn[2] for turn in state.log] == ["a1", "a2", "b1", "a3"]
