"""Store failures at the contract boundary: callers learn, actors reset, nothing is doubled."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import pytest

from actors import Runtime, StorageError
from persistence import (
    Enqueue,
    ForwardingStore,
    Store,
    StoreBusy,
    TurnCommit,
    WriteItem,
    WriteOutcome,
    open_store,
)
from tests.entities import Counter


class FailingWrites(ForwardingStore):
    """The real store, failing the next ``times`` writes whose items match ``when``."""

    def __init__(self, store: Store, when: Callable[[WriteItem], bool], times: int) -> None:
        super().__init__(store)
        self.when = when
        self.times = times
        self.failed = 0

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        if self.failed < self.times and any(self.when(item) for item in items):
            self.failed += 1
            raise StoreBusy("injected: database is locked")
        return await self.inner.write(items, now=now)


async def test_a_failed_enqueue_reaches_the_caller_and_stores_nothing(store_url: str) -> None:
    """G4: a message the store did not accept is reported, not silently dropped."""
    store = await open_store(store_url)
    # One failure, then the writer's three retries with backoff: the caller is told.
    faulty = FailingWrites(store, lambda item: isinstance(item, Enqueue), times=4)
    try:
        with anyio.fail_after(30):
            async with Runtime.open(faulty, entities=[Counter]) as rt:
                ref = rt.ref(Counter, "k")
                with pytest.raises(StorageError, match="locked") as caught:
                    await ref.ask(Counter.add, 1)
                assert caught.value.retryable is True
                assert await store.load_actor(ref._id) is None
                assert await ref.ask(Counter.add, 1) == 1
    finally:
        await store.close()


async def test_failed_turn_commits_rerun_the_turns_exactly_once(store_url: str) -> None:
    """G3: a turn whose commit failed is re-run from committed state; no effect is doubled."""
    store = await open_store(store_url)
    faulty = FailingWrites(store, lambda item: isinstance(item, TurnCommit), times=3)
    replies: list[int] = []
    try:
        with anyio.fail_after(30):
            async with Runtime.open(faulty, entities=[Counter]) as rt:
                ref = rt.ref(Counter, "k")

                async def add() -> None:
                    replies.append(await ref.ask(Counter.add, 1))

                async with anyio.create_task_group() as tg:
                    for _ in range(20):
                        tg.start_soon(add)
                assert await ref.ask(Counter.get) == 20
                record = await store.load_actor(ref._id)
    finally:
        await store.close()
    assert faulty.failed == 3
    assert sorted(replies) == list(range(1, 21))
    assert record is not None
    assert record.state is not None
    assert b'"value":20' in record.state


async def test_transient_write_failures_are_retried_before_the_caller_hears(
    store_url: str,
) -> None:
    """A retryable failure is retried with backoff: three in a row cost only time."""
    store = await open_store(store_url)
    faulty = FailingWrites(store, lambda item: isinstance(item, Enqueue), times=3)
    try:
        with anyio.fail_after(30):
            async with Runtime.open(faulty, entities=[Counter]) as rt:
                assert await rt.ref(Counter, "k").ask(Counter.add, 1) == 1
                assert faulty.failed == 3
    finally:
        await store.close()
