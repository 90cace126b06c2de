"""The deadlock guard refuses an ask that would be answered, once the asker's ask timed out.

A's turn asks B with a timeout and, when it times out, goes on with other work. B's message
still carries A's link (``Link.done`` turns True only when A's whole turn ends), so when B's
handler asks A, ``_deadlock.waiters`` raises ``DeadlockDetected``. But A no longer waits on
B: B's ask would simply be answered once A's turn ends. (The same stale chain also lets B's
turn pass the suspect gate as if it were part of A's turn.)
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from actors import AskTimeout, Context, DeadlockDetected, Entity, handler
from tests.conftest import running
from tests.faults import until

ANSWERS: list[str] = []  # what b's turn got from its ask of a


class Peer(Entity):
    name = "peer"

    @handler
    async def impatient(self, ctx: Context, other: str) -> str:
        try:
            return await ctx.ref(Peer, other).ask(
                Peer.slow, ctx.key, timeout=timedelta(seconds=0.05)
            )
        except AskTimeout:
            await anyio.sleep(0.3)  # a fallback; this turn no longer waits on the other
            return "fell back"

    @handler
    async def slow(self, ctx: Context, asker: str) -> str:
        await anyio.sleep(0.1)  # the asker has timed out by now
        try:
            answer = await ctx.ref(Peer, asker).ask(Peer.ping)
        except DeadlockDetected as exc:
            answer = f"DeadlockDetected: {exc}"
        ANSWERS.append(answer)
        return answer

    @handler
    async def ping(self, ctx: Context) -> str:
        return "pong"


async def test_an_ask_after_the_askers_ask_timed_out_is_not_a_deadlock(store_url: str) -> None:
    ANSWERS.clear()
    async with running(store_url, Peer, limit=5) as rt:
        assert await rt.ref(Peer, "a").ask(Peer.impatient, "b") == "fell back"
        # b's ask of a only had to wait for a's turn (the fallback) to end.
        await until(lambda: len(ANSWERS) == 1, timeout=2)
        assert ANSWERS == ["pong"]
