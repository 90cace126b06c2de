"""A duplicate that adopts its generation's end, committed after that generation expired.

Scenario: a duplicate start is stored for generation 1, whose ``on_duplicate`` waits on the
actor's end (``reply_on_completion``) but is slow. Meanwhile generation 1 completes with
retention 0 (so it expires at once) and a tell creates generation 2. The duplicate's turn
then commits as not applied: its generation is gone from the store. The runtime still knows
how generation 1 ended, and the caller must get that, not ``ActorNotFound``.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from actors import Context, Duplicate, Entity, handler
from tests.conftest import running


class SlowAdopter(Entity):
    """Adopts its own end on every duplicate, after a pause."""

    name = "slow_adopter"

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        return label

    @handler
    async def finish(self, ctx: Context, out: str) -> None:
        ctx.complete(out)

    @handler
    async def ping(self, ctx: Context) -> None:
        return None

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> str:
        await anyio.sleep(0.3)
        return ctx.reply_on_completion()


async def test_an_adopter_learns_how_its_generation_ended_after_it_expired(
    store_url: str,
) -> None:
    """G5/G6: a duplicate that adopts generation 1 gets its result, though it expired."""
    async with running(store_url, SlowAdopter) as rt:
        first = await rt.start(SlowAdopter, "k", "a", retention=timedelta(0))
        await first.reply()
        await rt.ref(SlowAdopter, "k").tell(SlowAdopter.finish, "done")
        dup = await rt.start(SlowAdopter, "k", "b")  # stored for generation 1
        assert (dup.created, dup.actor.generation) == (False, 1)
        await anyio.sleep(0.1)  # generation 1 has ended and, with retention 0, expired
        await rt.ref(SlowAdopter, "k").tell(SlowAdopter.ping)  # creates generation 2
        assert await dup.reply() == "done"
