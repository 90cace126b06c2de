"""The storage contract for operators' tools, run against every backend through ``store``.

What ``actors show`` and ``actors stats`` read (an actor's timers and recent turns, counts per
entity), and how a tool opens a store that a runtime may have open (``migrate=False``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import cast

import anyio
import pytest

from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    BuryMessage,
    Completion,
    Enqueue,
    EnqueueOutcome,
    EntityStatistics,
    MessageKind,
    NewMessage,
    NewTimer,
    Status,
    Store,
    StoredReply,
    StoreUnavailable,
    TurnCommit,
    TurnOutcome,
    open_store,
)
from persistence.sqlite import SQLiteStore
from tests.postgres import fresh_schema_url

NOW = 1_000.0
RETENTION = 60.0
A = ActorId(entity="order", key="a-1")
B = ActorId(entity="order", key="b-2")
C = ActorId(entity="cart", key="c-3")


def message(kind: MessageKind = MessageKind.TELL, *, key: str | None = None) -> NewMessage:
    return NewMessage(kind=kind, handler="poke", payload=b"{}", idempotency_key=key)


async def admit(store: Store, actor: ActorId, *, now: float = NOW) -> int:
    [outcome] = await store.write(
        [
            Admit(
                actor=actor,
                message=message(MessageKind.START),
                init=ActorInit(retention=RETENTION),
            )
        ],
        now=now,
    )
    assert isinstance(outcome, AdmitOutcome)
    assert outcome.message is not None
    return outcome.message.id


async def tell(store: Store, actor: ActorId, *, key: str | None = None, now: float = NOW) -> int:
    [outcome] = await store.write([Enqueue(actor=actor, message=message(key=key))], now=now)
    assert isinstance(outcome, EnqueueOutcome)
    assert outcome.message is not None
    return outcome.message.id


async def commit(store: Store, *items: TurnCommit, now: float = NOW) -> None:
    outcomes = await store.write(list(items), now=now)
    assert all(cast(TurnOutcome, outcome).applied for outcome in outcomes)


async def test_load_timers_lists_an_actors_timers_soonest_first(store: Store) -> None:
    """Each timer with its name, generation, due time, handler, payload and creation time."""
    started = await admit(store, A)
    timers = (
        NewTimer(name="late", due_at=NOW + 50, handler="expire", payload=b'"x"'),
        NewTimer(name="soon", due_at=NOW + 5, handler="remind", payload=b"1"),
    )
    await commit(store, TurnCommit(actor=A, generation=1, consumed=started, timers=timers))
    loaded = await store.load_timers(A)
    assert [(t.name, t.due_at, t.handler, t.payload) for t in loaded] == [
        ("soon", NOW + 5, "remind", b"1"),
        ("late", NOW + 50, "expire", b'"x"'),
    ]
    assert {(t.entity, t.key, t.generation, t.created_at) for t in loaded} == {
        ("order", "a-1", 1, NOW)
    }
    assert await store.load_timers(B) == []


async def test_recent_turns_are_kept_until_a_turn_replaces_them(store: Store) -> None:
    """A turn's ``recent_turns`` replaces the stored bytes; a turn without leaves them."""
    started = await admit(store, A)
    assert (await store.load_actor(A)).recent_turns is None  # type: ignore[union-attr]
    await commit(store, TurnCommit(actor=A, generation=1, consumed=started, recent_turns=b"one"))
    told = await tell(store, A)
    await commit(store, TurnCommit(actor=A, generation=1, consumed=told))
    assert (await store.load_actor(A)).recent_turns == b"one"  # type: ignore[union-attr]


async def test_the_last_recent_turns_of_a_batch_win(store: Store) -> None:
    """Pipelined turns of one actor in one batch: the last one that wrote them wins."""
    started = await admit(store, A)
    told = await tell(store, A)
    await commit(
        store,
        TurnCommit(actor=A, generation=1, consumed=started, recent_turns=b"first"),
        TurnCommit(actor=A, generation=1, consumed=told, recent_turns=b"second"),
    )
    assert (await store.load_actor(A)).recent_turns == b"second"  # type: ignore[union-attr]
    more = [await tell(store, A), await tell(store, A)]
    await commit(
        store,
        TurnCommit(actor=A, generation=1, consumed=more[0], recent_turns=b"third"),
        TurnCommit(actor=A, generation=1, consumed=more[1]),  # writes none: the third stays
    )
    assert (await store.load_actor(A)).recent_turns == b"third"  # type: ignore[union-attr]


async def test_a_new_generation_starts_without_recent_turns(store: Store) -> None:
    """The record of a key's next generation does not show the previous one's turns."""
    started = await admit(store, A)
    done = Completion(status=Status.COMPLETED, result=b"1")
    await commit(
        store,
        TurnCommit(actor=A, generation=1, consumed=started, completion=done, recent_turns=b"x"),
    )
    await admit(store, A, now=NOW + RETENTION + 1)
    record = await store.load_actor(A)
    assert record is not None
    assert (record.generation, record.recent_turns) == (2, None)


async def test_statistics_count_what_each_entity_holds(store: Store) -> None:
    """Live actors by status, expired ones apart, mail, kept replies, timers, dead letters."""
    a_start = await admit(store, A, now=NOW)
    b_start = await admit(store, B, now=NOW + 1)
    c_start = await admit(store, C, now=NOW + 2)
    keyed = await tell(store, A, key="k1", now=NOW + 3)
    tick = NewTimer(name="t", due_at=NOW + 500, handler="remind", payload=b"1")
    await commit(
        store,
        TurnCommit(actor=A, generation=1, consumed=a_start, timers=(tick,)),
        TurnCommit(actor=A, generation=1, consumed=keyed, reply=StoredReply(reply=b"2")),
        TurnCommit(
            actor=B,
            generation=1,
            consumed=b_start,
            completion=Completion(status=Status.COMPLETED, result=b"3"),
        ),
        now=NOW + 4,
    )
    waiting = await tell(store, A, now=NOW + 5)
    await tell(store, A, now=NOW + 6)
    await store.write([BuryMessage(message=waiting, attempts=3, error="boom")], now=NOW + 7)
    assert c_start

    early = await store.statistics(now=NOW + 10)
    assert early == [
        EntityStatistics(
            entity="cart",
            actors={Status.ACTIVE: 1},
            expired=0,
            messages=1,
            kept_replies=0,
            timers=0,
            dead_letters=0,
            oldest_message_at=NOW + 2,
            next_timer_at=None,
        ),
        EntityStatistics(
            entity="order",
            actors={Status.ACTIVE: 1, Status.COMPLETED: 1},
            expired=0,
            messages=1,
            kept_replies=1,
            timers=1,
            dead_letters=1,
            oldest_message_at=NOW + 6,
            next_timer_at=NOW + 500,
        ),
    ]
    [_, order] = await store.statistics(now=NOW + 4 + RETENTION)  # B's retention is over
    assert (order.actors, order.expired) == ({Status.ACTIVE: 1}, 1)


async def test_statistics_of_an_empty_store_are_empty(store: Store) -> None:
    """No entity, no record."""
    assert await store.statistics(now=NOW) == []


async def test_a_tool_opens_an_existing_sqlite_file_as_it_is(tmp_path: Path) -> None:
    """``migrate=False`` reads what a runtime's store wrote, and creates nothing."""
    path = tmp_path / "app.db"
    missing = tmp_path / "typo.db"
    with pytest.raises(StoreUnavailable, match="no such file"):
        await open_store(f"sqlite:///{missing}", migrate=False)
    assert not missing.exists()
    with pytest.raises(StoreUnavailable, match="in-memory"):
        await open_store("sqlite:///:memory:", migrate=False)
    runtime_store = await open_store(f"sqlite:///{path}")
    try:
        await admit(runtime_store, A)
        tool = await open_store(f"sqlite:///{path}", migrate=False)
        try:
            assert (await tool.load_actor(A)) is not None
        finally:
            await tool.close()
    finally:
        await runtime_store.close()


async def test_a_tool_refuses_a_sqlite_file_at_an_older_schema(tmp_path: Path) -> None:
    """A tool never migrates: the application does, when it opens the store."""
    path = tmp_path / "old.db"
    old = await SQLiteStore.open(str(path), schema_version=3)
    await old.close()
    with pytest.raises(StoreUnavailable, match=r"schema version 3, not .*application first"):
        await open_store(f"sqlite:///{path}", migrate=False)


async def test_a_tool_refuses_a_postgresql_schema_without_tables() -> None:
    """``migrate=False`` on an empty schema: a clear error, and no table is created."""
    async with fresh_schema_url("inspect") as url:
        with pytest.raises(StoreUnavailable, match="no keyed-actors tables in schema"):
            await open_store(url, migrate=False)
        store = await open_store(url)  # creates them
        await store.close()
        tool = await open_store(url, migrate=False)
        try:
            assert await tool.statistics(now=NOW) == []
        finally:
            await tool.close()


async def test_a_tool_may_hold_the_runtime_lock_for_a_moment(tmp_path: Path) -> None:
    """``exclusive=True`` is refused beside a runtime; a runtime opening meanwhile waits.

    Up to a second, instead of failing at once.
    """
    url = f"sqlite:///{tmp_path / 'app.db'}"
    runtime_store = await open_store(url)
    try:
        with pytest.raises(StoreUnavailable, match="already open in a runtime's store"):
            await open_store(url, migrate=False, exclusive=True)
    finally:
        await runtime_store.close()
    tool = await open_store(url, migrate=False, exclusive=True)
    async with anyio.create_task_group() as tg:

        async def let_go() -> None:
            await anyio.sleep(0.2)
            await tool.close()

        tg.start_soon(let_go)
        runtime_store = await open_store(url)
        await runtime_store.close()
    reader = await open_store(url, migrate=False)  # a plain tool's store takes no lock
    runtime_store = await open_store(url)
    await runtime_store.close()
    await reader.close()


async def test_a_symbolic_link_to_the_file_names_the_same_lock(tmp_path: Path) -> None:
    """Two paths to one database are one database."""
    (tmp_path / "link.db").symlink_to(tmp_path / "real.db")
    first = await open_store(f"sqlite:///{tmp_path / 'real.db'}")
    try:
        with pytest.raises(StoreUnavailable, match="already open"):
            await open_store(f"sqlite:///{tmp_path / 'link.db'}")
    finally:
        await first.close()


async def test_a_forked_child_does_not_keep_the_file_locked(tmp_path: Path) -> None:
    """The child closes its copy of the lock: once the parent closes, the file is free."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    store = await open_store(url)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        child = os.fork()
    if child == 0:  # the child waits until told, holding whatever it inherited
        os.read(read, 1)
        os._exit(0)
    try:
        await store.close()
        again = await open_store(url)
        await again.close()
    finally:
        os.write(write, b"x")
        await anyio.to_thread.run_sync(os.waitpid, child, 0)
        os.close(read)
        os.close(write)


async def test_entity_names_are_those_with_actors(store: Store) -> None:
    """In order, each once."""
    assert await store.entity_names() == []
    for actor in (A, B, C):
        await admit(store, actor)
    assert await store.entity_names() == ["cart", "order"]


async def test_one_runtime_store_per_sqlite_file(tmp_path: Path) -> None:
    """A second runtime on a file would run its actors twice: refused, until the first closes."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    first = await open_store(url)
    try:
        with pytest.raises(StoreUnavailable, match="already open in a runtime's store"):
            await open_store(url)
    finally:
        await first.close()
    again = await open_store(url)
    await again.close()
