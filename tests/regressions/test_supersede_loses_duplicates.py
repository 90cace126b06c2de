"""A duplicate start still pending when its generation is superseded, then a restart.

When a turn supersedes generation n, duplicates admitted to generation n and not yet handled
are forwarded (readmitted) to the next generation by a later commit. Scenario: generation 1
of an always-supersede entity is blocked; duplicates D1 and D2 are queued. The gate is
released; D1's turn commits (generation 2). D2's forward commit is made to fail (standing in
for a crash before it commits), the runtime closes (D2's caller is told ``RuntimeClosed``
"before this message was handled"), and a fresh runtime opens on the same file. D2 was
accepted, so it must still be in the store: it is recovered and handled, making
generation 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio

from actors import Context, Duplicate, Entity, Runtime, handler
from persistence import (
    ActorId,
    Store,
    StoreBusy,
    TurnCommit,
    WriteItem,
    WriteOutcome,
    open_store,
)

GATE: anyio.Event | None = None


class Sup(Entity):
    """Supersedes itself on every duplicate start; ``block`` waits for the test's gate."""

    name = "sup"

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        return label

    @handler
    async def block(self, ctx: Context) -> None:
        assert GATE is not None
        await GATE.wait()

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> str:
        return ctx.supersede()


class NoForward:
    """The real store, failing every write that would forward (readmit) a duplicate."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        if any(isinstance(i, TurnCommit) and i.readmit is not None for i in items):
            raise StoreBusy("injected: the forward never commits (crash window)")
        return await self.store.write(items, now=now)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_a_duplicate_pending_when_its_generation_is_superseded_survives_a_restart(
    tmp_path: Path,
) -> None:
    """G4: an accepted duplicate start survives a stop before it was forwarded."""
    global GATE
    GATE = anyio.Event()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = await open_store(url)
    try:
        with anyio.fail_after(20):
            async with Runtime.open(NoForward(store), entities=[Sup]) as rt:  # type: ignore[arg-type]  # a Store by duck typing
                first = await rt.start(Sup, "k", "one")
                await first.reply()
                await rt.ref(Sup, "k").tell(Sup.block)
                d1 = await rt.start(Sup, "k", "d1")
                d2 = await rt.start(Sup, "k", "d2")
                assert not d1.created
                assert not d2.created
                GATE.set()
                await anyio.sleep(0.3)
                # the stored mailbox while d2 is still queued in memory
                pending = await store.load_mailbox(ActorId(entity="sup", key="k"))
    finally:
        await store.close()
    with anyio.fail_after(20):
        async with Runtime.open(url, entities=[Sup]) as rt:
            await anyio.sleep(0.5)
            record = await rt._store.load_actor(ActorId(entity="sup", key="k"))
            assert record is not None, "the actor's record is gone"
            assert record.generation == 3, (
                f"the accepted duplicate d2 was lost: {record}; stored mailbox before the "
                f"restart: {pending}"
            )
