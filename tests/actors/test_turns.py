"""Atomic turns and the output gate (guarantee 3)."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

import anyio
import pytest
import structlog

from actors import Context, Entity, HandlerFailed, InvalidPayload, Runtime, UnknownHandler, handler
from persistence import ActorId, Store, WriteItem, WriteOutcome, open_store
from tests.conftest import running
from tests.entities import Counter


async def test_a_handler_that_raises_changes_nothing_and_names_itself(store_url: str) -> None:
    """G3: state, attributes and outgoing messages of a failed turn are discarded."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "c")
        assert await ref.ask(Counter.add, 2) == 2
        with pytest.raises(HandlerFailed) as caught:
            await ref.ask(Counter.add_then_fail, 5)
        assert caught.value.handler == "add_then_fail"
        assert caught.value.error_type == "ValueError"
        assert caught.value.error_message == "refusing to add 5"
        assert "add_then_fail" in str(caught.value)
        assert "ValueError" in str(caught.value)
        assert await ref.ask(Counter.get) == 2, "in-memory state was rolled back"
        record = await rt._store.load_actor(ActorId(entity="counter", key="c"))
        peer = await rt._store.load_actor(ActorId(entity="counter", key="c-peer"))
    assert record is not None
    assert record.attributes == {"parity": "even"}
    assert peer is None, "the failed turn's outgoing message was never sent"


async def test_messages_sent_in_a_turn_are_delivered_exactly_once(store_url: str) -> None:
    """G3: actor-to-actor messages are committed with the turn that sends them."""
    async with running(store_url, Counter) as rt:
        source = rt.ref(Counter, "source")
        for _ in range(20):
            await source.ask(Counter.forward, "sink")
        # Each forward's reply came after its commit, which stored its tell to the sink; so
        # all 20 tells are in the sink's mailbox ahead of this ask (G2: mailbox order).
        assert await rt.ref(Counter, "sink").ask(Counter.get) == 20


class _SlowCommits:
    """The real store, with commits held until a test releases them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.release = anyio.Event()
        self.writing = anyio.Event()

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        if any(getattr(item, "consumed", None) for item in items):
            self.writing.set()
            await self.release.wait()
        return await self.store.write(items, now=now)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_a_reply_is_released_only_after_its_turn_commits(store_url: str) -> None:
    """G3 output gate: no reply before commit; after the reply, the store has the turn."""
    store = await open_store(store_url)
    slow = _SlowCommits(store)
    try:
        async with Runtime.open(slow, entities=[Counter]) as rt:  # type: ignore[arg-type]  # a Store by duck typing
            ref = rt.ref(Counter, "gated")
            replies: list[int] = []

            async def ask() -> None:
                replies.append(await ref.ask(Counter.add, 4))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask)
                    await slow.writing.wait()
                    await anyio.sleep(0.05)
                    assert replies == [], "the reply waits for the commit"
                    assert (await store.load_actor(ref._id)).state is None  # type: ignore[union-attr]
                    slow.release.set()
            assert replies == [4]
            record = await store.load_actor(ref._id)
            assert record is not None
            assert record.state is not None
            assert b'"value":4' in record.state
    finally:
        await store.close()


async def test_a_payload_that_does_not_fit_is_rejected_before_anything_is_stored(
    store_url: str,
) -> None:
    """Bad input gets a clear error naming handler and types; the store is untouched."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "typed")
        with pytest.raises(InvalidPayload, match=r"payload of counter\.add does not fit int"):
            await ref.ask(Counter.add, "five")  # type: ignore[arg-type]  # the point of the test
        with pytest.raises(InvalidPayload, match="no payload"):
            await ref.ask("get", 1)
        with pytest.raises(InvalidPayload, match="no payload was given"):
            await ref.ask("add")
        with pytest.raises(InvalidPayload, match="unsupported"):
            await ref.tell("record", object())
        with pytest.raises(UnknownHandler, match="no handler 'nope'"):
            await ref.ask("nope")
        assert await rt._store.load_actor(ref._id) is None
        assert await rt._store.actors_with_mail(after=None, limit=10) == []


async def test_handlers_can_be_named_by_string(store_url: str) -> None:
    """Handlers may be referred to by name as well as by method."""
    async with running(store_url, Counter) as rt:
        assert await rt.ref(Counter, "s").ask("add", 9) == 9


async def test_a_reply_or_state_that_breaks_its_declared_type_fails_the_turn(
    store_url: str,
) -> None:
    """A turn whose reply or state would not decode later is refused whole."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "strict")
        await ref.ask(Counter.add, 1)
        with pytest.raises(HandlerFailed, match=r"reply of counter\.wrong_reply"):
            await ref.ask(Counter.wrong_reply)
        with pytest.raises(HandlerFailed, match="state of counter/strict"):
            await ref.ask(Counter.corrupt_state)
        assert await ref.ask(Counter.add, 1) == 2


async def test_state_and_attributes_are_persisted_after_every_turn(store_url: str) -> None:
    """State and attributes reach the store with each turn."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "p")
        await ref.ask(Counter.add, 3)
        record = await rt._store.load_actor(ref._id)
    assert record is not None
    assert record.attributes == {"parity": "odd"}
    assert record.state is not None
    assert b'"value":3' in record.state


_TENANT: ContextVar[str | None] = ContextVar("test_tenant", default=None)


class Tenanted(Entity):
    """Handlers that leave a context variable and a log binding set, and read them."""

    name = "tenanted"

    @handler
    async def enter(self, ctx: Context, tenant: str) -> None:
        _TENANT.set(tenant)  # never reset: the handler's task keeps it
        structlog.contextvars.bind_contextvars(tenant=tenant)

    @handler
    async def look(self, ctx: Context) -> list[str | None]:
        bound = structlog.contextvars.get_contextvars().get("tenant")
        return [_TENANT.get(), bound]


async def test_context_variables_a_handler_leaves_set_never_reach_another_actor(
    store_url: str,
) -> None:
    """Driver tasks are reused across actors; one whose context a handler changed is not.

    Actor a's handler sets a context variable and a log binding and does not reset them.
    Actor b's turns, run after a's driver has finished, must not see either.
    """
    async with running(store_url, Tenanted) as rt:
        for n in range(20):
            await rt.ref(Tenanted, f"a{n}").ask(Tenanted.enter, f"tenant-{n}")
            assert await rt.ref(Tenanted, f"b{n}").ask(Tenanted.look) == [None, None]
