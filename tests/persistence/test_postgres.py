"""PostgreSQL-only behaviour: several stores (nodes) on one database, URLs, error translation.

Each store here has its own connection pool, as separate processes would. The contract suite
covers everything else on PostgreSQL through the ``contract_url`` fixture.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import pytest

from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    Enqueue,
    EnqueueOutcome,
    InvalidStoreUrl,
    MessageKind,
    NewMessage,
    Store,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    open_store,
)
from tests.postgres import fresh_schema_url, require_server, with_schema

LIMIT = 60.0
NODES = 4
A = ActorId(entity="order", key="a-1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg is asyncio-bound


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_schema_url("pgtest") as fresh:
        yield fresh


@pytest.fixture
async def nodes(url: str) -> AsyncIterator[list[Store]]:
    """``NODES`` stores on one fresh schema, each with its own pool, like separate nodes."""
    with anyio.fail_after(LIMIT):
        stores = [await open_store(url) for _ in range(NODES)]
    try:
        yield stores
    finally:
        with anyio.fail_after(LIMIT):
            for store in stores:
                await store.close()


def start(payload: bytes) -> NewMessage:
    return NewMessage(kind=MessageKind.START, handler="begin", payload=payload)


def tell(payload: bytes) -> NewMessage:
    return NewMessage(kind=MessageKind.TELL, handler="poke", payload=payload)


async def admit(store: Store, actor: ActorId, payload: bytes) -> AdmitOutcome:
    item = Admit(actor=actor, message=start(payload), init=ActorInit(retention=60.0))
    [outcome] = await store.write([item], now=1.0)
    assert isinstance(outcome, AdmitOutcome)
    return outcome


async def test_concurrent_admits_of_one_new_key_from_several_nodes_create_exactly_one_actor(
    nodes: Sequence[Store],
) -> None:
    """G1 across nodes: of N concurrent starts of one key, exactly one sees created=True."""
    starts = 3 * NODES
    with anyio.fail_after(LIMIT):
        for race in range(5):
            actor = ActorId(entity="order", key=f"race-{race}")
            outcomes: list[AdmitOutcome] = []

            async with anyio.create_task_group() as tg:
                for index in range(starts):
                    tg.start_soon(start_into, outcomes, nodes[index % NODES], actor, index)

            assert [o.created for o in outcomes].count(True) == 1
            assert {o.generation for o in outcomes} == {1}
            kinds = [m.kind for m in await nodes[race % NODES].load_mailbox(actor)]
            assert kinds == [MessageKind.START] + [MessageKind.DUPLICATE] * (starts - 1)


async def start_into(
    outcomes: list[AdmitOutcome], store: Store, actor: ActorId, index: int
) -> None:
    outcomes.append(await admit(store, actor, str(index).encode()))


async def test_concurrent_enqueues_from_several_nodes_take_ids_in_commit_order(
    nodes: Sequence[Store],
) -> None:
    """G2 across nodes: a mailbox only grows at its end, so no reader ever misses a message."""
    sends_per_node = 40
    done = anyio.Event()
    snapshots: list[list[int]] = []

    async def sender(store: Store, node: int) -> None:
        for index in range(sends_per_node):
            item = Enqueue(actor=A, message=tell(f"{node}:{index}".encode()))
            [outcome] = await store.write([item], now=2.0)
            assert isinstance(outcome, EnqueueOutcome)
            assert outcome.message is not None

    async def reader() -> None:
        while not done.is_set():
            snapshots.append([m.id for m in await nodes[0].load_mailbox(A)])
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(LIMIT):
        assert (await admit(nodes[0], A, b"start")).created
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            async with anyio.create_task_group() as senders:
                for node, store in enumerate(nodes):
                    senders.start_soon(sender, store, node)
            done.set()
        final = await nodes[0].load_mailbox(A)

    ids = [m.id for m in final]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids) == 1 + NODES * sends_per_node
    for node in range(NODES):
        mine = [m.payload for m in final if m.payload.startswith(f"{node}:".encode())]
        assert mine == [f"{node}:{index}".encode() for index in range(sends_per_node)]
    # Every snapshot a reader took is a prefix of every later one: ids were never taken by a
    # batch that committed after a batch with larger ids.
    for earlier, later in itertools.pairwise(snapshots):
        assert later[: len(earlier)] == earlier


async def test_nodes_opening_one_new_schema_at_once_all_open_it(url: str) -> None:
    """Migrations run once per schema, whoever opens it first; the others wait and use it."""
    opened: list[Store] = []

    async def open_one() -> None:
        opened.append(await open_store(url))

    with anyio.fail_after(LIMIT):
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(NODES):
                    tg.start_soon(open_one)
            assert len(opened) == NODES
            assert (await admit(opened[0], A, b"start")).created
            assert not (await admit(opened[-1], A, b"again")).created
        finally:
            for store in opened:
                await store.close()


async def test_the_schema_parameter_isolates_stores_in_one_database(url: str) -> None:
    """?schema=name keeps a store's tables apart from another schema's in one database."""
    async with fresh_schema_url("pgother") as other_url:
        with anyio.fail_after(LIMIT):
            first, second = await open_store(url), await open_store(other_url)
            try:
                assert (await admit(first, A, b"one")).created
                assert (await admit(second, A, b"two")).created
                assert [m.payload for m in await second.load_mailbox(A)] == [b"two"]
            finally:
                await first.close()
                await second.close()


@pytest.mark.parametrize(
    "bad",
    [
        "postgresql://localhost/db?schema=Upper",
        "postgresql://localhost/db?schema=1starts_with_digit",
        "postgresql://localhost/db?schema=has-dash",
        "postgresql://localhost/db?schema=",
        "postgresql://localhost/db?schema=x%22%3B%20DROP%20SCHEMA%20public",
        f"postgresql://localhost/db?schema={'x' * 64}",
        "postgresql://localhost/db?schema=a&schema=b",
        "postgresql://localhost:99999/db",
        "postgresql://localhost:port/db",
        "postgresql://localhost/db/more",
        "postgresql://localhost/db#fragment",
        "postgresql://localhost/db?sslmode=sometimes",
        "postgresql://user@[::1/db",
    ],
)
async def test_a_malformed_postgres_url_is_an_invalid_store_url(bad: str) -> None:
    """A URL the store cannot use is a ValueError naming the problem, before any connection."""
    with anyio.fail_after(LIMIT), pytest.raises(InvalidStoreUrl) as raised:
        await open_store(bad)

    assert isinstance(raised.value, ValueError)
    assert "URL" in str(raised.value)


async def test_an_unreachable_server_is_store_unavailable() -> None:
    """Connection failures come out as StoreUnavailable, never as a driver exception."""
    with anyio.fail_after(LIMIT), pytest.raises(StoreUnavailable):
        await open_store("postgresql://postgres@127.0.0.1:1/test?schema=nowhere")


async def test_a_missing_database_is_store_unavailable() -> None:
    """A server that refuses the connection is StoreUnavailable too."""
    server = require_server()
    missing = server.rsplit("/", 1)[0] + "/keyed_actors_no_such_database"
    with anyio.fail_after(LIMIT), pytest.raises(StoreUnavailable):
        await open_store(missing)


async def test_a_lock_timeout_is_store_busy(url: str) -> None:
    """A retryable conflict (here a lock timeout) is StoreBusy, and the store still works."""
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    from persistence.postgres import LOCK_NAMESPACE, lock_key

    schema = url.rsplit("schema=", 1)[1]
    with anyio.fail_after(LIMIT):
        store = await open_store(f"{url}&lock_timeout=200")
        holder = await asyncpg.connect(require_server())
        try:
            async with holder.transaction():
                await holder.execute(
                    "SELECT pg_advisory_xact_lock($1::int4, $2::int4)",
                    LOCK_NAMESPACE,
                    lock_key(schema, A),
                )
                with pytest.raises(StoreBusy) as raised:
                    await admit(store, A, b"blocked")
                assert raised.value.retryable
            assert (await admit(store, A, b"free")).created
        finally:
            await holder.close()
            await store.close()


async def test_a_dropped_schema_is_a_store_error_not_a_driver_error(url: str) -> None:
    """Whatever PostgreSQL reports comes out as a StoreError subclass."""
    import asyncpg

    schema = url.rsplit("schema=", 1)[1]
    with anyio.fail_after(LIMIT):
        store = await open_store(url)
        try:
            conn = await asyncpg.connect(require_server())
            try:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            finally:
                await conn.close()
            with pytest.raises(StoreError) as raised:
                await store.load_actor(A)
            assert type(raised.value) is StoreError
            assert not isinstance(raised.value, asyncpg.PostgresError)
        finally:
            await store.close()
            await store.close()


async def test_without_asyncpg_a_postgres_url_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """keyed-actors[postgres] is optional: without asyncpg, the error says how to get it."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # makes `import asyncpg` fail
    monkeypatch.delitem(sys.modules, "persistence.postgres", raising=False)
    with (
        anyio.fail_after(LIMIT),
        pytest.raises(StoreUnavailable, match=r"keyed-actors\[postgres\]"),
    ):
        await open_store(with_schema("postgresql://localhost/db", "x"))
