"""Review of the multi-node runtime: a node that closes hands its actors over "at once"."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from actors import Runtime, RuntimeConfig
from tests.cluster.entities import Add, Counter
from tests.cluster.test_runtime_cluster import ENTITIES, nodes
from tests.postgres import fresh_schema_url

pytestmark = pytest.mark.anyio

CONFIG = RuntimeConfig(lease=timedelta(seconds=30))


async def test_mail_of_a_closing_node_runs_elsewhere_soon_after_it_leaves() -> None:
    """Mail of a node that closed waits for another node's safety poll.

    docs/multinode.md: "A node that closes releases all its leases at once" so that the
    others take over at once. b's ask, stored for a's actor and not yet run when a closes,
    is found only by b's safety poll (half a lease: 15 s here), since ``leave`` wakes no one.
    """
    async with fresh_schema_url("review") as url, nodes(url, "b", config=CONFIG) as (b,):
        got: list[int] = []
        async with anyio.create_task_group() as tg:
            async with Runtime.open(url, entities=ENTITIES, node_id="a", config=CONFIG) as a:
                assert await a.ref(Counter, "k").ask("add", Add(token="a")) == 1  # a owns k
                tg.start_soon(a.ref(Counter, "k").tell, "add", Add(token="slow", sleep=0.5))
                await anyio.sleep(0.1)  # a runs the slow turn

                async def ask() -> None:
                    got.append(await b.ref(Counter, "k").ask("add", Add(token="b")))

                tg.start_soon(ask)
                await anyio.sleep(0.2)  # stored for a, queued behind the slow turn
            # a closed: its leases are released
            with anyio.move_on_after(5):
                while not got:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert got, "b's message waited for b's safety poll"
