"""Overload and bad input: every entry point refuses bad input with a clear error, storing nothing.

Each table lists bad inputs for one kind of entry point, with the error each must raise and text
its message must hold (naming what was wrong). Calls run on real SQLite (a file and in memory);
after each refusal the test checks that nothing reached the store. Cases marked as known gaps
(expected failures) name the module whose owner must close them.
"""

# One case per line reads as a table; the tables sit between `fmt: off` and `fmt: on`.
# ruff: noqa: E501

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest

from actors import (
    NO_PAYLOAD,
    ActorFailed,
    ActorNotFound,
    Context,
    Duplicate,
    Entity,
    HandlerFailed,
    InvalidEntity,
    InvalidKey,
    InvalidPayload,
    InvalidQuery,
    Runtime,
    RuntimeConfig,
    Status,
    UnknownEntity,
    UnknownHandler,
    handler,
)
from actors._context import MAX_ERROR_MESSAGE
from persistence.errors import InvalidStoreUrl
from tests.conftest import running

MIB = 1024 * 1024
BIG = "x" * MIB  # 1 MiB + 2 bytes once encoded (the quotes): just over the default limit
NAN = float("nan")
SMALL = RuntimeConfig(max_payload=100)


@dataclass
class Order:
    amount: int
    note: str = ""


class Shop(Entity):
    """Starts with an order; takes payloads of several types."""

    name = "shop"

    @handler(start=True)
    async def place(self, ctx: Context, order: Order) -> int:
        return order.amount

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        return amount

    @handler
    async def measure(self, ctx: Context, value: float) -> float:
        return value

    @handler
    async def anything(self, ctx: Context, value: Any) -> None:
        pass

    @handler
    async def text(self, ctx: Context, value: str) -> int:
        return len(value)

    @handler
    async def ping(self, ctx: Context) -> None:
        pass


class Typed(Entity):
    """Declares its attributes."""

    name = "typed"
    attribute_types: ClassVar[Mapping[str, type]] = {"customer": str, "amount": int}

    @handler
    async def open(self, ctx: Context, order: Order) -> None:
        pass


class Unmarked(Entity):
    """Two handlers and no start handler: start() needs handler=."""

    name = "unmarked"

    @handler
    async def a(self, ctx: Context) -> None:
        pass

    @handler
    async def b(self, ctx: Context) -> None:
        pass


class Unregistered(Entity):
    """Never passed to Runtime.open."""

    name = "unregistered"

    @handler
    async def h(self, ctx: Context) -> None:
        pass


class Sentinel(Entity):
    """A message to it, after a refused call, flushes whatever that call might have submitted."""

    name = "sentinel"

    @handler
    async def ping(self, ctx: Context) -> None:
        pass


ENTITIES = (Shop, Typed, Unmarked, Sentinel)


def shop(rt: Runtime) -> Any:
    """The ref most calls address (typed Any: the tables misuse it on purpose)."""
    return rt.ref(Shop, "k")


async def flush(rt: Runtime) -> None:
    """Wait until anything submitted before is committed: the writer commits in order."""
    await rt.ref(Sentinel, "flush").ask(Sentinel.ping)


async def refused(
    url: str,
    call: Callable[[Any], Awaitable[object]],
    error: type[Exception],
    text: str,
    config: RuntimeConfig | None = None,
) -> None:
    """``call`` raises ``error`` matching ``text``, and nothing reaches the store."""
    async with running(url, *ENTITIES, config=config) as rt:
        await flush(rt)
        before = rt.statistics().committed_items
        with pytest.raises(error, match=text):
            await call(rt)
        await flush(rt)
        assert rt.statistics().committed_items - before == 2  # the flush's message and turn
        for entity in (Shop, Typed, Unmarked):
            assert await rt.count(entity) == 0
        with pytest.raises(ActorNotFound):
            await rt.ref(Shop, "k").status()
        assert await rt._store.next_timer_due() is None


def case(name: str, *values: Any, gap: str | None = None, raises: Any = None) -> Any:
    """One row of a table; ``gap`` marks a known gap (an expected failure) and says where."""
    marks = [pytest.mark.xfail(raises=raises, reason=gap)] if gap else []
    return pytest.param(*values, id=name, marks=marks)


# -- keys ----------------------------------------------------------------------------------

# fmt: off
BAD_KEYS = [
    case("empty", "", "must not be empty"),
    case("513-bytes", "k" * 513, "must be at most 512 bytes in UTF-8"),
    case("514-bytes-in-257-chars", "é" * 257, "must be at most 512 bytes in UTF-8"),
    case("nul", "a\x00b", "must not contain control characters, got U\\+0000 at index 1"),
    case("newline", "a\nb", "must not contain control characters, got U\\+000A"),
    case("tab", "\tb", "must not contain control characters, got U\\+0009 at index 0"),
    case("del", "a\x7f", "must not contain control characters, got U\\+007F"),
    case("c1-control", "a\x85", "must not contain control characters, got U\\+0085"),
    case("lone-surrogate", "a\ud800", "must be valid Unicode \\(it holds a lone surrogate\\)"),
    case("int", 7, "must be a str, got int"),
    case("bytes", b"k", "must be a str, got bytes"),
    case("float", 1.5, "must be a str, got float"),
]
KEY_USES: dict[str, tuple[str, Callable[[Any, Any], Awaitable[object]]]] = {
    "start": ("an actor key", lambda rt, key: rt.start(Shop, key, Order(1))),
    "ref": ("an actor key", lambda rt, key: rt.ref(Shop, key).ask(Shop.ping)),
    "ask-idempotency": ("an idempotency key", lambda rt, key: shop(rt).ask(Shop.add, 1, idempotency_key=key)),
    "tell-idempotency": ("an idempotency key", lambda rt, key: shop(rt).tell(Shop.ping, idempotency_key=key)),
}
# fmt: on


@pytest.mark.parametrize("use", KEY_USES)
@pytest.mark.parametrize(("key", "text"), BAD_KEYS)
async def test_a_bad_key_is_refused_naming_the_problem_and_nothing_is_stored(
    key: object, text: str, use: str, store_url: str
) -> None:
    """Issue 6: empty, over 512 bytes, control characters, lone surrogates, not a str."""
    what, call = KEY_USES[use]
    await refused(store_url, lambda rt: call(rt, key), InvalidKey, f"{what} {text}")


# -- payloads ------------------------------------------------------------------------------

# fmt: off
BAD_PAYLOADS = [
    case("str-for-int", "add", "five", "payload of shop.add does not fit int: Expected `int`, got `str`"),
    case("dict-wrong-field", "place", {"amount": "x"}, "payload of shop.place does not fit Order: Expected `int`, got `str` - at `\\$.amount`"),
    case("dict-missing-field", "place", {"note": "n"}, "payload of shop.place .*missing required field `amount`"),
    case("object", "anything", object(), "payload of shop.anything .*unsupported"),
    case("set-for-int", "add", {1, 2}, "payload of shop.add .*Expected `int`, got `array`"),
    case("nan-for-float", "measure", NAN, "payload of shop.measure .*NaN and infinite floats cannot be encoded"),
    case("infinity-for-any", "anything", -math.inf, "NaN and infinite floats cannot be encoded"),
    case("nan-nested-for-any", "anything", {"a": [1.0, NAN]}, "NaN and infinite floats"),
    case("lone-surrogate", "text", "\udc80", "payload of shop.text .*surrogates not allowed"),
    case("for-no-payload-handler", "ping", 1, "payload of shop.ping does not fit no payload"),
    case("missing", "add", NO_PAYLOAD, "payload of shop.add does not fit int: no payload was given"),
    case("over-1-mib", "text", BIG, "payload of shop.text .*1,048,578 bytes encoded, over the limit of 1,048,576 bytes"),
    case("over-1-mib-nested", "place", Order(1, BIG), "payload of shop.place .*over the limit of 1,048,576 bytes"),
]
PAYLOAD_USES: dict[str, Callable[[Any, str, Any], Awaitable[object]]] = {
    "ask": lambda rt, name, payload: shop(rt).ask(name, payload),
    "tell": lambda rt, name, payload: shop(rt).tell(name, payload),
    "start": lambda rt, name, payload: rt.start(Shop, "k", payload, handler=getattr(Shop, name)),
}
# fmt: on


@pytest.mark.parametrize("use", PAYLOAD_USES)
@pytest.mark.parametrize(("handler_name", "payload", "text"), BAD_PAYLOADS)
async def test_a_payload_that_does_not_fit_is_refused_and_nothing_is_stored(
    handler_name: str, payload: object, text: str, use: str, store_url: str
) -> None:
    """Issue 6: wrong types, values JSON cannot hold, and payloads over 1 MiB."""
    call = PAYLOAD_USES[use]
    await refused(store_url, lambda rt: call(rt, handler_name, payload), InvalidPayload, text)


async def test_a_payload_of_exactly_the_limit_is_accepted() -> None:
    """The limit is inclusive: max_payload bytes pass, one more is refused."""
    async with running("sqlite:///:memory:", Shop, config=SMALL) as rt:
        assert await shop(rt).ask(Shop.text, "x" * 98) == 98  # 100 bytes with the quotes
        with pytest.raises(InvalidPayload, match="101 bytes encoded"):
            await shop(rt).ask(Shop.text, "x" * 99)


async def test_a_payload_just_under_one_mib_is_accepted_by_default(store_url: str) -> None:
    """The default limit is 1 MiB of encoded payload."""
    async with running(store_url, Shop) as rt:
        assert await shop(rt).ask(Shop.text, "x" * (MIB - 2)) == MIB - 2


# -- attributes ----------------------------------------------------------------------------

# fmt: off
BAD_ATTRIBUTES = [
    case("name-with-space", Shop, {"bad name": 1}, "attribute names are identifiers .*'bad name'"),
    case("name-starting-with-digit", Shop, {"1x": 1}, "identifiers .*'1x'"),
    case("name-65-chars", Shop, {"a" * 65: 1}, "identifiers of at most 64 characters"),
    case("name-empty", Shop, {"": 1}, "identifiers .*got ''"),
    case("name-not-str", Shop, {5: 1}, "identifiers .*got 5"),
    case("string-over-1024", Shop, {"note": "n" * 1025}, "attribute 'note': string over 1024 characters"),
    case("lone-surrogate", Shop, {"note": "\ud800"}, "attribute 'note': a string with a lone surrogate"),
    case("list", Shop, {"x": [1]}, "attribute 'x': list is not an attribute type"),
    case("none", Shop, {"x": None}, "attribute 'x': NoneType is not an attribute type"),
    case("bytes", Shop, {"x": b"b"}, "attribute 'x': bytes is not an attribute type"),
    case("nan", Shop, {"x": NAN}, "attribute 'x': float must be finite"),
    case("int-over-64-bits", Shop, {"x": 2**63}, "attribute 'x': int .* does not fit in 64 bits"),
    case("naive-datetime", Shop, {"at": datetime(2026, 1, 1)}, "attribute 'at': datetime must be timezone-aware"),
    case("datetime-before-year-1-in-utc", Shop, {"at": datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))}, "outside years 1-9999 in UTC"),
    case("65-attributes", Shop, {f"a{i}": i for i in range(65)}, "at most 64 attributes per actor, got 65"),
    case("not-a-mapping", Shop, [("a", 1)], "attributes must be a mapping of names to values, got list"),
    case("undeclared", Typed, {"colour": "red"}, "attribute 'colour' is not declared \\(attribute_types: amount, customer\\)"),
    case("declared-other-kind", Typed, {"amount": "ten"}, "attribute 'amount' holds number values, got 'ten'"),
]
# fmt: on


@pytest.mark.parametrize(("entity", "attributes", "text"), BAD_ATTRIBUTES)
async def test_bad_attributes_at_start_are_refused_and_nothing_is_stored(
    entity: type[Entity], attributes: Any, text: str, store_url: str
) -> None:
    """Issue 6: attribute names and values out of bounds, of the wrong type, too many."""
    start = lambda rt: rt.start(entity, "k", Order(1), attributes=attributes)  # noqa: E731
    await refused(store_url, start, ValueError, text)


# -- entities, handlers, sizes, retention, timeouts, queries ---------------------------------


def bad_call(
    name: str,
    call: Callable[[Any], Awaitable[object]],
    error: type[Exception],
    text: str,
    config: RuntimeConfig | None = None,
    **gap: Any,
) -> Any:
    return case(name, call, error, text, config, **gap)


# fmt: off
BAD_CALLS = [
    bad_call("start-unknown-entity", lambda rt: rt.start(Unregistered, "k"), UnknownEntity, "Unregistered is not an entity of this runtime \\(known: sentinel, shop, typed, unmarked\\)"),
    bad_call("ref-none-key", lambda rt: rt.ref(Shop, None).ask(Shop.ping), InvalidKey, "an actor key must be a str, got NoneType"),
    bad_call("ref-unknown-entity", lambda rt: rt.ref(Unregistered, "k").ask(Unregistered.h), UnknownEntity, "Unregistered is not an entity"),
    bad_call("ref-not-an-entity", lambda rt: rt.ref(int, "k").ask("h"), UnknownEntity, "int is not an entity"),
    bad_call("count-unknown-entity", lambda rt: rt.count(Unregistered), UnknownEntity, "Unregistered is not an entity"),
    bad_call("ask-unknown-handler", lambda rt: shop(rt).ask("nope", 1), UnknownHandler, "entity 'shop' has no handler 'nope' \\(handlers: add, anything, measure, ping, place, text\\)"),
    bad_call("ask-handler-of-another-entity", lambda rt: shop(rt).ask(Sentinel.ping), UnknownHandler, "entity 'shop' has no handler 'ping'"),
    bad_call("tell-unknown-handler", lambda rt: shop(rt).tell("nope"), UnknownHandler, "no handler 'nope'"),
    bad_call("start-unknown-handler", lambda rt: rt.start(Shop, "k", 1, handler="nope"), UnknownHandler, "no handler 'nope'"),
    bad_call("start-without-start-handler", lambda rt: rt.start(Unmarked, "k"), UnknownHandler, "none is marked @handler\\(start=True\\); pass handler="),
    bad_call("ask-over-custom-limit", lambda rt: shop(rt).ask(Shop.text, "x" * 99), InvalidPayload, "101 bytes encoded, over the limit of 100 bytes \\(RuntimeConfig.max_payload\\)", SMALL),
    bad_call("tell-over-custom-limit", lambda rt: shop(rt).tell(Shop.anything, list(range(50))), InvalidPayload, "over the limit of 100 bytes", SMALL),
    bad_call("start-over-custom-limit", lambda rt: rt.start(Shop, "k", Order(1, "n" * 100)), InvalidPayload, "payload of shop.place .*over the limit of 100 bytes", SMALL),
    bad_call("cancel-reason-not-str", lambda rt: shop(rt).cancel(5), InvalidPayload, "cancel reason for shop/k does not fit str: Expected `str`, got `int`"),
    bad_call("cancel-reason-over-limit", lambda rt: shop(rt).cancel("r" * 200), InvalidPayload, "cancel reason for shop/k .*over the limit of 100 bytes", SMALL),
    bad_call("retention-negative", lambda rt: rt.start(Shop, "k", Order(1), retention=timedelta(seconds=-1)), ValueError, "retention must be a timedelta from 0 to 3650 days"),
    bad_call("retention-over-3650-days", lambda rt: rt.start(Shop, "k", Order(1), retention=timedelta(days=3651)), ValueError, "retention must be a timedelta from 0 to 3650 days"),
    bad_call("retention-not-timedelta", lambda rt: rt.start(Shop, "k", Order(1), retention=60), ValueError, "retention must be"),
    bad_call("ask-timeout-zero", lambda rt: shop(rt).ask(Shop.add, 1, timeout=timedelta(0)), ValueError, "timeout must be positive and at most 3650 days, got 0:00:00"),
    bad_call("ask-timeout-negative", lambda rt: shop(rt).ask(Shop.add, 1, timeout=timedelta(seconds=-1)), ValueError, "timeout must be positive and at most 3650 days"),
    bad_call("ask-timeout-int", lambda rt: shop(rt).ask(Shop.add, 1, timeout=5), ValueError, "timeout must be a timedelta, got int"),
    bad_call("ask-timeout-over-3650-days", lambda rt: shop(rt).ask(Shop.add, 1, timeout=timedelta(days=3651)), ValueError, "timeout must be positive and at most 3650 days"),
    bad_call("result-timeout-zero", lambda rt: shop(rt).result(timeout=timedelta(0)), ValueError, "timeout must be positive"),
    bad_call("result-timeout-float", lambda rt: shop(rt).result(timeout=1.5), ValueError, "timeout must be a timedelta, got float"),
    bad_call("find-where-not-a-mapping", lambda rt: rt.find(Shop, where="amount"), InvalidQuery, "where must be a mapping"),
    bad_call("find-where-name-not-str", lambda rt: rt.find(Shop, where={5: 1}), InvalidQuery, "where: attribute names are identifiers"),
    bad_call("count-status-not-a-status", lambda rt: rt.count(Shop, status=5), InvalidQuery, "status must be a Status"),
    bad_call("count-generation-bool", lambda rt: rt.count(Shop, generation=True), InvalidQuery, "generation must be a positive int"),
    bad_call("find-limit-bool", lambda rt: rt.find(Shop, limit=True), InvalidQuery, "limit must be an int from 1 to 1000"),
    bad_call("find-order-by-not-str", lambda rt: rt.find(Shop, order_by=5), InvalidQuery, "order_by must be a field name"),
    bad_call("find-after-not-str", lambda rt: rt.find(Shop, after=5), InvalidQuery, "after= is not a cursor"),
    bad_call("count-string-over-1024", lambda rt: rt.count(Shop, where={"note": "n" * 1025}), InvalidQuery, "at most 1024 characters"),
    bad_call("count-infinite-number", lambda rt: rt.count(Shop, where={"amount": math.inf}), InvalidQuery, "a number must be finite"),
]
# fmt: on


@pytest.mark.parametrize(("call", "error", "text", "config"), BAD_CALLS)
async def test_other_bad_calls_are_refused_naming_the_problem_and_nothing_is_stored(
    call: Callable[[Any], Awaitable[object]],
    error: type[Exception],
    text: str,
    config: RuntimeConfig | None,
    store_url: str,
) -> None:
    """Issue 6: unknown entities and handlers, sizes, retention, timeouts and queries."""
    await refused(store_url, call, error, text, config)


@pytest.mark.parametrize(
    "timeout",
    [timedelta(0), timedelta(seconds=-1), timedelta(days=3651), 10],
    ids=["zero", "negative", "over-3650-days", "int"],
)
async def test_a_bad_reply_timeout_is_refused(timeout: Any) -> None:
    """Issue 6: StartHandle.reply(timeout=) takes a positive timedelta of at most 3650 days."""
    async with running("sqlite:///:memory:", Shop) as rt:
        started = await rt.start(Shop, "k", Order(3))
        with pytest.raises(ValueError, match="timeout must be"):
            await started.reply(timeout=timeout)
        assert await started.reply(timeout=timedelta(seconds=30)) == 3


async def test_a_cancel_with_a_non_str_reason_is_refused_and_the_actor_goes_on() -> None:
    """Issue 6: a bad cancel reason is refused at the call (it used to stop the runtime)."""
    async with running("sqlite:///:memory:", Shop) as rt:
        await shop(rt).ask(Shop.ping)
        with pytest.raises(InvalidPayload, match="cancel reason"):
            await shop(rt).cancel(5)
        assert await shop(rt).ask(Shop.add, 2) == 2
        assert await shop(rt).cancel("done") is True


# -- in a turn: the handler fails, and none of its turn's effects is stored ----------------


class Target(Entity):
    """What a probe's turn sends to."""

    name = "target"

    @handler
    async def take(self, ctx: Context, amount: int) -> None:
        pass


def set_many(ctx: Context) -> None:
    ctx.set_attributes(**{f"a{i}": i for i in range(33)})
    ctx.set_attributes(**{f"b{i}": i for i in range(33)})


# The misuse takes ctx as Any: it misuses the API on purpose. Probe (below) is named by its
# handlers' names.
# fmt: off
TURN_MISUSE: list[tuple[str, Callable[[Any], object], str, str]] = [
    ("tell-over-limit", lambda ctx: ctx.tell(ctx.ref(Target, "t"), "take", BIG), "InvalidPayload", "payload of target.take .*over the limit of 1,048,576 bytes"),
    ("tell-wrong-type", lambda ctx: ctx.tell(ctx.ref(Target, "t"), Target.take, "one"), "InvalidPayload", "payload of target.take does not fit int"),
    ("tell-not-a-ref", lambda ctx: ctx.tell("target/t", Target.take, 1), "TypeError", "tell\\(\\) sends to an ActorRef"),
    ("tell-unknown-handler", lambda ctx: ctx.tell(ctx.ref(Target, "t"), "nope"), "UnknownHandler", "entity 'target' has no handler 'nope'"),
    ("ref-bad-key", lambda ctx: ctx.ref(Target, "t\n"), "InvalidKey", "an actor key must not contain control characters"),
    ("ref-unknown-entity", lambda ctx: ctx.ref(Unregistered, "t"), "UnknownEntity", "Unregistered is not an entity"),
    ("schedule-after-negative", lambda ctx: ctx.schedule("noop", after=timedelta(seconds=-1)), "ValueError", "after must be a timedelta >= 0"),
    ("schedule-after-over-3650-days", lambda ctx: ctx.schedule("noop", after=timedelta(days=3651)), "ValueError", "after must be a timedelta >= 0 and at most 3650 days"),
    ("schedule-after-not-timedelta", lambda ctx: ctx.schedule("noop", after=60), "ValueError", "after must be a timedelta"),
    ("schedule-at-over-3650-days", lambda ctx: ctx.schedule("noop", at=ctx.now() + timedelta(days=3651)), "ValueError", "at must be at most 3650 days from now"),
    ("schedule-at-naive", lambda ctx: ctx.schedule("noop", at=datetime(2030, 1, 1)), "ValueError", "at must be a timezone-aware datetime"),
    ("schedule-over-limit", lambda ctx: ctx.schedule("echo", BIG, after=timedelta(seconds=1)), "InvalidPayload", "payload of probe.echo .*over the limit"),
    ("schedule-name-with-nul", lambda ctx: ctx.schedule("noop", after=timedelta(seconds=1), name="a\x00"), "InvalidKey", "a timer name must not contain control characters"),
    ("cancel-timer-not-str", lambda ctx: ctx.cancel_timer(5), "InvalidKey", "a timer id must be a str, got int"),
    ("cancel-timer-empty", lambda ctx: ctx.cancel_timer(""), "InvalidKey", "a timer id must not be empty"),
    ("set-attribute-bad-name", lambda ctx: ctx.set_attributes(**{"bad name": 1}), "ValueError", "attribute names are identifiers"),
    ("set-attribute-long-string", lambda ctx: ctx.set_attributes(note="n" * 1025), "ValueError", "attribute 'note': string over 1024 characters"),
    ("set-attribute-list", lambda ctx: ctx.set_attributes(x=[1]), "ValueError", "attribute 'x': list is not an attribute type"),
    ("set-attributes-over-64-in-one-turn", set_many, "ValueError", "at most 64 attributes per actor; this turn would set 67"),
    ("remove-attribute-bad-name", lambda ctx: ctx.remove_attributes("bad name"), "ValueError", "attribute names are identifiers"),
    ("remove-attribute-not-str", lambda ctx: ctx.remove_attributes(5), "ValueError", "identifiers .*got 5"),
    ("complete-wrong-type", lambda ctx: ctx.complete("done"), "InvalidPayload", "result of probe/p does not fit int"),
    ("complete-over-limit", lambda ctx: ctx.complete([1] * MIB), "InvalidPayload", "result of probe/p .*over the limit of 1,048,576 bytes"),
    ("complete-nan", lambda ctx: ctx.complete(NAN), "InvalidPayload", "NaN and infinite floats"),
    ("fail-not-str", lambda ctx: ctx.fail(42), "TypeError", "fail\\(\\) takes a str or an exception, got int"),
    ("supersede-outside-on-duplicate", lambda ctx: ctx.supersede(), "RuntimeError", "supersede\\(\\) is for on_duplicate"),
]
# fmt: on
MISUSE = {name: misuse for name, misuse, _, _ in TURN_MISUSE}


class Probe(Entity):
    """Does some good work in a turn, then what the case says; the turn must leave no trace."""

    name = "probe"
    result: int

    @handler
    async def misuse(self, ctx: Context, name: str) -> None:
        ctx.set_attributes(touched=True)
        ctx.tell(ctx.ref(Target, "t"), Target.take, 1)
        ctx.schedule("noop", after=timedelta(minutes=1))
        MISUSE[name](ctx)

    @handler
    async def noop(self, ctx: Context) -> None:
        pass

    @handler
    async def echo(self, ctx: Context, text: str) -> None:
        pass

    @handler
    async def big_reply(self, ctx: Context) -> str:
        return "x" * 200

    @handler
    async def fail_long(self, ctx: Context) -> None:
        ctx.fail("e" * 10_000)

    @handler
    async def raise_surrogate(self, ctx: Context) -> None:
        raise ValueError("bad \ud800 text")


@pytest.mark.parametrize(
    ("name", "error_type", "text"),
    [pytest.param(name, error_type, text, id=name) for name, _, error_type, text in TURN_MISUSE],
)
async def test_bad_input_in_a_turn_fails_the_turn_and_none_of_its_effects_is_stored(
    name: str, error_type: str, text: str, store_url: str
) -> None:
    """Issue 6: context calls refuse bad input; the turn fails whole, storing none of it."""
    async with running(store_url, Probe, Target) as rt:
        probe = rt.ref(Probe, "p")
        with pytest.raises(HandlerFailed, match="handler 'misuse' of probe/p") as caught:
            await probe.ask(Probe.misuse, name)
        assert caught.value.error_type == error_type
        assert re.search(text, caught.value.error_message), caught.value.error_message
        assert await probe.status() == Status.ACTIVE
        [found] = (await rt.find(Probe)).items
        assert found.attributes == {}
        assert await rt._store.next_timer_due() is None
        with pytest.raises(ActorNotFound):
            await rt.ref(Target, "t").status()


class Replacer(Entity):
    """On a duplicate start, supersedes with a payload over the limit."""

    name = "replacer"

    @handler
    async def begin(self, ctx: Context, text: str) -> str:
        return text

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> str:
        return ctx.supersede("s" * 200)


async def test_a_supersede_payload_over_the_limit_fails_the_duplicate_s_turn() -> None:
    """Issue 6: supersede() checks the new start payload's size; no new generation is made."""
    async with running("sqlite:///:memory:", Replacer, config=SMALL) as rt:
        first = await rt.start(Replacer, "r", "a")
        assert await first.reply() == "a"
        again = await rt.start(Replacer, "r", "b")
        with pytest.raises(HandlerFailed, match="over the limit of 100 bytes") as caught:
            await again.reply()
        assert caught.value.error_type == "InvalidPayload"
        assert await first.actor.status() == Status.ACTIVE  # generation 1 goes on


async def test_a_long_failure_message_is_stored_cut_to_4096_characters() -> None:
    """Stored failures are bounded: ctx.fail with a huge message keeps its first 4096 chars."""
    async with running("sqlite:///:memory:", Probe, Target) as rt:
        await rt.ref(Probe, "p").ask(Probe.fail_long)
        with pytest.raises(ActorFailed) as caught:
            await rt.ref(Probe, "p").result()
        message = caught.value.error_message
        assert message.startswith("e" * MAX_ERROR_MESSAGE)
        assert message.endswith("e... (5,904 more characters cut)")


async def test_an_exception_message_with_a_lone_surrogate_fails_only_its_turn() -> None:
    """A handler's exception text that is not valid UTF-8 is stored escaped; the runtime goes on."""
    async with running("sqlite:///:memory:", Probe, Target) as rt:
        probe = rt.ref(Probe, "p")
        with pytest.raises(HandlerFailed, match="ValueError"):
            await probe.ask(Probe.raise_surrogate, idempotency_key="once")
        with pytest.raises(HandlerFailed, match=r"bad \\ud800 text"):  # the stored reply
            await probe.ask(Probe.raise_surrogate, idempotency_key="once")
        await probe.ask(Probe.noop)


async def test_a_reply_over_the_limit_fails_the_turn() -> None:
    """Issue 6: a reply over max_payload is a handler failure, like a result over it."""
    async with running("sqlite:///:memory:", Probe, Target, config=SMALL) as rt:
        with pytest.raises(HandlerFailed, match=r"reply of probe\.big_reply .*over the limit"):
            await rt.ref(Probe, "p").ask(Probe.big_reply)


# -- definitions and options ---------------------------------------------------------------


def bad_shop(**attributes: object) -> type[Entity]:
    return type("BadShop", (Shop,), {"name": "badshop", **attributes})


# fmt: off
BAD_OPEN = [
    case("namespace-starting-with-digit", {"namespace": "1acme"}, ValueError, "namespace must be letters, digits"),
    case("namespace-empty", {"namespace": ""}, ValueError, "namespace must be"),
    case("namespace-with-colon", {"namespace": "a:b"}, ValueError, "namespace must be"),
    case("namespace-65-chars", {"namespace": "n" * 65}, ValueError, "at most 64 characters"),
    case("namespace-not-str", {"namespace": 5}, ValueError, "namespace must be"),
    case("no-entities", {"entities": []}, InvalidEntity, "needs at least one entity type"),
    case("entities-a-class-not-a-list", {"entities": Shop}, TypeError, "entities must be"),
    case("entity-not-an-entity", {"entities": [int]}, InvalidEntity, "is not a subclass of actors.Entity"),
    case("entity-bad-name", {"entities": [bad_shop(name="9 lives")]}, InvalidEntity, "name must be a string of letters"),
    case("entity-retention-negative", {"entities": [bad_shop(retention=timedelta(seconds=-1))]}, InvalidEntity, "retention must be a timedelta from 0 to 3650 days"),
    case("entity-retention-over-3650-days", {"entities": [bad_shop(retention=timedelta(days=3651))]}, InvalidEntity, "retention must be a timedelta from 0 to 3650 days"),
    case("entity-retention-int", {"entities": [bad_shop(retention=3600)]}, InvalidEntity, "retention must be a timedelta"),
    case("entity-idle-timeout-zero", {"entities": [bad_shop(idle_timeout=timedelta(0))]}, InvalidEntity, "idle_timeout must be a positive timedelta"),
    case("entity-idle-timeout-over-3650-days", {"entities": [bad_shop(idle_timeout=timedelta(days=3651))]}, InvalidEntity, "idle_timeout must be a positive timedelta of at most 3650 days"),
    case("entity-attribute-type-list", {"entities": [bad_shop(attribute_types={"tags": list})]}, InvalidEntity, "attribute 'tags' has type"),
    case("entity-attribute-type-unhashable", {"entities": [bad_shop(attribute_types={"tags": [str]})]}, InvalidEntity, "attribute 'tags' has type \\[<class 'str'>\\]"),
    case("entity-attribute-name-bad", {"entities": [bad_shop(attribute_types={"bad name": str})]}, InvalidEntity, "attribute names are identifiers"),
    case("entity-attribute-types-not-a-mapping", {"entities": [bad_shop(attribute_types=["tags"])]}, InvalidEntity, "attribute_types must be a mapping"),
    case("url-malformed", {"store": "sqlite://host/x.db"}, InvalidStoreUrl, "malformed SQLite URL"),
    case("url-unknown-scheme", {"store": "mysql://x/y"}, InvalidStoreUrl, "no store backend for URL"),
    case("store-not-a-store", {"store": 5}, TypeError, "store must be"),
    case("config-a-dict", {"config": {"max_payload": 10}}, TypeError, "config must be"),
]
# fmt: on


@pytest.mark.parametrize(("options", "error", "text"), BAD_OPEN)
async def test_bad_runtime_options_are_refused_at_open_and_create_no_store(
    options: dict[str, Any], error: type[Exception], text: str, tmp_path: Path
) -> None:
    """Issue 6: bad entities, namespaces, URLs and config are refused; no database appears."""
    path = tmp_path / "actors.db"
    kwargs: dict[str, Any] = {"store": f"sqlite:///{path}", "entities": [Shop], **options}
    with pytest.raises(error, match=text):
        async with Runtime.open(kwargs.pop("store"), **kwargs):
            pass
    assert not path.exists()


# fmt: off
BAD_HANDLER_OPTIONS = [
    case("timeout-zero", {"timeout": timedelta(0)}, ValueError, "handler timeout must be positive and at most 3650 days, got 0:00:00"),
    case("timeout-negative", {"timeout": timedelta(seconds=-1)}, ValueError, "handler timeout must be positive"),
    case("timeout-over-3650-days", {"timeout": timedelta(days=3651)}, ValueError, "handler timeout must be positive and at most 3650 days"),
    case("timeout-int", {"timeout": 30}, ValueError, "handler timeout must be a timedelta, got int"),
    case("start-not-bool", {"start": "yes"}, TypeError, "@handler\\(start=...\\) takes a bool, got 'yes'"),
]
# fmt: on


@pytest.mark.parametrize(("options", "error", "text"), BAD_HANDLER_OPTIONS)
def test_bad_handler_options_are_refused_where_the_class_is_defined(
    options: dict[str, Any], error: type[Exception], text: str
) -> None:
    """Issue 6: @handler checks its options when it is applied."""
    with pytest.raises(error, match=text):
        handler(**options)


def test_handler_options_are_keyword_only() -> None:
    """``@handler(True)`` is a mistake for ``@handler(start=True)``, refused with that hint."""
    with pytest.raises(TypeError, match="@handler decorates a method, got True"):
        handler(True)  # type: ignore[call-overload]  # the mistake under test


# fmt: off
BAD_CONFIG = [
    case("max-batch-zero", {"max_batch": 0}, "max_batch must be an int of at least 1, got 0"),
    case("max-batch-negative", {"max_batch": -5}, "max_batch must be an int of at least 1, got -5"),
    case("max-batch-bool", {"max_batch": True}, "max_batch must be an int of at least 1, got True"),
    case("max-batch-float", {"max_batch": 1.5}, "max_batch must be an int of at least 1, got 1.5"),
    case("max-batch-str", {"max_batch": "10"}, "max_batch must be an int of at least 1, got '10'"),
    case("max-batch-none", {"max_batch": None}, "max_batch must be an int of at least 1, got None"),
    case("max-active-zero", {"max_active": 0}, "max_active must be an int"),
    case("timer-batch-zero", {"timer_batch": 0}, "timer_batch must be an int"),
    case("purge-batch-negative", {"purge_batch": -1}, "purge_batch must be an int"),
    case("max-attempts-zero", {"max_attempts": 0}, "max_attempts must be an int"),
    case("max-mailbox-zero", {"max_mailbox": 0}, "max_mailbox must be an int"),
    case("max-in-flight-zero", {"max_in_flight": 0}, "max_in_flight must be an int"),
    case("max-payload-zero", {"max_payload": 0}, "max_payload must be an int of at least 1, got 0"),
    case("max-payload-negative", {"max_payload": -1}, "max_payload must be an int"),
    case("max-payload-bool", {"max_payload": True}, "max_payload must be an int"),
    case("max-payload-float", {"max_payload": 1e6}, "max_payload must be an int"),
    case("idle-timeout-zero", {"idle_timeout": timedelta(0)}, "idle_timeout must be positive and at most 3650 days"),
    case("idle-timeout-negative", {"idle_timeout": timedelta(seconds=-1)}, "idle_timeout must be positive"),
    case("idle-timeout-none", {"idle_timeout": None}, "idle_timeout must be a timedelta, got NoneType"),
    case("idle-timeout-seconds", {"idle_timeout": 600}, "idle_timeout must be a timedelta, got int"),
    case("purge-interval-negative", {"purge_interval": timedelta(seconds=-30)}, "purge_interval must be positive"),
    case("purge-interval-over-3650-days", {"purge_interval": timedelta(days=3651)}, "purge_interval must be positive and at most 3650 days"),
    case("close-timeout-zero", {"close_timeout": timedelta(0)}, "close_timeout must be positive"),
    case("ask-timeout-negative", {"ask_timeout": timedelta(seconds=-1)}, "ask_timeout must be positive"),
    case("ask-timeout-float", {"ask_timeout": 5.0}, "ask_timeout must be a timedelta, got float"),
    case("handler-timeout-zero", {"handler_timeout": timedelta(0)}, "handler_timeout must be positive"),
    case("handler-timeout-over-3650-days", {"handler_timeout": timedelta(days=4000)}, "handler_timeout must be positive and at most 3650 days"),
    case("handler-timeout-int", {"handler_timeout": 60}, "handler_timeout must be a timedelta, got int"),
]
# fmt: on


@pytest.mark.parametrize(("options", "text"), BAD_CONFIG)
def test_runtime_config_refuses_each_bad_value_naming_it(
    options: dict[str, Any], text: str
) -> None:
    """Issue 6: RuntimeConfig refuses zero, negative, bool and mistyped counts and durations."""
    with pytest.raises(ValueError, match=text):
        RuntimeConfig(**options)


def test_runtime_config_refuses_unknown_options() -> None:
    """A misspelt option is a TypeError naming it, not silently ignored."""
    with pytest.raises(TypeError, match="max_paylod"):
        RuntimeConfig(max_paylod=10)  # type: ignore[call-arg]  # the misspelling under test
