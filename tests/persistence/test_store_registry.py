"""The registry contract (``Store.find`` / ``Store.count``), run against every backend.

Actors are found by their attributes, status, generation and times; only live actors count;
pages follow one another by keyset. Every query value and name is data to the store, never
SQL. Each test drives a real store through ``persistence``'s public names only.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import msgspec
import pytest

from persistence import (
    ActorId,
    ActorInit,
    ActorSummary,
    Admit,
    AdmitOutcome,
    AttributeValue,
    Completion,
    Condition,
    Enqueue,
    EnqueueOutcome,
    MessageKind,
    NewMessage,
    Op,
    Query,
    SortValue,
    Status,
    Store,
    Successor,
    TurnCommit,
    TurnOutcome,
)

LIMIT = 30.0
RETENTION = 60.0
ENTITY = "order"
NOW = 50.0  # every record these tests complete is still in its window
EVERYTHING = 10_000  # a limit above any result set here

Attributes = Mapping[str, AttributeValue]


def start() -> NewMessage:
    return NewMessage(kind=MessageKind.START, handler="begin", payload=b"start")


def admit_item(
    key: str, attributes: Attributes | None = None, *, entity: str = ENTITY, retention: float
) -> Admit:
    return Admit(
        actor=ActorId(entity=entity, key=key),
        message=start(),
        init=ActorInit(retention=retention, attributes=dict(attributes or {})),
    )


async def create(
    store: Store,
    key: str,
    attributes: Attributes | None = None,
    *,
    now: float = 1.0,
    entity: str = ENTITY,
    retention: float = RETENTION,
) -> None:
    """Create one actor (it must not exist yet)."""
    [outcome] = await store.write(
        [admit_item(key, attributes, entity=entity, retention=retention)], now=now
    )
    assert isinstance(outcome, AdmitOutcome)
    assert outcome.created


async def create_all(
    store: Store,
    actors: Mapping[str, Attributes],
    *,
    now: float = 1.0,
    entity: str = ENTITY,
    retention: float = RETENTION,
) -> None:
    """Create these actors in one batch (they share ``created_at``)."""
    outcomes = await store.write(
        [
            admit_item(key, attrs, entity=entity, retention=retention)
            for key, attrs in actors.items()
        ],
        now=now,
    )
    assert all(isinstance(o, AdmitOutcome) and o.created for o in outcomes)


async def turn(
    store: Store,
    key: str,
    *,
    now: float,
    entity: str = ENTITY,
    set_attributes: Attributes | None = None,
    remove_attributes: Sequence[str] = (),
    completion: Completion | None = None,
    successor: Successor | None = None,
) -> None:
    """Commit one turn of the actor's current generation (consuming a tell sent for it)."""
    actor = ActorId(entity=entity, key=key)
    record = await store.load_actor(actor)
    assert record is not None
    tell = NewMessage(kind=MessageKind.TELL, handler="poke", payload=b"t")
    [sent] = await store.write([Enqueue(actor=actor, message=tell)], now=now)
    assert isinstance(sent, EnqueueOutcome)
    assert sent.message is not None
    [outcome] = await store.write(
        [
            TurnCommit(
                actor=actor,
                generation=record.generation,
                consumed=sent.message.id,
                set_attributes=dict(set_attributes or {}),
                remove_attributes=remove_attributes,
                completion=completion,
                successor=successor,
            )
        ],
        now=now,
    )
    assert isinstance(outcome, TurnOutcome)
    assert outcome.applied


def where(field: str, op: Op, *values: AttributeValue) -> Condition:
    return Condition(field=field, op=op, values=values)


def query(*attributes: Condition, **options: Any) -> Query:
    """A query of ``ENTITY`` at ``NOW`` (unless given) with these attribute terms."""
    options.setdefault("entity", ENTITY)
    options.setdefault("now", NOW)
    options.setdefault("limit", EVERYTHING)
    return Query(attributes=attributes, **options)


async def keys(store: Store, q: Query) -> list[str]:
    return [row.key for row in await store.find(q)]


async def walk(store: Store, q: Query, *, page: int) -> list[ActorSummary]:
    """Every row of ``q`` from its cursor on, read ``page`` rows at a time by keyset."""
    rows: list[ActorSummary] = []
    after = q.after
    while True:
        found = await store.find(msgspec.structs.replace(q, after=after, limit=page))
        assert len(found) <= page
        rows.extend(found)
        if len(found) < page:
            return rows
        cursor = (found[-1].sort_value, found[-1].key)
        assert cursor != after, "the cursor did not move: the same page again"
        after = cursor


# What find returns


async def test_find_returns_summaries_of_matching_actors_in_key_order(store: Store) -> None:
    """Registry: a summary carries the record without state or result, and its sort value."""
    with anyio.fail_after(LIMIT):
        await create(store, "b", {"tier": "gold", "n": 2}, now=1.0)
        await create(store, "a", {"tier": "gold"}, now=2.0)
        await create(store, "c", {"tier": "silver"}, now=3.0)
        await create(store, "a", {"tier": "gold"}, entity="payment", now=3.0)
        await turn(store, "b", now=4.0, set_attributes={"n": 3}, remove_attributes=["tier"])
        await turn(store, "a", now=5.0, completion=Completion(status=Status.COMPLETED))

        rows = await store.find(query())

        assert rows == [
            ActorSummary(
                entity=ENTITY,
                key="a",
                generation=1,
                status=Status.COMPLETED,
                attributes={"tier": "gold"},
                created_at=2.0,
                updated_at=5.0,
                completed_at=5.0,
                sort_value="a",
            ),
            ActorSummary(
                entity=ENTITY,
                key="b",
                generation=1,
                status=Status.ACTIVE,
                attributes={"n": 3},
                created_at=1.0,
                updated_at=4.0,
                completed_at=None,
                sort_value="b",
            ),
            ActorSummary(
                entity=ENTITY,
                key="c",
                generation=1,
                status=Status.ACTIVE,
                attributes={"tier": "silver"},
                created_at=3.0,
                updated_at=3.0,
                completed_at=None,
                sort_value="c",
            ),
        ]
        assert await keys(store, query(where("tier", Op.EQ, "gold"))) == ["a"]
        assert await store.count(query()) == 3
        assert await store.find(query(entity="refund")) == []
        assert await store.count(query(entity="refund")) == 0


async def test_find_stops_at_the_limit_and_count_ignores_limit_cursor_and_order(
    store: Store,
) -> None:
    """Registry: count is every match, whatever page find would return."""
    with anyio.fail_after(LIMIT):
        await create_all(store, {f"k{i}": {"n": i} for i in range(5)})
        await create(store, "no-n", {"other": 1})

        assert await keys(store, query(limit=2)) == ["k0", "k1"]
        assert await keys(store, query(limit=2, after=("k3", "k3"))) == ["k4", "no-n"]
        paged = query(where("n", Op.GE, 1), limit=1, after=(2, "k2"))
        assert await store.count(paged) == 4
        assert await store.count(query(order_by="n", order_attribute=True, limit=1)) == 6
        assert await store.count(query(order_by="completed_at", descending=True)) == 6


# Operators


NUMBERS: dict[str, Attributes] = {
    "i1": {"n": 1},
    "f1.5": {"n": 1.5},
    "i2": {"n": 2},
    "f2": {"n": 2.0},
    "i3": {"n": 3},
    "neg": {"n": -7},
    "big": {"n": 2**62},
    "none": {},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (where("n", Op.EQ, 2), ["f2", "i2"]),
        (where("n", Op.EQ, 2.0), ["f2", "i2"]),
        (where("n", Op.EQ, 1.5), ["f1.5"]),
        (where("n", Op.GT, 1.5), ["big", "f2", "i2", "i3"]),
        (where("n", Op.GE, 1.5), ["big", "f1.5", "f2", "i2", "i3"]),
        (where("n", Op.LT, 2), ["f1.5", "i1", "neg"]),
        (where("n", Op.LE, 2), ["f1.5", "f2", "i1", "i2", "neg"]),
        (where("n", Op.BETWEEN, 1.5, 3), ["f1.5", "f2", "i2", "i3"]),
        (where("n", Op.BETWEEN, 2, 2), ["f2", "i2"]),
        (where("n", Op.BETWEEN, 3, 1), []),
        (where("n", Op.IN, 3, -7, 1.5, 99), ["f1.5", "i3", "neg"]),
        (where("n", Op.IN, 2**62), ["big"]),
        (where("n", Op.EXISTS), ["big", "f1.5", "f2", "i1", "i2", "i3", "neg"]),
        (where("n", Op.MISSING), ["none"]),
        (where("other", Op.MISSING), sorted(NUMBERS)),
        (where("other", Op.EXISTS), []),
    ],
    ids=lambda value: str(value) if isinstance(value, Condition) else "",
)
async def test_each_operator_selects_the_actors_whose_attribute_satisfies_it(
    store: Store, condition: Condition, expected: list[str]
) -> None:
    """Registry: EQ, GT, GE, LT, LE, BETWEEN (inclusive), IN, EXISTS and MISSING."""
    with anyio.fail_after(LIMIT):
        await create_all(store, NUMBERS)

        assert await keys(store, query(condition)) == expected
        assert await store.count(query(condition)) == len(expected)


async def test_in_takes_hundreds_of_values(store: Store) -> None:
    """Registry: an IN of a few hundred values is one query."""
    with anyio.fail_after(LIMIT):
        await create_all(store, {f"k{i:03}": {"n": i, "s": f"v{i}"} for i in range(600)})

        numbers = where("n", Op.IN, *range(0, 1000, 2))
        strings = where("s", Op.IN, *(f"v{i}" for i in range(1, 1000, 2)))
        assert await store.count(query(numbers)) == 300
        assert await store.count(query(strings)) == 300
        assert await store.count(query(numbers, strings)) == 0


MOMENT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

FAMILIES: dict[str, Attributes] = {
    "int": {"x": 1},
    "float": {"x": 1.0},
    "true": {"x": True},
    "false": {"x": False},
    "zero": {"x": 0},
    "str": {"x": "1"},
    "empty": {"x": ""},
    "when": {"x": MOMENT},
    "epoch": {"x": MOMENT.timestamp()},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (where("x", Op.EQ, 1), ["float", "int"]),
        (where("x", Op.EQ, 1.0), ["float", "int"]),
        (where("x", Op.EQ, True), ["true"]),
        (where("x", Op.EQ, False), ["false"]),
        (where("x", Op.EQ, 0), ["zero"]),
        (where("x", Op.EQ, "1"), ["str"]),
        (where("x", Op.EQ, MOMENT), ["when"]),
        (where("x", Op.EQ, MOMENT.timestamp()), ["epoch"]),
        (where("x", Op.GT, -1), ["epoch", "float", "int", "zero"]),
        (where("x", Op.GE, ""), ["empty", "str"]),
        (where("x", Op.LT, "2"), ["empty", "str"]),
        (where("x", Op.GT, datetime(1970, 1, 1, tzinfo=UTC)), ["when"]),
        (where("x", Op.IN, True, False), ["false", "true"]),
        (where("x", Op.IN, 0, 1), ["float", "int", "zero"]),
        (where("x", Op.IN, "1", ""), ["empty", "str"]),
        (where("x", Op.PREFIX, "1"), ["str"]),
    ],
    ids=lambda value: str(value) if isinstance(value, Condition) else "",
)
async def test_a_value_matches_only_stored_values_of_its_own_kind(
    store: Store, condition: Condition, expected: list[str]
) -> None:
    """Registry: 1 matches 1 and 1.0, never True, "1" or a datetime; and so on per kind."""
    with anyio.fail_after(LIMIT):
        await create_all(store, FAMILIES)

        assert await keys(store, query(condition)) == expected


async def test_datetime_ranges_compare_instants_at_microsecond_precision(store: Store) -> None:
    """Registry: datetimes compare as instants whatever their zone; BETWEEN is inclusive."""
    plus_two = timezone(timedelta(hours=2))
    tick = timedelta(microseconds=1)
    with anyio.fail_after(LIMIT):
        await create_all(
            store,
            {
                "before": {"due": MOMENT - tick},
                "at": {"due": MOMENT},
                "after": {"due": MOMENT + tick},
                "later": {"due": (MOMENT + timedelta(days=1)).astimezone(plus_two)},
                "number": {"due": MOMENT.timestamp()},
            },
        )

        at_in_plus_two = MOMENT.astimezone(plus_two)
        assert await keys(store, query(where("due", Op.EQ, at_in_plus_two))) == ["at"]
        assert await keys(store, query(where("due", Op.GT, MOMENT))) == ["after", "later"]
        assert await keys(store, query(where("due", Op.GE, MOMENT))) == ["after", "at", "later"]
        assert await keys(store, query(where("due", Op.LT, MOMENT))) == ["before"]
        assert await keys(store, query(where("due", Op.LE, at_in_plus_two))) == ["at", "before"]
        between = where("due", Op.BETWEEN, MOMENT - tick, MOMENT + tick)
        assert await keys(store, query(between)) == ["after", "at", "before"]
        [row] = await store.find(query(where("due", Op.GT, MOMENT + tick)))
        assert row.attributes == {"due": MOMENT + timedelta(days=1)}


PREFIXED: dict[str, str] = {
    "ab": "ab",
    "abc": "abc",
    "abd": "abd",
    "ab%": "ab%",
    "ab_c": "ab_c",
    "ab-backslash": "ab\\x",
    "aB": "aB",
    "ABC": "ABC",
    "b": "b",
    "e-acute": "é",
    "e-acute-a": "éa",
    "e-plain": "e",
    "nihon": "日本",
    "nihongo": "日本語",
    "emoji": "😀x",
    "x-max": "x\U0010ffff",
    "x-max-y": "x\U0010ffffy",
    "y": "y",
    "max": "\U0010ffff",
    "max-max": "\U0010ffff\U0010ffff",
    "below-surrogates": "a\ud7ffz",
    "above-surrogates": "a\ue000",
    "nul": "n\x00ul",
    "twelve": "12",
}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("ab", ["ab", "ab%", "ab-backslash", "ab_c", "abc", "abd"]),
        ("ab%", ["ab%"]),
        ("ab_", ["ab_c"]),
        ("ab\\", ["ab-backslash"]),
        (
            "a",
            [
                "aB",
                "ab",
                "ab%",
                "ab-backslash",
                "ab_c",
                "abc",
                "abd",
                "above-surrogates",
                "below-surrogates",
            ],
        ),
        ("A", ["ABC"]),
        ("é", ["e-acute", "e-acute-a"]),
        ("日本", ["nihon", "nihongo"]),
        ("😀", ["emoji"]),
        ("x\U0010ffff", ["x-max", "x-max-y"]),
        ("\U0010ffff", ["max", "max-max"]),
        ("\U0010ffff\U0010ffff", ["max-max"]),
        ("a\ud7ff", ["below-surrogates"]),
        ("n\x00", ["nul"]),
        ("1", ["twelve"]),
        ("abcd", []),
    ],
    ids=ascii,
)
async def test_prefix_matches_strings_by_code_points_with_no_wildcards(
    store: Store, prefix: str, expected: list[str]
) -> None:
    """Registry: PREFIX is case-sensitive, literal, up to the top code point, strings only."""
    with anyio.fail_after(LIMIT):
        await create_all(store, {key: {"s": value} for key, value in PREFIXED.items()})
        await create(store, "number", {"s": 12})

        found = await store.find(query(where("s", Op.PREFIX, prefix)))

        assert sorted(row.key for row in found) == sorted(expected)
        assert all(str(row.attributes["s"]).startswith(prefix) for row in found)


async def test_every_condition_must_hold(store: Store) -> None:
    """Registry: terms combine with AND; two terms on one name bound one value."""
    with anyio.fail_after(LIMIT):
        await create_all(
            store,
            {
                "a": {"tier": "gold", "n": 5, "vip": True},
                "b": {"tier": "gold", "n": 15},
                "c": {"tier": "silver", "n": 5, "vip": True},
                "d": {"tier": "gold", "n": 10, "vip": False},
            },
        )

        gold = where("tier", Op.EQ, "gold")
        assert await keys(store, query(gold, where("n", Op.LT, 10))) == ["a"]
        assert await keys(store, query(gold, where("n", Op.GE, 5), where("n", Op.LE, 10))) == [
            "a",
            "d",
        ]
        assert await keys(store, query(gold, where("vip", Op.MISSING))) == ["b"]
        assert await keys(store, query(where("vip", Op.EXISTS), where("n", Op.EQ, 5))) == [
            "a",
            "c",
        ]
        assert await keys(store, query(gold, where("tier", Op.EQ, "silver"))) == []
        assert await keys(store, query(where("n", Op.EXISTS), where("n", Op.MISSING))) == []
        assert await store.count(query(gold, where("vip", Op.IN, True, False))) == 2


# Status, generation, times


async def test_statuses_and_generation_narrow_the_query(store: Store) -> None:
    """Registry: statuses (empty: any) and generation filter the current generation."""
    with anyio.fail_after(LIMIT):
        await create_all(store, {key: {"n": 1} for key in ("act", "done", "fail", "stop", "gen")})
        await turn(store, "done", now=2.0, completion=Completion(status=Status.COMPLETED))
        await turn(store, "fail", now=2.0, completion=Completion(status=Status.FAILED))
        await turn(store, "stop", now=2.0, completion=Completion(status=Status.CANCELLED))
        await turn(
            store,
            "gen",
            now=2.0,
            completion=Completion(status=Status.SUPERSEDED),
            successor=Successor(
                init=ActorInit(retention=RETENTION, attributes={"n": 2}), message=start()
            ),
        )

        assert await keys(store, query()) == ["act", "done", "fail", "gen", "stop"]
        assert await keys(store, query(statuses=frozenset({Status.ACTIVE}))) == ["act", "gen"]
        ended = frozenset({Status.COMPLETED, Status.FAILED})
        assert await keys(store, query(statuses=ended)) == ["done", "fail"]
        assert await keys(store, query(statuses=frozenset({Status.SUPERSEDED}))) == []
        assert await keys(store, query(generation=2)) == ["gen"]
        assert await keys(store, query(generation=1)) == ["act", "done", "fail", "stop"]
        [row] = await store.find(query(where("n", Op.EQ, 2), generation=2))
        assert (row.key, row.generation, row.status, row.attributes) == (
            "gen",
            2,
            Status.ACTIVE,
            {"n": 2},
        )
        assert await store.count(query(statuses=ended, generation=1)) == 2


async def test_time_terms_compare_created_updated_and_completed_at(store: Store) -> None:
    """Registry: terms on created_at, updated_at and completed_at, in epoch seconds."""
    with anyio.fail_after(LIMIT):
        await create(store, "a", now=10.0)
        await create(store, "b", now=20.0)
        await create(store, "c", now=30.0)
        await turn(store, "a", now=40.0)
        await turn(store, "b", now=50.0, completion=Completion(status=Status.COMPLETED))

        def times(*conditions: Condition) -> Query:
            return query(times=conditions)

        assert await keys(store, times(where("created_at", Op.GT, 10.0))) == ["b", "c"]
        assert await keys(store, times(where("created_at", Op.GE, 20))) == ["b", "c"]
        assert await keys(store, times(where("created_at", Op.LT, 20.0))) == ["a"]
        assert await keys(store, times(where("created_at", Op.LE, 20.0))) == ["a", "b"]
        assert await keys(store, times(where("created_at", Op.BETWEEN, 10.0, 20.0))) == [
            "a",
            "b",
        ]
        assert await keys(store, times(where("updated_at", Op.GE, 40.0))) == ["a", "b"]
        assert await keys(store, times(where("updated_at", Op.LT, 40.0))) == ["c"]
        assert await keys(store, times(where("completed_at", Op.GT, 0.0))) == ["b"]
        assert await keys(store, times(where("completed_at", Op.LT, 1e12))) == ["b"]
        both = times(where("created_at", Op.LE, 20.0), where("updated_at", Op.BETWEEN, 45, 55))
        assert await keys(store, both) == ["b"]
        assert await store.count(both) == 1


@pytest.mark.parametrize(
    "field", ["expires_at", "a.key) OR (1", "key"], ids=["expires-at", "sql", "key"]
)
async def test_a_time_term_on_another_field_is_a_value_error(store: Store, field: str) -> None:
    """Registry: time terms name created_at, updated_at or completed_at, nothing else."""
    with anyio.fail_after(LIMIT):
        await create(store, "a")
        q = query(times=(where(field, Op.GT, 0.0),))

        with pytest.raises(ValueError, match="time field"):
            await store.find(q)
        with pytest.raises(ValueError, match="time field"):
            await store.count(q)
        assert await keys(store, query()) == ["a"]


@pytest.mark.parametrize("order_by", ["expires_at", "key; DROP TABLE actors", "generation"])
async def test_an_order_by_another_column_is_a_value_error(store: Store, order_by: str) -> None:
    """Registry: a query orders by key, a time column, or (order_attribute) an attribute."""
    with anyio.fail_after(LIMIT):
        await create(store, "a", {order_by: 1})

        with pytest.raises(ValueError, match="time field"):
            await store.find(query(order_by=order_by))
        assert await keys(store, query(order_by=order_by, order_attribute=True)) == ["a"]


# Liveness


async def test_expired_and_purged_actors_are_neither_found_nor_counted(store: Store) -> None:
    """Registry, G6: a record is live until expires_at; purged, it is gone with its attributes."""
    with anyio.fail_after(LIMIT):
        await create_all(store, {"short": {"tier": "gold"}, "long": {"tier": "gold"}})
        await create(store, "active", {"tier": "gold"})
        await turn(store, "short", now=5.0, completion=Completion(status=Status.COMPLETED))
        await turn(store, "long", now=5.0, completion=Completion(status=Status.COMPLETED))
        # Both windows end at 5 + RETENTION.
        gold = where("tier", Op.EQ, "gold")

        at_edge = query(gold, now=5.0 + RETENTION - 0.001)
        assert await keys(store, at_edge) == ["active", "long", "short"]
        assert await store.count(at_edge) == 3
        expired = query(gold, now=5.0 + RETENTION)
        assert await keys(store, expired) == ["active"]
        assert await store.count(expired) == 1
        by_time = msgspec.structs.replace(expired, order_by="completed_at")
        assert await store.find(by_time) == []
        assert await store.count(msgspec.structs.replace(expired, attributes=())) == 1

        assert await store.purge_expired(now=5.0 + RETENTION, limit=10) == 2
        assert await keys(store, query(gold, now=0.0)) == ["active"]
        assert await store.count(query(where("tier", Op.EXISTS), now=0.0)) == 1

        await create(store, "short", {"tier": "silver"}, now=100.0)
        [row] = await store.find(query(now=100.0, statuses=frozenset({Status.ACTIVE}), limit=1))
        assert row.key == "active"
        [again] = await store.find(query(where("tier", Op.EQ, "silver"), now=100.0))
        assert (again.key, again.attributes) == ("short", {"tier": "silver"})
        assert again.generation > 1


async def test_an_actor_is_live_until_the_instant_it_expires(store: Store) -> None:
    """Registry, G6: expires_at <= now is not live, for find and count alike."""
    with anyio.fail_after(LIMIT):
        await create(store, "a", {"n": 1}, now=1.0, retention=10.0)
        await turn(store, "a", now=2.0, completion=Completion(status=Status.FAILED))

        for now, live in ((11.999, True), (12.0, False), (13.0, False)):
            q = query(where("n", Op.EQ, 1), now=now)
            assert await keys(store, q) == (["a"] if live else [])
            assert await store.count(q) == int(live)


# Ordering


ORDERED: dict[str, Attributes] = {
    "k1": {"rank": 3, "name": "pear", "due": MOMENT},
    "k2": {"rank": 1.5, "name": "apple", "due": MOMENT - timedelta(microseconds=1)},
    "k3": {"rank": 3.0, "name": "Zebra"},
    "k4": {"rank": -1, "name": "äpfel", "due": MOMENT + timedelta(days=3)},
    "k5": {"name": "pear", "due": MOMENT},
    "k6": {"rank": 3, "flag": True},
    "k7": {"flag": False, "due": MOMENT - timedelta(days=3)},
    "k8": {},
}


async def ordered_store(store: Store) -> None:
    """ORDERED, created and changed at distinct times, with ties in every column."""
    await create_all(store, {key: ORDERED[key] for key in ("k1", "k2", "k3")}, now=10.0)
    await create_all(store, {key: ORDERED[key] for key in ("k4", "k5")}, now=20.0)
    await create_all(store, {key: ORDERED[key] for key in ("k6", "k7", "k8")}, now=5.0)
    await turn(store, "k3", now=30.0, completion=Completion(status=Status.COMPLETED))
    await turn(store, "k6", now=30.0, completion=Completion(status=Status.FAILED))
    await turn(store, "k1", now=25.0, completion=Completion(status=Status.CANCELLED))
    await turn(store, "k8", now=40.0)


@pytest.mark.parametrize(
    ("order_by", "attribute", "expected", "sort_values"),
    [
        ("key", False, ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"], None),
        (
            "created_at",
            False,
            ["k6", "k7", "k8", "k1", "k2", "k3", "k4", "k5"],
            [5.0, 5.0, 5.0, 10.0, 10.0, 10.0, 20.0, 20.0],
        ),
        (
            "updated_at",
            False,
            ["k7", "k2", "k4", "k5", "k1", "k3", "k6", "k8"],
            [5.0, 10.0, 20.0, 20.0, 25.0, 30.0, 30.0, 40.0],
        ),
        ("completed_at", False, ["k1", "k3", "k6"], [25.0, 30.0, 30.0]),
        ("rank", True, ["k4", "k2", "k1", "k3", "k6"], [-1, 1.5, 3, 3.0, 3]),
        ("name", True, ["k3", "k2", "k1", "k5", "k4"], ["Zebra", "apple", "pear", "pear", "äpfel"]),
        (
            "due",
            True,
            ["k7", "k2", "k1", "k5", "k4"],
            [
                MOMENT - timedelta(days=3),
                MOMENT - timedelta(microseconds=1),
                MOMENT,
                MOMENT,
                MOMENT + timedelta(days=3),
            ],
        ),
        ("flag", True, ["k7", "k6"], [False, True]),
    ],
)
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
async def test_rows_come_in_the_requested_order_with_ties_broken_by_key(
    store: Store,
    order_by: str,
    attribute: bool,
    expected: list[str],
    sort_values: list[SortValue] | None,
    descending: bool,
) -> None:
    """Registry: by key, a time or an attribute (leaving out actors without it); ties by key."""
    with anyio.fail_after(LIMIT):
        await ordered_store(store)
        q = query(order_by=order_by, order_attribute=attribute, descending=descending)

        rows = await store.find(q)

        values = expected if sort_values is None else sort_values
        pairs = list(zip(values, expected, strict=True))
        if descending:
            pairs.reverse()
        assert [(row.sort_value, row.key) for row in rows] == pairs
        assert [type(row.sort_value) for row in rows] == [type(value) for value, _ in pairs]
        assert await store.count(q) == len(ORDERED)


@pytest.mark.parametrize(
    ("order_by", "attribute"),
    [
        ("key", False),
        ("created_at", False),
        ("updated_at", False),
        ("completed_at", False),
        ("rank", True),
        ("name", True),
        ("due", True),
        ("flag", True),
        ("mixed", True),
    ],
)
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("page", [1, 2, 3, 7])
async def test_keyset_pages_walk_the_whole_ordered_result_once(
    store: Store, order_by: str, attribute: bool, descending: bool, page: int
) -> None:
    """Registry: following ``after`` page by page yields exactly the full ordered list."""
    with anyio.fail_after(LIMIT):
        await ordered_store(store)
        # An attribute holding every kind of value: pages still follow one order.
        mixed: list[AttributeValue] = [1, True, 1.0, "1", MOMENT, 0.5, False, "", -3]
        await create_all(store, {f"m{i}": {"mixed": value} for i, value in enumerate(mixed)})
        q = query(
            where("rank", Op.LE, 100) if order_by == "rank" else where("zzz", Op.MISSING),
            order_by=order_by,
            order_attribute=attribute,
            descending=descending,
        )

        full = await store.find(q)
        pages = await walk(store, q, page=page)

        assert pages == full
        assert len({row.key for row in full}) == len(full)
        if order_by == "mixed":
            assert len(full) == len(mixed)


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("seed", range(4))
async def test_each_page_continues_after_the_cursor_while_rows_change_between_pages(
    store: Store, descending: bool, seed: int
) -> None:
    """Registry: each page is what follows the cursor now; unchanged rows come once, in order."""
    rng = random.Random(seed)
    ranks = {f"k{i:02}": rng.randrange(10) for i in range(20)}
    initial = dict(ranks)
    changed: set[str] = set()
    clock = 1.0

    def expected_page(last: tuple[int, str] | None) -> list[tuple[int, str]]:
        rows = sorted(((rank, key) for key, rank in ranks.items()), reverse=descending)
        if last is not None:
            rows = [row for row in rows if (row < last if descending else row > last)]
        return rows[:3]

    with anyio.fail_after(LIMIT):
        # Retention 0: an actor that ends is no longer live at once.
        await create_all(store, {k: {"rank": r} for k, r in ranks.items()}, retention=0.0)
        seen: list[str] = []
        last: tuple[int, str] | None = None
        while True:
            q = query(
                order_by="rank",
                order_attribute=True,
                descending=descending,
                after=last,
                limit=3,
                now=clock,
            )
            page = [(row.sort_value, row.key) for row in await store.find(q)]
            assert page == expected_page(last)
            if not page:
                break
            seen.extend(key for _, key in page)
            rank, key = page[-1]
            assert isinstance(rank, int)
            last = (rank, key)
            clock += 1.0
            changed |= await change_some(store, rng, ranks, now=clock)

        unchanged = sorted(
            ((rank, key) for key, rank in initial.items() if key not in changed),
            reverse=descending,
        )
        assert [key for key in seen if key not in changed] == [key for _, key in unchanged]


async def change_some(
    store: Store, rng: random.Random, ranks: dict[str, int], *, now: float
) -> set[str]:
    """Add, re-rank, maybe un-rank, maybe end an actor; mirror it in ``ranks``; return keys.

    ``ranks`` holds the live actors that have a rank.
    """
    new = f"n{now:04.0f}"
    ranks[new] = rng.randrange(10)
    await create(store, new, {"rank": ranks[new]}, now=now, retention=0.0)
    moved = rng.choice(sorted(ranks))
    ranks[moved] = rng.randrange(10)
    await turn(store, moved, now=now, set_attributes={"rank": ranks[moved]})
    touched = {new, moved}
    if rng.random() < 0.5:
        dropped = rng.choice(sorted(ranks))
        del ranks[dropped]
        touched.add(dropped)
        await turn(store, dropped, now=now, remove_attributes=["rank"])
    if rng.random() < 0.5:
        ended = rng.choice(sorted(ranks))
        del ranks[ended]
        touched.add(ended)
        await turn(store, ended, now=now, completion=Completion(status=Status.COMPLETED))
    return touched


async def test_a_page_continues_after_its_cursor_row_was_purged(store: Store) -> None:
    """Registry: the cursor is a position in the order, not a row that must still exist."""
    with anyio.fail_after(LIMIT):
        await create_all(store, {f"k{i}": {"rank": i % 3} for i in range(6)}, retention=0.0)
        q = query(order_by="rank", order_attribute=True, limit=2)
        first = await store.find(q)
        assert [(row.sort_value, row.key) for row in first] == [(0, "k0"), (0, "k3")]
        await turn(store, "k3", now=2.0, completion=Completion(status=Status.COMPLETED))
        assert await store.purge_expired(now=2.0, limit=10) == 1

        rest = await walk(store, msgspec.structs.replace(q, after=(0, "k3")), page=2)

        assert [(row.sort_value, row.key) for row in rest] == [
            (1, "k1"),
            (1, "k4"),
            (2, "k2"),
            (2, "k5"),
        ]


# Hostile input


HOSTILE = [
    "x'); DROP TABLE actors; --",
    "'); DELETE FROM attributes; --",
    "' OR '1'='1",
    '" OR ""="',
    "a.key) OR (1=1",
    "t0.value",
    "?",
    "%",
    "_",
    "\\",
    "*",
    "[a-z]",
    "\x00';",
    "",
]


async def test_hostile_strings_are_data_as_entities_keys_names_values_and_cursors(
    store: Store,
) -> None:
    """Registry: whatever a query holds is bound as data; the tables survive every query."""
    entity = "o'); DROP TABLE attributes; --"
    with anyio.fail_after(LIMIT):
        await create_all(
            store,
            {text: {text: index, "value": text} for index, text in enumerate(HOSTILE)},
            entity=entity,
        )
        await create(store, "bystander", {"value": "x"})
        everyone = sorted(HOSTILE)

        def on(*conditions: Condition, **options: Any) -> Query:
            return query(*conditions, entity=entity, **options)

        for index, text in enumerate(HOSTILE):
            assert await keys(store, on(where(text, Op.EXISTS))) == [text]
            assert await keys(store, on(where(text, Op.EQ, index))) == [text]
            assert await keys(store, on(where(text, Op.BETWEEN, index, index))) == [text]
            assert await keys(store, on(where("value", Op.EQ, text))) == [text]
            assert await keys(store, on(where("value", Op.IN, text, "absent"))) == [text]
            assert await keys(store, on(where("value", Op.PREFIX, text))) == [
                other for other in everyone if other.startswith(text)
            ]
            assert await keys(store, on(where(text, Op.MISSING))) == [
                other for other in everyone if other != text
            ]
            [row] = await store.find(on(order_by=text, order_attribute=True))
            assert (row.key, row.sort_value, row.attributes) == (
                text,
                index,
                {text: index, "value": text},
            )
            assert await keys(store, on(after=(text, text))) == [k for k in everyone if k > text]
            by_value = on(order_by="value", order_attribute=True, after=(text, text))
            assert await keys(store, by_value) == [k for k in everyone if k > text]
            assert await store.count(on(where("value", Op.GE, text))) == len(
                [k for k in everyone if k >= text]
            )

        assert await keys(store, on()) == everyone
        assert await store.count(on()) == len(HOSTILE)
        assert await keys(store, query()) == ["bystander"]
        record = await store.load_actor(ActorId(entity=entity, key=HOSTILE[0]))
        assert record is not None
        assert dict(record.attributes) == {HOSTILE[0]: 0, "value": HOSTILE[0]}
        await create(store, "after-all", {"value": "y"})
        assert await store.count(query(where("value", Op.IN, "x", "y"))) == 2
