"""The deadlock guard: asks that could never be answered fail at once, with the cycle."""

from __future__ import annotations

import pytest

from actors import Context, DeadlockDetected, Entity, HandlerFailed, RuntimeConfig, handler
from tests.conftest import running


class Node(Entity):
    """Asks the next actor of a route; the last one answers."""

    name = "node"

    @handler
    async def route(self, ctx: Context, path: list[str]) -> str:
        if not path:
            return ctx.key
        answer = await ctx.ref(Node, path[0]).ask(Node.route, path[1:])
        return f"{ctx.key}>{answer}"

    @handler
    async def guarded(self, ctx: Context, target: str) -> str:
        """Asks ``target`` to ask back; reports the guard's error as its answer."""
        try:
            return await ctx.ref(Node, target).ask(Node.route, [ctx.key])
        except HandlerFailed as exc:
            return f"{exc.error_type}: {exc.error_message}"

    @handler
    async def own_result(self, ctx: Context) -> str:
        try:
            await ctx.ref(Node, ctx.key).result()
        except DeadlockDetected as exc:
            return str(exc)
        return "no error"


async def test_an_actor_asking_itself_gets_a_clear_error(store_url: str) -> None:
    async with running(store_url, Node) as rt:
        with pytest.raises(HandlerFailed) as caught:
            await rt.ref(Node, "a").ask(Node.route, ["a"])
        assert caught.value.error_type == "DeadlockDetected"
        assert "node/a -> node/a" in caught.value.error_message
        # The actor stays usable.
        assert await rt.ref(Node, "a").ask(Node.route, []) == "a"


async def test_a_cycle_of_asks_fails_at_the_actor_that_closes_it(store_url: str) -> None:
    async with running(store_url, Node) as rt:
        with pytest.raises(HandlerFailed) as caught:
            await rt.ref(Node, "a").ask(Node.route, ["b", "c", "a"])
        assert caught.value.error_type == "DeadlockDetected"
        assert "node/a -> node/b -> node/c -> node/a" in caught.value.error_message
        # The same actors, in a chain that does not come back, answer.
        assert await rt.ref(Node, "a").ask(Node.route, ["b", "c"]) == "a>b>c"


async def test_the_asker_can_handle_the_error_and_go_on(store_url: str) -> None:
    async with running(store_url, Node) as rt:
        answer = await rt.ref(Node, "a").ask(Node.guarded, "b")
        assert answer.startswith("DeadlockDetected: ask route on node/a would wait forever")


async def test_waiting_for_ones_own_result_is_refused(store_url: str) -> None:
    async with running(store_url, Node) as rt:
        answer = await rt.ref(Node, "a").ask(Node.own_result)
        assert "result on node/a would wait forever" in answer


async def test_asks_from_outside_any_turn_are_not_limited(store_url: str) -> None:
    """Two callers asking the same actor, or an actor asked again after its ask ended, pass."""
    async with running(store_url, Node) as rt:
        assert await rt.ref(Node, "a").ask(Node.route, ["b"]) == "a>b"
        assert await rt.ref(Node, "b").ask(Node.route, ["a"]) == "b>a"


async def test_nested_asks_get_in_even_when_every_activation_is_busy(store_url: str) -> None:
    """With max_active=2, a->b->c->d needs four activations at once: the asked ones get in."""
    config = RuntimeConfig(max_active=2)
    async with running(store_url, Node, config=config) as rt:
        assert await rt.ref(Node, "a").ask(Node.route, ["b", "c", "d"]) == "a>b>c>d"
        stats = rt.statistics()
        assert stats.peak_activations == 4
        # Outside any turn the cap holds again: idle ones make room for new ones.
        for key in ("e", "f", "g"):
            assert await rt.ref(Node, key).ask(Node.route, []) == key
        assert rt.statistics().activations <= 4
