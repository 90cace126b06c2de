"""Review of the multi-node runtime: dropping activations while their hooks run."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from actors import Context, Entity, Runtime, RuntimeConfig, handler
from tests.postgres import expire_session, fresh_schema_url

pytestmark = pytest.mark.anyio


class Slow(Entity):
    """Counts; its on_passivate hook takes a while."""

    name = "slowpass"
    state: int

    @handler
    async def add(self, ctx: Context) -> int:
        self.state += 1
        return self.state

    async def on_passivate(self, key: str) -> None:
        await anyio.sleep(1.0)


async def test_a_session_lost_during_on_passivate_leaves_the_node_working() -> None:
    """A session lost while an on_passivate hook runs crashes the node (KeyError).

    ``drop_all`` drops an activation whose on_passivate hook runs (not ``running``): it is
    removed from the table then. When the hook ends, ``_run_passivate`` calls ``_dropped``,
    which removes it again (``ActivationTable.remove``: ``del _table[id]`` -> KeyError, or,
    if a new activation of the key came meanwhile, removes that one instead).
    """
    config = RuntimeConfig(lease=timedelta(seconds=30), idle_timeout=timedelta(seconds=0.2))
    async with (
        fresh_schema_url("review") as url,
        Runtime.open(url, entities=[Slow], node_id="a", config=config) as a,
    ):
        assert await a.ref(Slow, "k").ask("add") == 1
        with anyio.fail_after(5):
            while not any(act.passivating for act in a._dispatcher.activations.values()):  # noqa: ASYNC110
                await anyio.sleep(0.02)
        await expire_session(url, "a")
        a._cluster.check_session()  # type: ignore[union-attr]
        with anyio.fail_after(5):
            while a._cluster.lost_sessions == 0:  # type: ignore[union-attr]  # noqa: ASYNC110
                await anyio.sleep(0.02)
        await anyio.sleep(1.5)  # the hook ends
        assert await a.ref(Slow, "k").ask("add") == 2
