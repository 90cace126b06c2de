"""Found in review: a handler that caught its timeout's cancellation was committed as a success."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from actors import Context, Entity, HandlerFailed, handler
from tests.conftest import running


class Stubborn(Entity):
    name = "stubborn"
    state: int

    @handler(timeout=timedelta(milliseconds=50))
    async def hold(self, ctx: Context) -> str:
        self.state = 1
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class():
            return "caught it"  # swallows the cancellation
        return "slept"

    @handler
    async def get(self, ctx: Context) -> int:
        return self.state or 0


async def test_a_handler_that_swallows_its_timeout_still_times_out(store_url: str) -> None:
    async with running(store_url, Stubborn) as rt:
        ref = rt.ref(Stubborn, "s")
        with pytest.raises(HandlerFailed) as caught:
            await ref.ask(Stubborn.hold)
        assert caught.value.error_type == "HandlerTimeout"
        assert await ref.ask(Stubborn.get) == 0  # nothing it did was kept
