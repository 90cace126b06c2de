"""Found by the stateful test: a ref bound to an old generation reached the new one.

A repeated idempotency key was looked up before the ref's generation was checked, so the
old ref got the new generation's stored reply (and a tell was accepted); and ``cancel``
through the old ref answered ``False`` (already ended) when the new generation had ended.
A ref bound to generation 1 never reaches generation 2: it raises ``ActorNotFound``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actors import ActorNotFound, Context, Entity, handler
from actors.testing import VirtualClock
from tests.conftest import running


class Acc(Entity):
    name = "acc"
    retention = timedelta(minutes=5)

    @handler(start=True)
    async def open(self, ctx: Context) -> None:
        return None

    @handler
    async def close(self, ctx: Context) -> None:
        ctx.complete(None)

    @handler
    async def which(self, ctx: Context) -> int:
        return ctx.generation


async def test_an_old_ref_never_reaches_the_next_generation(store_url: str) -> None:
    clock = VirtualClock(datetime(2026, 3, 1, tzinfo=UTC))
    async with running(store_url, Acc, clock=clock) as rt:
        first = await rt.start(Acc, "k")
        await first.actor.ask(Acc.close)
        await clock.advance(timedelta(minutes=5))  # generation 1 is purged
        current = rt.ref(Acc, "k")
        assert await current.ask(Acc.which, idempotency_key="i0") == 2
        with pytest.raises(ActorNotFound):
            await first.actor.ask(Acc.which, idempotency_key="i0")
        with pytest.raises(ActorNotFound):
            await first.actor.tell(Acc.which, idempotency_key="i0")
        assert await current.cancel() is True
        with pytest.raises(ActorNotFound):
            await first.actor.cancel()
        assert await current.cancel() is False  # the current one had already ended
