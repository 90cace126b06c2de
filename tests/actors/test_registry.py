"""The registry: find actors by their attributes, status and times (find, find_all, count)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest

from actors import (
    Between,
    Context,
    Entity,
    Exists,
    Ge,
    Gt,
    HandlerFailed,
    In,
    InvalidEntity,
    InvalidKey,
    InvalidQuery,
    Le,
    Lt,
    Missing,
    Prefix,
    Runtime,
    Status,
    handler,
)
from actors.testing import VirtualClock
from tests.conftest import running

T0 = datetime(2026, 5, 1, tzinfo=UTC)
HOSTILE = "x'); DROP TABLE actors; --"


@dataclass
class NewOrder:
    customer: str
    amount: int
    region: str


class Order(Entity):
    """Declares its attributes: queries and turns are checked against them."""

    name = "order"
    attribute_types: ClassVar[Mapping[str, type]] = {
        "customer": str,
        "amount": int,
        "region": str,
        "vip": bool,
        "due": datetime,
    }

    @handler(start=True)
    async def place(self, ctx: Context, order: NewOrder) -> str:
        ctx.set_attributes(customer=order.customer, amount=order.amount, region=order.region)
        return ctx.key

    @handler
    async def pay(self, ctx: Context) -> None:
        ctx.complete("paid")

    @handler
    async def flag(self, ctx: Context, vip: bool) -> None:
        ctx.set_attributes(vip=vip)

    @handler
    async def unflag(self, ctx: Context) -> None:
        ctx.remove_attributes("vip")

    @handler
    async def set_wrong(self, ctx: Context) -> None:
        ctx.set_attributes(amount="lots")


class Note(Entity):
    """Free-form attributes: any name, any attribute type."""

    name = "note"

    @handler(start=True)
    async def write(self, ctx: Context) -> None:
        """Its attributes come with the start (``rt.start(..., attributes=...)``)."""


async def place(rt: Runtime, key: str, customer: str, amount: int, region: str = "eu") -> None:
    await (await rt.start(Order, key, NewOrder(customer, amount, region))).reply()


async def test_find_filters_orders_and_limits_like_the_issue_example(store_url: str) -> None:
    """A query with where, status, order_by and limit, as a user writes it."""
    clock = VirtualClock(T0)
    async with running(store_url, Order, clock=clock) as rt:
        for i, (customer, amount) in enumerate(
            [("c1", 50), ("c1", 150), ("c1", 300), ("c2", 500), ("c1", 120)]
        ):
            await place(rt, f"o{i}", customer, amount)
            await clock.advance(timedelta(minutes=1))
        for key in ("o1", "o2", "o3"):
            await rt.ref(Order, key).ask(Order.pay)
            await clock.advance(timedelta(minutes=1))
        page = await rt.find(
            Order,
            where={"customer": "c1", "amount": Gt(100)},
            status="completed",
            order_by="-completed_at",
            limit=50,
        )
        assert [info.key for info in page.items] == ["o2", "o1"]
        assert page.cursor is None
        first = page.items[0]
        assert (first.entity, first.generation, first.status) == ("order", 1, Status.COMPLETED)
        assert first.attributes == {"customer": "c1", "amount": 300, "region": "eu"}
        assert first.created_at == T0 + timedelta(minutes=2)
        assert first.completed_at == T0 + timedelta(minutes=6)
        assert first.updated_at == first.completed_at
        assert await first.ref.result() == "paid"  # the ref addresses that actor
        assert await rt.count(Order, where={"customer": "c1"}) == 4
        assert await rt.count(Order, where={"customer": "c1"}, status=Status.ACTIVE) == 2


async def test_find_all_walks_every_page(store_url: str) -> None:
    """find_all yields every match once, in order, across pages."""
    async with running(store_url, Order) as rt:
        for i in range(25):
            await place(rt, f"o{i:02d}", "c", i, region=["eu", "us", "ap"][i % 3])
        found = [
            info.key
            async for info in rt.find_all(Order, where={"region": In(["eu", "us"])}, page_size=4)
        ]
        assert found == [f"o{i:02d}" for i in range(25) if i % 3 != 2]


async def test_keyset_pages_stay_stable_while_actors_change(store_url: str) -> None:
    """Actors added or changed between pages neither repeat nor hide unchanged ones."""
    async with running(store_url, Order) as rt:
        for i in range(10):
            await place(rt, f"o{i}", "c", i * 10)
        seen: list[str] = []
        page = await rt.find(Order, order_by="amount", limit=3)
        seen += [i.key for i in page.items]
        await place(rt, "early", "c", -5)  # sorts before the cursor: not seen, no shift
        await place(rt, "late", "c", 1000)  # sorts after: seen at the end
        while page.cursor is not None:
            page = await rt.find(Order, order_by="amount", limit=3, after=page.cursor)
            seen += [i.key for i in page.items]
        assert seen == [f"o{i}" for i in range(10)] + ["late"]


async def test_every_operator(store_url: str) -> None:
    """Equality, ranges, In, Prefix, Exists, Missing, on each kind of value."""
    async with running(store_url, Note) as rt:
        notes: dict[str, dict[str, Any]] = {
            "a": {"n": 1, "s": "apple", "b": True, "t": T0},
            "b": {"n": 2.5, "s": "apricot", "b": False, "t": T0 + timedelta(days=1)},
            "c": {"n": 10, "s": "banana"},
            "d": {"s": "1"},
        }
        for key, attributes in notes.items():
            await (await rt.start(Note, key, attributes=attributes)).reply()

        async def keys(**where: Any) -> list[str]:
            return [i.key for i in (await rt.find(Note, where=where)).items]

        assert await keys(n=1) == ["a"]
        assert await keys(n=1.0) == ["a"]  # numbers compare as numbers
        assert await keys(s="1") == ["d"]  # never the number 1
        assert await keys(b=True) == ["a"]
        assert await keys(n=Gt(1)) == ["b", "c"]
        assert await keys(n=Ge(2.5)) == ["b", "c"]
        assert await keys(n=Lt(10)) == ["a", "b"]
        assert await keys(n=Le(1)) == ["a"]
        assert await keys(n=Between(2, 10)) == ["b", "c"]
        assert await keys(s=In(["banana", "apple"])) == ["a", "c"]
        assert await keys(s=Prefix("ap")) == ["a", "b"]
        assert await keys(s=Gt("b")) == ["c"]  # strings order as strings
        assert await keys(t=Gt(T0)) == ["b"]
        assert await keys(t=Between(T0, T0 + timedelta(days=1))) == ["a", "b"]
        assert await keys(n=Exists()) == ["a", "b", "c"]
        assert await keys(n=Missing()) == ["d"]
        assert await keys(n=Exists(), s=Prefix("a"), b=False) == ["b"]


async def test_time_ranges_generation_and_status(store_url: str) -> None:
    """created/updated/completed ranges, generation and several statuses combine."""
    clock = VirtualClock(T0)
    async with running(store_url, Order, clock=clock) as rt:
        for i in range(4):
            await place(rt, f"o{i}", "c", i)
            await clock.advance(timedelta(hours=1))
        await rt.ref(Order, "o3").ask(Order.pay)
        early = Lt(T0 + timedelta(minutes=90))
        assert [i.key for i in (await rt.find(Order, created=early)).items] == ["o0", "o1"]
        assert await rt.count(Order, completed=Ge(T0)) == 1
        assert await rt.count(Order, updated=Gt(T0 + timedelta(hours=3, minutes=30))) == 1
        assert await rt.count(Order, status=["active", Status.COMPLETED]) == 4
        assert await rt.count(Order, generation=1) == 4
        assert await rt.count(Order, generation=2) == 0


async def test_a_turn_s_attribute_changes_are_visible_once_its_reply_is_received(
    store_url: str,
) -> None:
    """Read-your-writes: the reply is released after the commit that changed the registry."""
    async with running(store_url, Order) as rt:
        await place(rt, "o", "c", 1)
        ref = rt.ref(Order, "o")
        await ref.ask(Order.flag, True)
        assert await rt.count(Order, where={"vip": True}) == 1
        await ref.ask(Order.unflag)
        assert await rt.count(Order, where={"vip": Exists()}) == 0


async def test_purged_actors_leave_the_registry(store_url: str) -> None:
    """After its retention window, an actor is no longer found (nor counted)."""
    clock = VirtualClock(T0)
    async with running(store_url, Order, clock=clock) as rt:
        await place(rt, "o", "c", 1)
        await rt.ref(Order, "o").ask(Order.pay)
        assert await rt.count(Order) == 1
        await clock.advance(Order.retention + timedelta(seconds=1))
        assert await rt.count(Order) == 0
        assert (await rt.find(Order, where={"customer": "c"})).items == []


async def test_hostile_strings_are_data(store_url: str) -> None:
    """Values never reach SQL as text: an injection attempt is just a string that matches."""
    async with running(store_url, Note) as rt:
        await (await rt.start(Note, "n", attributes={"s": HOSTILE})).reply()
        assert [i.key for i in (await rt.find(Note, where={"s": HOSTILE})).items] == ["n"]
        assert await rt.count(Note, where={"s": Prefix(HOSTILE[:5])}) == 1
        assert await rt.count(Note, where={"s": "x' OR '1'='1"}) == 0
        with pytest.raises(InvalidQuery, match="attribute names are identifiers"):
            await rt.find(Note, where={HOSTILE: 1})
        with pytest.raises(InvalidQuery, match="order_by"):
            await rt.find(Note, order_by=HOSTILE)
        assert await rt.count(Note) == 1  # the tables are intact


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"where": {"amount": [1, 2]}}, "neither an attribute value"),
        ({"where": {"amount": None}}, "neither an attribute value"),
        ({"where": {"amount": "ten"}}, "holds number values, got str"),
        ({"where": {"colour": "red"}}, "has no attribute 'colour'"),
        ({"where": {"vip": Gt(True)}}, "does not apply to booleans"),
        ({"where": {"region": Prefix("")}}, "Prefix needs a non-empty string"),
        ({"where": {"amount": Between(5, 1)}}, "is empty"),
        ({"where": {"amount": In([1, "x"])}}, "of one kind"),
        ({"where": {"amount": In([])}}, "In needs 1 to 500 values"),
        ({"where": {"due": Gt(datetime(2026, 1, 1))}}, "timezone-aware"),
        ({"where": {"amount": Gt(Gt(1))}}, "operators do not nest"),  # type: ignore[arg-type]
        ({"where": {f"a{i}": 1 for i in range(17)}}, "at most 16 attribute terms"),
        ({"status": "done"}, "unknown status 'done'"),
        ({"generation": 0}, "generation must be a positive int"),
        ({"limit": 0}, "limit must be an int from 1 to 1000"),
        ({"limit": 1001}, "limit must be an int from 1 to 1000"),
        ({"order_by": "-"}, "order_by"),
        ({"order_by": "colour"}, "has no such attribute"),
        ({"created": T0}, "created= takes Gt, Ge, Lt, Le or Between"),
        ({"created": Gt(1)}, "compares timezone-aware datetimes"),
        ({"after": "not-a-cursor"}, "is not a cursor of this query's order"),
    ],
)
async def test_bad_queries_are_refused_with_a_clear_error(
    kwargs: dict[str, Any], text: str
) -> None:
    """Each mistake gets InvalidQuery naming it; nothing is read."""
    async with running("sqlite:///:memory:", Order) as rt:
        with pytest.raises(InvalidQuery, match=text):
            await rt.find(Order, **kwargs)


async def test_a_cursor_only_resumes_the_order_it_came_from() -> None:
    """A cursor of one ordering is refused by a query with another."""
    async with running("sqlite:///:memory:", Order) as rt:
        for i in range(3):
            await place(rt, f"o{i}", "c", i)
        page = await rt.find(Order, order_by="amount", limit=1)
        assert page.cursor is not None
        with pytest.raises(InvalidQuery, match="not a cursor of this query's order"):
            await rt.find(Order, order_by="-amount", after=page.cursor)
        after = await rt.find(Order, order_by="amount", limit=5, after=page.cursor)
        assert [i.key for i in after.items] == ["o1", "o2"]


async def test_declared_attribute_types_are_enforced_in_turns_and_starts() -> None:
    """With attribute_types, a wrong kind or an undeclared name is refused before storing."""
    async with running("sqlite:///:memory:", Order) as rt:
        await place(rt, "o", "c", 1)
        with pytest.raises(HandlerFailed, match="holds number values"):
            await rt.ref(Order, "o").ask(Order.set_wrong)
        with pytest.raises(ValueError, match="not declared"):
            await rt.start(Order, "p", NewOrder("c", 1, "eu"), attributes={"colour": "red"})
        assert await rt.count(Order, where={"amount": 1}) == 1


async def test_an_undeclarable_attribute_type_is_refused_at_registration() -> None:
    """attribute_types takes str, int, float, bool and datetime only."""

    class Bad(Order):
        name = "bad-order"
        attribute_types: ClassVar[Mapping[str, type]] = {"tags": list}

    with pytest.raises(InvalidEntity, match="use str, int, float, bool or datetime"):
        async with Runtime.open("sqlite:///:memory:", entities=[Bad]):
            pass


async def test_strings_with_lone_surrogates_are_refused_before_storing() -> None:
    """A lone surrogate cannot be stored as UTF-8: keys, attributes and queries refuse it."""
    async with running("sqlite:///:memory:", Note) as rt:
        with pytest.raises(InvalidKey, match="lone surrogate"):
            await rt.start(Note, "bad\ud800key")
        with pytest.raises(ValueError, match="lone surrogate"):
            await rt.start(Note, "n", attributes={"s": "x\udfff"})
        with pytest.raises(InvalidQuery, match="valid Unicode"):
            await rt.find(Note, where={"s": "x\ud800"})
        assert await rt.count(Note) == 0


async def test_datetimes_keep_their_microsecond_in_any_year(store_url: str) -> None:
    """Datetime attributes are exact to the microsecond, from year 1 to 9999 in UTC."""
    far = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    near = far - timedelta(microseconds=1)
    async with running(store_url, Note) as rt:
        for key, when in (("far", far), ("near", near), ("first", datetime(1, 1, 1, tzinfo=UTC))):
            await (await rt.start(Note, key, attributes={"t": when})).reply()
        assert [i.key for i in (await rt.find(Note, where={"t": far})).items] == ["far"]
        assert [i.key for i in (await rt.find(Note, where={"t": Lt(far)}, order_by="t")).items] == [
            "first",
            "near",
        ]
        page = await rt.find(Note, order_by="-t", limit=1)
        assert page.items[0].attributes["t"] == far
        assert page.cursor is not None
        rest = await rt.find(Note, order_by="-t", after=page.cursor)
        assert [i.key for i in rest.items] == ["near", "first"]
        with pytest.raises(ValueError, match="outside years 1-9999 in UTC"):
            await rt.start(
                Note, "x", attributes={"t": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))}
            )
        with pytest.raises(InvalidQuery, match="years 1-9999"):
            await rt.find(
                Note, where={"t": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))}
            )
