"""A repeat of an idempotency key whose first message is dropped by the actor's driver.

A caller that repeats an idempotency key while the first message is still pending waits as a
follower of that message. Scenario: generation 1 of a supersede-on-duplicate entity is busy in
a blocking handler; a duplicate start is queued behind it, then ``ask(ping,
idempotency_key="X")`` twice (the second is the follower). The gate is released. The
supersede commits (generation 2); the commit of the ping turn fails once (injected
``StoreBusy``), so the actor resets, reloads generation 2 and drops the ping addressed to
generation 1. The follower must get the same answer as the first caller (here
``ActorNotFound``), not wait forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio

from actors import Context, Duplicate, Entity, Runtime, RuntimeConfig, handler
from persistence import (
    AdmitOutcome,
    EnqueueOutcome,
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

    @handler
    async def ping(self, ctx: Context) -> str:
        return "pong"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> str:
        return ctx.supersede()


class FailPingCommitOnce:
    """The real store, failing once a batch that commits a ping turn but no supersede."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ping_ids: set[int] = set()
        self.failed = 0

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        if (
            not self.failed
            and any(isinstance(i, TurnCommit) and i.consumed in self.ping_ids for i in items)
            and not any(isinstance(i, TurnCommit) and i.successor is not None for i in items)
        ):
            self.failed += 1
            raise StoreBusy("injected")
        out = await self.store.write(items, now=now)
        for o in out:
            if isinstance(o, AdmitOutcome | EnqueueOutcome):
                m = o.message
                if m is not None and m.handler == "ping":
                    self.ping_ids.add(m.id)
        return out

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_a_follower_of_a_dropped_message_gets_the_first_callers_answer(
    tmp_path: Path,
) -> None:
    """G5: a repeat of an idempotency key gets the same answer as the message it repeats."""
    global GATE
    GATE = anyio.Event()
    store = await open_store(f"sqlite:///{tmp_path / 'a.db'}")
    faulty = FailPingCommitOnce(store)
    answers: dict[str, object] = {}
    try:
        with anyio.fail_after(20):
            # One item per commit: the ping turn's commit is not the supersede's, whatever
            # the driver runs back to back.
            config = RuntimeConfig(max_batch=1)
            async with Runtime.open(faulty, entities=[Sup], config=config) as rt:  # type: ignore[arg-type]  # a Store by duck typing
                first = await rt.start(Sup, "k", "one")
                await first.reply()
                ref = rt.ref(Sup, "k")
                await ref.tell(Sup.block)
                dup = await rt.start(Sup, "k", "two")

                async def ask(name: str) -> None:
                    try:
                        with anyio.fail_after(3):
                            answers[name] = await ref.ask(Sup.ping, idempotency_key="X")
                    except Exception as exc:
                        answers[name] = exc

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask, "first")
                    await anyio.sleep(0.2)
                    tg.start_soon(ask, "follower")
                    await anyio.sleep(0.2)
                    GATE.set()
                await dup.reply()
                assert not rt._dispatcher._followers, "no follower is left registered"
    finally:
        await store.close()
    assert faulty.failed == 1
    assert type(answers["follower"]) is type(answers["first"]), answers
