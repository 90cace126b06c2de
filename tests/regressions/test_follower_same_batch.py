"""A repeat of an idempotency key written in the same batch as the turn consuming the first.

A turn that consumes an idempotency-keyed message without storing a reply (the actor has
completed, so the message is answered ``ActorCompleted``) may be committed in the same write
batch as a repeat of that key, which the store then answers as a repeat of the consumed
message. Scenario: a Job is busy in a blocking handler with ``finish`` (which completes it)
and ``ask(label, idempotency_key="X")`` queued behind it; the writer is slowed on the
completing commit so that the X turn and the repeated ``ask(X)`` land in the next batch
together. The repeat must get the same answer as the first caller, not wait forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio

from actors import Context, Entity, Runtime, handler
from persistence import Store, TurnCommit, WriteItem, WriteOutcome, open_store

GATE: anyio.Event | None = None


class Job(Entity):
    """Completes on ``finish``; ``block`` waits for the test's gate."""

    name = "job2"
    result: str

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        return label

    @handler
    async def block(self, ctx: Context) -> None:
        assert GATE is not None
        await GATE.wait()

    @handler
    async def finish(self, ctx: Context, out: str) -> None:
        await anyio.sleep(0.05)  # the writer takes the previous commit alone
        ctx.complete(out)

    @handler
    async def label(self, ctx: Context) -> str:
        return "label"


class Spy:
    """The real store, recording each batch's item types and slowing completing commits."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batches: list[list[str]] = []

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        if any(isinstance(i, TurnCommit) and i.completion is not None for i in items):
            await anyio.sleep(0.3)
        self.batches.append([type(i).__name__ for i in items])
        return await self.store.write(items, now=now)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_a_repeat_written_in_the_same_batch_as_its_first_message_gets_the_same_answer(
    tmp_path: Path,
) -> None:
    """G5: a repeat of an idempotency key gets the same answer as the message it repeats."""
    global GATE
    GATE = anyio.Event()
    store = await open_store(f"sqlite:///{tmp_path / 'a.db'}")
    spy = Spy(store)
    answers: dict[str, object] = {}
    try:
        with anyio.fail_after(20):
            async with Runtime.open(spy, entities=[Job]) as rt:  # type: ignore[arg-type]  # a Store by duck typing
                h = await rt.start(Job, "k", "one")
                await h.reply()
                ref = rt.ref(Job, "k")
                await ref.tell(Job.block)
                await ref.tell(Job.finish, "done")

                async def ask(name: str) -> None:
                    try:
                        with anyio.fail_after(3):
                            answers[name] = await ref.ask(Job.label, idempotency_key="X")
                    except Exception as exc:
                        answers[name] = exc

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask, "first")
                    await anyio.sleep(0.1)
                    GATE.set()
                    await anyio.sleep(0.15)  # finish commit is in the slow write; X turn queued
                    tg.start_soon(ask, "repeat")
                recent_batches = spy.batches[-3:]
    finally:
        await store.close()
    assert type(answers["repeat"]) is type(answers["first"]), (answers, recent_batches)
