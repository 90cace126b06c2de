"""Schema migrations of the SQLite backend, and how ``open_store`` reads a URL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

import persistence
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    Condition,
    FireOutcome,
    FireTimers,
    InvalidStoreUrl,
    MessageKind,
    NewMessage,
    NewTimer,
    Op,
    Query,
    SchemaTooNew,
    StoreError,
    TurnCommit,
    TurnOutcome,
    open_store,
)
from persistence.sqlite import SQLiteStore

LIMIT = 30.0
A = ActorId(entity="order", key="a-1")
SCHEMA_DIR = Path(persistence.__file__).parent / "schema" / "sqlite"
SHIPPED = len(list(SCHEMA_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")))


def tables(path: Path, kind: str = "table") -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,)).fetchall()
    return {name for (name,) in rows}


async def create_old_store(db_path: Path, *, version: int) -> None:
    """An empty store at schema ``version``, closed: what an older release left behind."""
    old = await SQLiteStore.open(str(db_path), schema_version=version)
    try:
        assert await old.schema_version() == version
    finally:
        await old.close()


def insert_active_actor(conn: sqlite3.Connection) -> None:
    """Actor A, active with state b"state", as raw SQL (every schema version has these)."""
    conn.execute(
        "INSERT INTO actors (entity, key, generation, status, state, retention,"
        " created_at, updated_at) VALUES (?, ?, 1, 'active', ?, 30.0, 1.0, 2.0)",
        (A.entity, A.key, b"state"),
    )


def test_the_sqlite_schema_ships_at_least_two_migrations() -> None:
    """The upgrade tests below need a version 1 older than the newest."""
    assert SHIPPED >= 2


async def test_a_version_one_store_is_upgraded_in_place_with_its_data_intact(
    db_path: Path,
) -> None:
    """G4: opening an older store migrates it without losing what it holds."""
    with anyio.fail_after(LIMIT):
        await create_old_store(db_path, version=1)
        # What a version-1 release left behind: an actor, its state, one unhandled message.
        # Written as raw SQL because today's code writes columns that version 1 lacks.
        with closing(sqlite3.connect(db_path)) as conn, conn:
            insert_active_actor(conn)
            conn.execute(
                "INSERT INTO messages (id, entity, key, generation, kind, handler, payload,"
                " created_at) VALUES (2, ?, ?, 1, 'tell', 'poke', ?, 1.0)",
                (A.entity, A.key, b"t"),
            )
            conn.execute("UPDATE meta SET value = 3 WHERE name = 'next_message_id'")
        told = NewMessage(kind=MessageKind.TELL, handler="poke", payload=b"t")
        assert "attributes" not in tables(db_path)

        upgraded = await SQLiteStore.open(str(db_path))
        try:
            assert await upgraded.schema_version() == SHIPPED
            record = await upgraded.load_actor(A)
            assert record is not None
            assert (record.generation, record.state, record.retention) == (1, b"state", 30.0)
            assert dict(record.attributes) == {}
            [pending] = await upgraded.load_mailbox(A)
            assert (pending.id, pending.kind, pending.handler, pending.payload) == (
                2,
                told.kind,
                told.handler,
                told.payload,
            )
            [set_turn] = await upgraded.write(
                [
                    TurnCommit(
                        actor=A,
                        generation=1,
                        consumed=pending.id,
                        set_attributes={"migrated": True},
                    )
                ],
                now=3.0,
            )
            assert isinstance(set_turn, TurnOutcome)
            assert set_turn.applied
            record = await upgraded.load_actor(A)
            assert record is not None
            assert dict(record.attributes) == {"migrated": True}
        finally:
            await upgraded.close()
        assert "attributes" in tables(db_path)


async def test_a_version_three_store_is_upgraded_to_timers_with_its_messages_readable(
    db_path: Path,
) -> None:
    """G4: the timers migration keeps every stored message readable, and timers then work."""
    with anyio.fail_after(LIMIT):
        await create_old_store(db_path, version=3)
        # What a version-3 release left behind: an actor with a pending duplicate (with its
        # metadata), a pending request under an idempotency key, and a handled one whose reply
        # is kept. Written as raw SQL because today's code writes the timer column.
        with closing(sqlite3.connect(db_path)) as conn, conn:
            insert_active_actor(conn)
            conn.executemany(
                "INSERT INTO messages (id, entity, key, generation, kind, handler, payload,"
                " created_at, meta, idempotency_key, done, reply, expires_at)"
                " VALUES (?, ?, ?, 1, ?, ?, ?, 1.0, ?, ?, ?, ?, ?)",
                [
                    (2, A.entity, A.key, "duplicate", "charge", b"d", b"m", None, 0, None, None),
                    (3, A.entity, A.key, "request", "add", b"r", None, "k1", 0, None, None),
                    (4, A.entity, A.key, "request", "add", b"h", None, "k2", 1, b"42", 31.0),
                ],
            )
            conn.execute("UPDATE meta SET value = 5 WHERE name = 'next_message_id'")
        assert "timers" not in tables(db_path)

        upgraded = await SQLiteStore.open(str(db_path))
        try:
            assert await upgraded.schema_version() == SHIPPED
            mailbox = await upgraded.load_mailbox(A)
            assert [
                (m.id, m.kind, m.handler, m.payload, m.meta, m.idempotency_key, m.timer)
                for m in mailbox
            ] == [
                (2, MessageKind.DUPLICATE, "charge", b"d", b"m", None, None),
                (3, MessageKind.REQUEST, "add", b"r", None, "k1", None),
            ]
            assert await upgraded.next_expiry() == 31.0
            assert await upgraded.next_timer_due() is None
            [turn] = await upgraded.write(
                [
                    TurnCommit(
                        actor=A,
                        generation=1,
                        consumed=2,
                        timers=[NewTimer(name="t", due_at=5.0, handler="h", payload=b"p")],
                    )
                ],
                now=3.0,
            )
            assert isinstance(turn, TurnOutcome)
            assert turn.applied
            assert await upgraded.next_timer_due() == 5.0
            [firing] = await upgraded.write([FireTimers(limit=10)], now=5.0)
            assert isinstance(firing, FireOutcome)
            [message] = firing.messages
            assert (message.id, message.kind, message.timer) == (5, MessageKind.TIMER, "t")
            assert [m.id for m in await upgraded.load_mailbox(A)] == [3, 5]
        finally:
            await upgraded.close()
        assert "timers" in tables(db_path)


async def test_a_version_four_store_is_upgraded_to_registry_indexes_with_its_actors_found(
    db_path: Path,
) -> None:
    """G4: the registry migration adds indexes and planner statistics; stored actors are found."""
    registry_indexes = {"actors_created", "actors_completed"}
    with anyio.fail_after(LIMIT):
        old = await SQLiteStore.open(str(db_path), schema_version=4)
        try:
            assert await old.schema_version() == 4

            # The rows a version-4 release wrote for three started actors (today's code
            # writes columns that later versions added).
            def write_v4(conn: sqlite3.Connection) -> None:
                for now, key, tier in (
                    (1.0, "a-1", "gold"),
                    (2.0, "b-2", "silver"),
                    (3.0, "c-3", "gold"),
                ):
                    conn.execute(
                        "INSERT INTO actors (entity, key, generation, status, retention,"
                        " created_at, updated_at) VALUES ('order', ?, 1, 'active', 30.0, ?, ?)",
                        (key, now, now),
                    )
                    conn.execute(
                        "INSERT INTO attributes (entity, key, name, value_type, value)"
                        " VALUES ('order', ?, 'tier', 'str', ?)",
                        (key, tier),
                    )

            await old.run(write_v4)
        finally:
            await old.close()
        # An operator had run ANALYZE: migration 5 replaces the figures it plans with.
        # A datetime attribute as version 4 stored it: epoch seconds as a float.
        with closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("ANALYZE")
            conn.execute(
                "INSERT INTO attributes VALUES ('order', 'a-1', 'due', 'datetime', ?)",
                (1_700_000_000.25,),
            )
        assert not registry_indexes & tables(db_path, "index")

        upgraded = await SQLiteStore.open(str(db_path))
        try:
            assert await upgraded.schema_version() == SHIPPED
            gold = Condition(field="tier", op=Op.EQ, values=("gold",))
            newest_gold = Query(
                entity="order", now=4.0, attributes=(gold,), order_by="created_at", descending=True
            )
            found = await upgraded.find(newest_gold)
            assert [(row.key, row.sort_value, row.attributes) for row in found] == [
                ("c-3", 3.0, {"tier": "gold"}),
                (
                    "a-1",
                    1.0,
                    {"tier": "gold", "due": datetime(2023, 11, 14, 22, 13, 20, 250000, UTC)},
                ),
            ]
            assert await upgraded.count(newest_gold) == 2
        finally:
            await upgraded.close()
        assert registry_indexes <= tables(db_path, "index")
        with closing(sqlite3.connect(db_path)) as conn:
            stats = dict(
                conn.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'attributes'")
            )
        assert stats["attributes_lookup"] == "4000000 400000 100000 10"


async def test_reopening_a_current_store_keeps_its_version_and_data(db_path: Path) -> None:
    """G4: opening a store that is already current applies nothing and changes nothing."""
    url = f"sqlite:///{db_path}"
    with anyio.fail_after(LIMIT):
        for attempt in range(3):
            store = await open_store(url)
            try:
                assert isinstance(store, SQLiteStore)
                assert await store.schema_version() == SHIPPED
                if attempt == 0:
                    await store.write(
                        [
                            Admit(
                                actor=A,
                                message=NewMessage(
                                    kind=MessageKind.START, handler="begin", payload=b"s"
                                ),
                                init=ActorInit(retention=1.0, attributes={"n": 1}),
                            )
                        ],
                        now=1.0,
                    )
                record = await store.load_actor(A)
                assert record is not None
                assert dict(record.attributes) == {"n": 1}
                assert len(await store.load_mailbox(A)) == 1
            finally:
                await store.close()


async def test_a_store_newer_than_the_code_is_refused_with_schema_too_new(db_path: Path) -> None:
    """A store written by a newer version is never opened, so it is never damaged."""
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {SHIPPED + 1}")

    with anyio.fail_after(LIMIT):
        with pytest.raises(SchemaTooNew) as raised:
            await open_store(f"sqlite:///{db_path}")
        with pytest.raises(SchemaTooNew):
            await SQLiteStore.open(str(db_path))

    assert isinstance(raised.value, StoreError)
    assert (raised.value.found, raised.value.supported) == (SHIPPED + 1, SHIPPED)
    assert tables(db_path) == set()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://x",
        "sqlite://host/path.db",
        "sqlite:///",
        "sqlite:",
        "postgresql://localhost:port/actors",
        "postgresql://localhost/actors/extra",
        "postgres://localhost/actors?schema=Not-A-Name",
        "nonsense",
        "",
    ],
)
async def test_open_store_rejects_a_malformed_or_unknown_url(url: str) -> None:
    """A URL that names no store is a ValueError, raised before anything is opened."""
    with anyio.fail_after(LIMIT), pytest.raises(InvalidStoreUrl) as raised:
        await open_store(url)

    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, StoreError)


async def test_open_store_opens_relative_and_absolute_sqlite_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///rel.db`` is relative to the working directory; ``sqlite:////abs`` is not."""
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "nested" / "absolute.db"
    absolute.parent.mkdir()
    with anyio.fail_after(LIMIT):
        for url in ("sqlite:///relative.db", f"sqlite:///{absolute}"):
            store = await open_store(url)
            await store.close()

    assert (tmp_path / "relative.db").is_file()
    assert absolute.is_file()
    assert "actors" in tables(tmp_path / "relative.db")
    assert "actors" in tables(absolute)
