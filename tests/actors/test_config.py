"""RuntimeConfig and the virtual clock refuse nonsense with a clear error."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import Runtime, RuntimeConfig
from actors.testing import VirtualClock
from persistence import StoreInUse, open_store
from tests.entities import Counter


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_active": 0}, "max_active"),
        ({"purge_batch": 0}, "purge_batch"),
        ({"purge_interval": timedelta(0)}, "purge_interval"),
        ({"close_timeout": timedelta(seconds=-1)}, "close_timeout"),
        ({"ask_timeout": timedelta(0)}, "ask_timeout"),
        ({"lease": timedelta(0)}, "lease"),
        ({"lease": 10}, "lease"),
    ],
)
def test_runtime_config_refuses_values_out_of_range(options: dict[str, Any], message: str) -> None:
    """Each bad option is named in the error."""
    with pytest.raises(ValueError, match=message):
        RuntimeConfig(**options)


async def test_the_virtual_clock_only_moves_forward() -> None:
    """advance() refuses a negative step; sleep(0) returns at once."""
    clock = VirtualClock()
    before = clock.now()
    with pytest.raises(ValueError, match="forward"):
        await clock.advance(timedelta(seconds=-1))
    await clock.sleep(0)
    await clock.advance(timedelta(seconds=5))
    assert clock.now() == before + 5


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "node_id", "message"),
    [
        ("sqlite:///:memory:", "node-1", "several nodes share"),
        ("sqlite:///:memory:", "", "node_id must be"),
        ("sqlite:///:memory:", "a b", "node_id must be"),
        ("sqlite:///:memory:", "x" * 101, "node_id must be"),
    ],
)
async def test_a_node_id_is_refused_where_it_cannot_apply(
    url: str, node_id: str, message: str
) -> None:
    """node_id names a node of a shared store: a bad one, or one on SQLite, is refused."""
    with pytest.raises(ValueError, match=message):
        async with Runtime.open(url, entities=[Counter], node_id=node_id):
            pass


@pytest.mark.anyio
async def test_a_second_runtime_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    """Two would run the same actors at once; namespaces in one process share one store."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    async with Runtime.open(url, entities=[Counter]) as first:
        with pytest.raises(StoreInUse, match="already open in a runtime's store"):
            async with Runtime.open(url, entities=[Counter], namespace="other"):
                pass
        assert await first.ref(Counter, "c").ask(Counter.add, 2) == 2
    store = await open_store(url)
    try:
        async with (
            Runtime.open(store, entities=[Counter], namespace="a") as a,
            Runtime.open(store, entities=[Counter], namespace="b") as b,
        ):
            assert await a.ref(Counter, "c").ask(Counter.add, 1) == 1
            assert await b.ref(Counter, "c").ask(Counter.add, 5) == 5
    finally:
        await store.close()
