"""Callers waiting on acceptance while the runtime's own task is cancelled during its exit.

A Counter runtime on a file store whose enqueue writes are slowed is opened under a cancel
scope that expires while two callers (tasks outside the runtime block) wait on ``tell``: one
whose message is in the write being committed, one whose message is queued behind it. The
writer is cancelled together with the host. Each caller must still learn the outcome of its
message, accepted or refused (e.g. ``RuntimeClosed``), instead of waiting forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio

from actors import Runtime
from persistence import Enqueue, Store, WriteItem, WriteOutcome, open_store
from tests.entities import Counter


class SlowWrites:
    """The real store, taking 2 s over any write that enqueues, once ``slow`` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.slow = False

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        if self.slow and any(isinstance(item, Enqueue) for item in items):
            await anyio.sleep(2.0)
        return await self.store.write(items, now=now)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_callers_waiting_on_acceptance_are_answered_when_the_runtime_exit_is_cancelled(
    tmp_path: Path,
) -> None:
    """G4: a caller of tell learns whether its message was accepted, even if exit is cancelled."""
    store = await open_store(f"sqlite:///{tmp_path / 'a.db'}")
    slow = SlowWrites(store)
    outcome: dict[str, object] = {}
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as outer:
                with anyio.move_on_after(0.5):
                    async with Runtime.open(slow, entities=[Counter]) as rt:  # type: ignore[arg-type]  # a Store by duck typing
                        ref = rt.ref(Counter, "k")
                        await ref.tell(Counter.add, 1)
                        await anyio.sleep(0.1)
                        slow.slow = True

                        async def caller(name: str) -> None:
                            try:
                                with anyio.fail_after(4):
                                    await ref.tell(Counter.add, 1)
                                outcome[name] = "accepted"
                            except TimeoutError:
                                outcome[name] = "HUNG"
                            except Exception as exc:
                                outcome[name] = exc

                        outer.start_soon(caller, "in-commit")
                        await anyio.sleep(0.1)
                        outer.start_soon(caller, "queued")
                        await anyio.sleep(10)
    finally:
        await store.close()
    assert "HUNG" not in outcome.values(), outcome
