"""Callers waiting on acceptance when closing the runtime overruns ``close_timeout``.

A Counter runtime with a 0.2 s ``close_timeout`` runs on a file store whose writes then take
1 s each. Two callers (tasks outside the runtime block, as a server sharing the runtime would
be) wait on ``tell``: one whose message is in the write being committed, one whose message is
queued behind it, when the block is left. The writer cannot finish in time and is cancelled.
Each caller must still learn the outcome of its message, accepted or refused (e.g.
``RuntimeClosed``), instead of waiting forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import anyio

from actors import Runtime, RuntimeConfig
from persistence import Store, WriteItem, WriteOutcome, open_store
from tests.entities import Counter


class SlowWrites:
    """The real store, taking 1 s over every write once ``slow`` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.slow = False

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        if self.slow:
            await anyio.sleep(1.0)
        return await self.store.write(items, now=now)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_callers_waiting_on_acceptance_are_answered_when_closing_overruns_its_timeout(
    tmp_path: Path,
) -> None:
    """G4: a caller of tell learns whether its message was accepted, even if close times out."""
    store = await open_store(f"sqlite:///{tmp_path / 'a.db'}")
    slow = SlowWrites(store)
    outcome: dict[str, object] = {}
    config = RuntimeConfig(close_timeout=timedelta(seconds=0.2))
    try:
        with anyio.fail_after(30):
            async with (
                anyio.create_task_group() as outer,
                Runtime.open(slow, entities=[Counter], config=config) as rt,  # type: ignore[arg-type]  # a Store by duck typing
            ):
                ref = rt.ref(Counter, "k")
                await ref.tell(Counter.add, 1)
                slow.slow = True

                async def caller(name: str) -> None:
                    try:
                        with anyio.fail_after(5):
                            await ref.tell(Counter.add, 1)
                        outcome[name] = "accepted"
                    except TimeoutError:
                        outcome[name] = "HUNG"
                    except Exception as exc:
                        outcome[name] = exc

                outer.start_soon(caller, "in-commit")
                await anyio.sleep(0.1)
                outer.start_soon(caller, "queued")
                await anyio.sleep(0.1)
                # leaving the block closes the runtime while both callers still wait, then
                # waits for the callers
    finally:
        await store.close()
    assert "HUNG" not in outcome.values(), outcome
