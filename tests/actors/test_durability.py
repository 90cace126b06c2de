"""Durable acceptance across restarts (guarantee 4), in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors import RuntimeClosed
from persistence import Durability, open_store
from persistence.sqlite import SQLiteStore
from tests.conftest import running
from tests.entities import Counter, Job


async def test_messages_accepted_before_close_are_handled_exactly_once_after_reopen(
    file_url: str,
) -> None:
    """G4: close with mail still queued; after reopen every message ran exactly once."""
    tokens = [f"m{i}" for i in range(200)]
    async with running(file_url, Counter) as rt:
        ref = rt.ref(Counter, "durable")
        for token in tokens:
            await ref.tell(Counter.slow_record, token)
        # Leave at once: most of those 200 slow turns have not run yet.
    async with running(file_url, Counter) as rt:
        seen = await rt.ref(Counter, "durable").ask(Counter.seen)
    assert seen == tokens, "each accepted message handled exactly once, in order"


async def test_state_results_and_status_survive_a_restart(file_url: str) -> None:
    """G4: everything committed is there after reopening the file."""
    async with running(file_url, Counter, Job) as rt:
        await rt.ref(Counter, "c").ask(Counter.add, 41)
        h = await rt.start(Job, "j", "x")
        await h.actor.ask(Job.finish, "kept")
    async with running(file_url, Counter, Job) as rt:
        assert await rt.ref(Counter, "c").ask(Counter.add, 1) == 42
        assert await rt.ref(Job, "j").result() == "kept"
        late = await rt.start(Job, "j", "y")
        assert late.created is False
        assert await late.reply() == "kept"


async def test_calls_after_close_raise_runtime_closed(store_url: str) -> None:
    """A closed runtime refuses work with RuntimeClosed."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "x")
    with pytest.raises(RuntimeClosed):
        await ref.ask(Counter.get)


async def test_an_error_inside_the_runtime_block_surfaces_as_itself(store_url: str) -> None:
    """The caller's own exception is not wrapped in exception groups by the runtime."""

    class Boom(Exception):
        pass

    # The raise must happen inside the runtime block: that is what is under test.
    with pytest.raises(Boom, match="mine"):  # noqa: PT012
        async with running(store_url, Counter) as rt:
            await rt.ref(Counter, "x").ask(Counter.add, 1)
            raise Boom("mine")


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("process", 1)])
async def test_durability_sets_how_sqlite_syncs(
    file_url: str, durability: Durability, synchronous: int
) -> None:
    """``full`` syncs every commit to disk (FULL), ``process`` leaves it to the OS (NORMAL)."""
    store = await open_store(file_url, durability=durability)
    try:
        assert isinstance(store, SQLiteStore)
        level = await store.run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        assert level == synchronous
    finally:
        await store.close()


async def test_a_bad_durability_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    """Bad input: a clear error, and no database file is created."""
    path = tmp_path / "never.db"
    with pytest.raises(ValueError, match="durability must be 'full' or 'process', got 'FULL'"):
        await open_store(f"sqlite:///{path}", durability="FULL")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="durability must be 'full' or 'process'"):
        async with running(f"sqlite:///{path}", Counter, durability="fast"):
            pass
    assert not path.exists()


async def test_durability_is_for_a_store_url_not_an_open_store(file_url: str) -> None:
    """An open store keeps the durability it was opened with."""
    store = await open_store(file_url)
    try:
        with pytest.raises(ValueError, match="applies to a store URL"):
            async with running(store, Counter, durability="process"):  # type: ignore[arg-type]
                pass
    finally:
        await store.close()
