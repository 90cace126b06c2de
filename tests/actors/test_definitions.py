"""Entity definitions, keys and attributes: bad input gets a clear error."""

from __future__ import annotations

from datetime import datetime

import pytest

from actors import (
    Context,
    Entity,
    InvalidEntity,
    InvalidKey,
    Runtime,
    UnknownEntity,
    UnknownHandler,
    handler,
)
from actors._entity import entity_spec
from tests.conftest import running
from tests.entities import ChargeRequest, Counter, Payment


class NoName(Entity):
    @handler
    async def h(self, ctx: Context) -> None: ...


class NoHandlers(Entity):
    name = "nohandlers"


class SyncHandler(Entity):
    name = "sync"

    @handler  # a sync handler: the point of the test
    def h(self, ctx: Context) -> None: ...


class Unannotated(Entity):
    name = "unannotated"

    @handler
    async def h(self, ctx: Context, payload):  # type: ignore[no-untyped-def]  # the point
        ...


class TwoHandlers(Entity):
    name = "two"

    @handler
    async def a(self, ctx: Context) -> None: ...

    @handler
    async def b(self, ctx: Context) -> None: ...


class NeedsArgs:
    def __init__(self, x: int) -> None:
        self.x = x


class BadState(Entity):
    name = "badstate"
    state: NeedsArgs

    @handler
    async def h(self, ctx: Context) -> None: ...


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        (NoName, "name must be a string"),
        (NoHandlers, "no @handler methods"),
        (SyncHandler, "must be an async def"),
        (Unannotated, "annotate the payload"),
        (BadState, "constructible without arguments"),
    ],
)
async def test_malformed_entities_are_refused_at_open(
    entity: type[Entity], message: str, store_url: str
) -> None:
    """An entity the runtime cannot run is refused when the runtime opens."""
    with pytest.raises(InvalidEntity, match=message):
        async with Runtime.open(store_url, entities=[entity]):
            pass


async def test_two_entities_may_not_share_a_name(store_url: str) -> None:
    """Entity names are key namespaces, so they must be unique."""

    class Other(Entity):
        name = "counter"

        @handler
        async def h(self, ctx: Context) -> None: ...

    with pytest.raises(InvalidEntity, match="used by both"):
        async with Runtime.open(store_url, entities=[Counter, Other]):
            pass


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "empty"), ("a\x00b", "control"), ("x" * 513, "at most 512"), (7, "must be a str")],
)
async def test_bad_keys_are_refused(key: object, message: str, store_url: str) -> None:
    """Keys that cannot be stored faithfully are refused with a reason."""
    async with running(store_url, Counter) as rt:
        with pytest.raises(InvalidKey, match=message):
            rt.ref(Counter, key)  # type: ignore[arg-type]  # 7 is the point


async def test_unknown_entities_and_start_handlers_are_refused(store_url: str) -> None:
    """Starting an entity the runtime does not host, or without a start handler, is refused."""
    async with running(store_url, Counter, TwoHandlers) as rt:
        with pytest.raises(UnknownEntity, match="Payment"):
            await rt.start(Payment, "k", ChargeRequest(amount=1))
        with pytest.raises(UnknownHandler, match="none is marked"):
            await rt.start(TwoHandlers, "k")
        h = await rt.start(TwoHandlers, "k", handler=TwoHandlers.b)
        assert h.created


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"bad name": 1}, "identifiers"),
        ({"when": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"x": [1]}, "not an attribute type"),
        ({"x": float("nan")}, "finite"),
        ({"x": 2**70}, "64 bits"),
        ({f"a{i}": i for i in range(65)}, "at most 64"),
    ],
)
async def test_bad_attributes_are_refused_before_anything_is_stored(
    attributes: dict[str, object], message: str, store_url: str
) -> None:
    """Attributes out of bounds get a clear error and store nothing."""
    async with running(store_url, Payment) as rt:
        with pytest.raises(ValueError, match=message):
            await rt.start(Payment, "attr", ChargeRequest(amount=1), attributes=attributes)
        assert await rt._store.load_actor(rt.ref(Payment, "attr")._id) is None


def test_a_handler_may_be_named_by_the_method_bound_to_an_instance() -> None:
    """``self.h`` inside a handler names ``h`` as ``Entity.h`` does; another class's does not."""

    class Bell(Entity):
        name = "bell"

        @handler
        async def ring(self, ctx: Context) -> None:
            pass

    class Gong(Entity):
        name = "gong"

        @handler
        async def ring(self, ctx: Context) -> None:
            pass

    spec = entity_spec(Bell)
    assert spec.handler(Bell().ring) is spec.handler(Bell.ring)
    with pytest.raises(UnknownHandler, match="entity 'bell' has no handler 'ring'"):
        spec.handler(Gong().ring)
