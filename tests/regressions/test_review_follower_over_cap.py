"""A handler's ask that repeats the idempotency key of a message held back for room hangs.

An ask from a running turn gets in over ``max_active`` (``Dispatcher.deliver(over=...)``),
because the asking turn holds its activation while it waits. But when the ask repeats the
idempotency key of a message that is still unhandled, no message is delivered: the asker
becomes a follower of the first message, and that one may be waiting in ``_waiting`` for
room that only the asker's activation can free. Neither moves until an ask timeout.
"""

from __future__ import annotations

import anyio

from actors import Context, Entity, RuntimeConfig, handler
from tests.conftest import running


class Front(Entity):
    name = "front"

    @handler
    async def relay(self, ctx: Context) -> str:
        await anyio.sleep(0.1)  # meanwhile a caller asks the back with the same key
        return await ctx.ref(Back, "b").ask(Back.charge, "order-1", idempotency_key="order-1")


class Back(Entity):
    name = "back"

    @handler
    async def charge(self, ctx: Context, order: str) -> str:
        return f"charged {order}"


async def test_a_turn_following_a_held_back_message_is_answered(store_url: str) -> None:
    answers: list[str] = []

    async def outside() -> None:
        answers.append(
            await rt.ref(Back, "b").ask(Back.charge, "order-1", idempotency_key="order-1")
        )

    async def relay() -> None:
        answers.append(await rt.ref(Front, "f").ask(Front.relay))

    async with running(store_url, Front, Back, config=RuntimeConfig(max_active=1), limit=5) as rt:
        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(relay)
                await anyio.sleep(0.03)  # the front's turn holds the only slot
                tg.start_soon(outside)
        assert answers == ["charged order-1", "charged order-1"]
