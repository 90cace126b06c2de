"""Suspect messages (at the head of their mailbox at two restarts) run alone, in process."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from actors import Context, Entity, RuntimeConfig, handler
from actors._solo import WAIT, Solo
from persistence import ActorId, ActorInit, Enqueue, MessageKind, NewMessage, open_store
from tests.conftest import running

RUNNING: list[str] = []  # keys whose handler is running now
SEEN: dict[str, list[str]] = {}  # for each key, who else was running while it ran
ATTEMPTS: dict[str, int] = {}  # the stored attempts of the suspect's message, as it ran


class Worker(Entity):
    name = "worker"

    @handler
    async def work(self, ctx: Context, seconds: float) -> None:
        if not seconds:
            return  # the test's asks, after the stored messages
        RUNNING.append(ctx.key)
        try:
            if ctx.key == "suspect":
                store = ctx._rt._store  # a peek at what is stored while the turn runs
                head, *_ = await store.load_mailbox(ActorId(entity="worker", key="suspect"))
                ATTEMPTS[ctx.key] = head.attempts
            SEEN[ctx.key] = [key for key in RUNNING if key != ctx.key]
            await anyio.sleep(seconds)
            SEEN[ctx.key] += [key for key in RUNNING if key != ctx.key]
        finally:
            RUNNING.remove(ctx.key)


async def test_a_suspect_runs_alone_with_its_attempt_recorded_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'suspects.db'}"
    store = await open_store(url)
    try:
        writes = [
            Enqueue(
                actor=ActorId(entity="worker", key=key),
                message=NewMessage(kind=MessageKind.TELL, handler="work", payload=b"0.05"),
                init=ActorInit(retention=60.0),
            )
            for key in ("suspect", *(f"w{i}" for i in range(6)))
        ]
        outcomes = await store.write(writes, now=time.time())
        suspect_id = outcomes[0].message.id  # type: ignore[union-attr]  # an EnqueueOutcome
        # A restart found it at the head once already: the next one makes it a suspect.
        await store.record_attempts([suspect_id])
    finally:
        await store.close()
    SEEN.clear()
    ATTEMPTS.clear()
    async with running(url, Worker, config=RuntimeConfig(max_attempts=5)) as rt:
        for key in ("suspect", *(f"w{i}" for i in range(6))):
            await rt.ref(Worker, key).ask(Worker.work, 0.0)  # after the stored one
    assert SEEN["suspect"] == []  # nobody ran beside it
    assert ATTEMPTS["suspect"] == 2  # recorded before it ran
    assert any(SEEN[f"w{i}"] for i in range(6))  # the others ran side by side


async def test_ordinary_turns_wait_while_a_suspect_runs() -> None:
    solo = Solo()
    order: list[str] = []
    await solo.enter_alone()

    async def ordinary() -> None:
        await solo.enter()
        order.append("ordinary")
        solo.leave()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ordinary)
        await anyio.sleep(0.01)
        order.append("suspect done")
        solo.leave_alone()
    assert order == ["suspect done", "ordinary"]


async def test_a_suspect_waits_for_running_turns_at_most_a_while() -> None:
    solo = Solo()
    await solo.enter()  # an ordinary turn that never ends (it waits on the suspect, say)
    began = time.monotonic()
    with anyio.fail_after(WAIT + 5):
        await solo.enter_alone()
    assert time.monotonic() - began >= WAIT * 0.9
    solo.leave_alone()
    solo.leave()
    assert (solo.running, solo.pending) == (0, 0)


async def test_a_suspect_cancelled_while_waiting_lets_the_others_go() -> None:
    solo = Solo()
    await solo.enter()
    with anyio.move_on_after(0.05):
        await solo.enter_alone()
    assert solo.pending == 0
    solo.leave()
    with anyio.fail_after(1):
        await solo.enter()  # not held up by the cancelled suspect
    solo.leave()
