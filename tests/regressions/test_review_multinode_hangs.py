"""Review of the multi-node runtime: callers that are never answered.

In-process nodes on one fresh PostgreSQL schema (see tests/cluster/test_runtime_cluster.py).
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from actors import Runtime, RuntimeClosed, RuntimeConfig
from tests.cluster.entities import Add, Counter
from tests.cluster.test_runtime_cluster import ENTITIES, nodes
from tests.postgres import expire_session, fresh_schema_url

pytestmark = pytest.mark.anyio

CONFIG = RuntimeConfig(lease=timedelta(seconds=30))


async def test_caller_of_a_turn_running_when_the_session_is_lost_gets_its_reply() -> None:
    """The node loses its session during a slow turn, rejoins and takes its actor back.

    The new activation reads the still-unconsumed message from the store while the old
    activation is still running it: the caller's envelope is not in ``_pending`` yet, so the
    re-run has no caller; the old turn is then fenced and puts its caller in ``_pending``,
    where no reply ever comes (the reply_to session is this node's own).
    """
    async with fresh_schema_url("review") as url, nodes(url, "a") as (a,):
        assert await a.ref(Counter, "k").ask("add", Add(token="first")) == 1
        got: list[int] = []
        async with anyio.create_task_group() as tg:

            async def slow() -> None:
                got.append(await a.ref(Counter, "k").ask("add", Add(token="slow", sleep=1.0)))

            tg.start_soon(slow)
            await anyio.sleep(0.3)  # the slow turn runs on a
            await expire_session(url, "a")
            a._cluster.check_session()  # type: ignore[union-attr]  # a notices now
            with anyio.move_on_after(10):
                while not got:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert got == [2]
        state = await a.ref(Counter, "k").ask("snapshot")
        assert [turn[2] for turn in state.log] == ["first", "slow"]


async def test_a_repeat_of_an_idempotency_key_from_another_node_is_answered() -> None:
    """Two callers on node b send one idempotency key while node a handles the first.

    The repeat is a follower (``Dispatcher._followers``) on b, but b's callers are answered
    from the ``replies`` table (``Cluster._answer``), which never looks at followers: the
    repeat waits forever (and the follower entry leaks).
    """
    async with fresh_schema_url("review") as url, nodes(url, "a", "b") as (a, b):
        assert await a.ref(Counter, "k").ask("add", Add(token="first")) == 1  # a owns k
        got: list[int] = []
        async with anyio.create_task_group() as tg:

            async def ask(token: str) -> None:
                got.append(
                    await b.ref(Counter, "k").ask(
                        "add", Add(token="same", sleep=0.5), idempotency_key="K"
                    )
                )

            tg.start_soon(ask, "one")
            await anyio.sleep(0.2)  # stored, running on a
            tg.start_soon(ask, "two")
            with anyio.move_on_after(10):
                while len(got) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()  # the repeat is still waiting: stop it
        assert got == [2, 2]


async def test_a_repeat_on_another_node_than_the_first_caller_is_answered() -> None:
    """The first caller is on the owner a; the repeat with the same key on b waits forever.

    (Fixed: b's safety poll finds the reply kept for the key; a short lease makes it quick.)
    """
    config = RuntimeConfig(lease=timedelta(seconds=2))
    async with fresh_schema_url("review") as url, nodes(url, "a", "b", config=config) as (a, b):
        assert await a.ref(Counter, "k").ask("add", Add(token="first")) == 1  # a owns k
        got: list[int] = []
        async with anyio.create_task_group() as tg:

            async def ask(rt: Runtime, token: str) -> None:
                got.append(
                    await rt.ref(Counter, "k").ask(
                        "add", Add(token="same", sleep=0.5), idempotency_key="K"
                    )
                )

            tg.start_soon(ask, a, "one")
            await anyio.sleep(0.2)
            tg.start_soon(ask, b, "two")
            with anyio.move_on_after(10):
                while len(got) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()  # the repeat is still waiting: stop it
        assert got == [2, 2]


async def test_closing_a_node_fails_its_callers_waiting_on_other_nodes() -> None:
    """A caller on b waits for a reply from a when b closes: it should get RuntimeClosed.

    ``Dispatcher.abandon`` fails mailboxes, waiters, followers and adopters, but not the
    callers in ``Cluster._pending``: they wait forever (single node: RuntimeClosed).
    """
    async with fresh_schema_url("review") as url, nodes(url, "a") as (a,):
        assert await a.ref(Counter, "k").ask("add", Add(token="first")) == 1  # a owns k
        outcome: list[object] = []
        async with anyio.create_task_group() as tg:
            async with Runtime.open(url, entities=ENTITIES, node_id="b", config=CONFIG) as b:

                async def ask() -> None:
                    try:
                        outcome.append(
                            await b.ref(Counter, "k").ask("add", Add(token="b", sleep=3.0))
                        )
                    except Exception as exc:  # recorded for the assert
                        outcome.append(exc)

                tg.start_soon(ask)
                await anyio.sleep(0.5)  # stored; a is running it
            # b is closed now
            with anyio.move_on_after(2):
                while not outcome:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert outcome, "the caller was never answered"
        assert isinstance(outcome[0], RuntimeClosed)
