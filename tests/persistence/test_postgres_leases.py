"""The multi-node part of the storage contract (``persistence.Leases``) on PostgreSQL.

Two stores on one schema stand for two nodes. Sessions expire by their lease; here a test
expires one at once with SQL, which is what a node paused past its lease finds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    Completion,
    Ended,
    Enqueue,
    EnqueueOutcome,
    Leases,
    MailFor,
    MessageKind,
    NewMessage,
    Notification,
    RepliesReady,
    Reply,
    Status,
    Store,
    TurnCommit,
    TurnOutcome,
    open_store,
)
from tests.postgres import expire_session, fresh_schema_url

LIMIT = 30.0
LEASE = 30.0
A = ActorId(entity="order", key="a-1")
INIT = ActorInit(retention=60.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg is asyncio-bound


class Node:
    """A store joined as one node, and the wake-ups it heard."""

    def __init__(self, store: Store) -> None:
        assert isinstance(store, Leases)
        self.store = store
        self.leases: Leases = store
        self.heard: list[Notification] = []

    async def join(self, name: str) -> int:
        return await self.leases.join(name, lease=LEASE, listener=self.heard.append)

    async def hear(self, wanted: Notification) -> None:
        with anyio.fail_after(5):
            while wanted not in self.heard:  # noqa: ASYNC110  # the listener is a plain callback
                await anyio.sleep(0.01)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_schema_url("leases") as fresh:
        yield fresh


@pytest.fixture
async def two(url: str) -> AsyncIterator[tuple[Node, Node]]:
    with anyio.fail_after(LIMIT):
        a, b = Node(await open_store(url)), Node(await open_store(url))
        await a.join("a")
        await b.join("b")
    try:
        yield a, b
    finally:
        with anyio.fail_after(LIMIT):
            await a.store.close()
            await b.store.close()


def start(payload: bytes = b"1", reply_to: int | None = None) -> Admit:
    return Admit(
        actor=A,
        message=NewMessage(kind=MessageKind.START, handler="h", payload=payload, reply_to=reply_to),
        init=INIT,
    )


def tell(reply_to: int | None = None) -> Enqueue:
    return Enqueue(
        actor=A,
        message=NewMessage(kind=MessageKind.TELL, handler="h", payload=b"2", reply_to=reply_to),
    )


async def admit(node: Node) -> AdmitOutcome:
    [outcome] = await node.store.write([start()], now=1.0)
    assert isinstance(outcome, AdmitOutcome)
    return outcome


async def test_sessions_are_new_numbers_and_renew_until_they_expire(
    url: str, two: tuple[Node, Node]
) -> None:
    a, b = two
    assert a.leases.session is not None
    assert b.leases.session is not None
    assert a.leases.session != b.leases.session
    assert await a.leases.renew() is True
    await expire_session(url, "a")
    assert await a.leases.renew() is False
    old = a.leases.session
    assert await a.join("a") > max(old or 0, b.leases.session or 0)
    assert await a.leases.renew() is True


async def test_the_writer_claims_an_actor_nobody_runs_and_wakes_its_owner_after(
    two: tuple[Node, Node],
) -> None:
    """A stored message names who runs its actor: the writer's epoch, or nobody (elsewhere)."""
    a, b = two
    created = await admit(a)
    assert created.message is not None
    assert created.message.epoch is not None
    [sent] = await b.store.write([tell(reply_to=b.leases.session)], now=2.0)
    assert isinstance(sent, EnqueueOutcome)
    assert sent.message is not None
    assert sent.message.epoch is None  # a runs it
    await a.hear(MailFor(A))
    [mailbox_head, mailbox_next] = await a.store.load_mailbox(A)
    assert mailbox_next.reply_to == b.leases.session
    assert mailbox_head.reply_to is None


async def test_a_turn_commits_only_under_its_live_lease(url: str, two: tuple[Node, Node]) -> None:
    """G7: a wrong epoch, or a session that expired, fences the commit: nothing is applied."""
    a, b = two
    created = await admit(a)
    assert created.message is not None
    assert created.message.epoch is not None
    epoch = created.message.epoch
    commit = TurnCommit(actor=A, generation=1, consumed=created.message.id, state=b"s")
    [wrong] = await a.store.write([msgspec.structs.replace(commit, epoch=epoch + 1)], now=2.0)
    assert wrong == TurnOutcome(applied=False, fenced=True)
    await expire_session(url, "a")
    [late] = await a.store.write([msgspec.structs.replace(commit, epoch=epoch)], now=2.0)
    assert late == TurnOutcome(applied=False, fenced=True)
    assert [m.id for m in await a.store.load_mailbox(A)] == [created.message.id]
    record = await a.store.load_actor(A)
    assert record is not None
    assert record.state is None
    # b takes the actor over: a larger epoch, under which the turn commits.
    taken = await b.leases.claim_orphans(entities=frozenset({"order"}), limit=10)
    assert list(taken) == [A]
    assert taken[A] > epoch
    [done] = await b.store.write([msgspec.structs.replace(commit, epoch=taken[A])], now=3.0)
    assert isinstance(done, TurnOutcome)
    assert done.applied
    assert not done.fenced


async def test_claim_keeps_live_leases_and_release_waits_for_an_empty_mailbox(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    created = await admit(a)
    assert created.message is not None
    assert created.message.epoch is not None
    epoch = created.message.epoch
    assert await b.leases.claim([A]) == {}  # a's lease is live
    assert await a.leases.claim([A]) == {A: epoch}  # a keeps it
    assert await a.leases.release(A, epoch) is False  # its start is unhandled
    [consumed] = await a.store.write(
        [TurnCommit(actor=A, generation=1, consumed=created.message.id, epoch=epoch)], now=2.0
    )
    assert isinstance(consumed, TurnOutcome)
    assert consumed.applied
    assert await a.leases.release(A, epoch + 1) is False  # not that epoch
    assert await a.leases.release(A, epoch) is True
    claimed = await b.leases.claim([A])
    assert claimed[A] > epoch


async def test_replies_go_to_the_callers_session_and_forwards_name_the_next_message(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    assert b.leases.session is not None
    created = await admit(a)
    [asked] = await b.store.write([tell(reply_to=b.leases.session)], now=2.0)
    assert created.message is not None
    assert created.message.epoch is not None
    assert isinstance(asked, EnqueueOutcome)
    assert asked.message is not None
    epoch = created.message.epoch
    answer = Reply(message=asked.message.id, session=b.leases.session, handler="h", reply=b"7")
    await a.store.write(
        [
            TurnCommit(actor=A, generation=1, consumed=created.message.id, epoch=epoch),
            TurnCommit(
                actor=A,
                generation=1,
                consumed=asked.message.id,
                epoch=epoch,
                replies=[answer],
                completion=Completion(status=Status.COMPLETED, result=b"r"),
            ),
        ],
        now=3.0,
    )
    await b.hear(RepliesReady())
    await b.hear(Ended(A, 1, Status.COMPLETED))
    [row] = await b.leases.take_replies()
    assert (row.message, row.handler, row.reply, row.forward) == (asked.message.id, "h", b"7", None)
    assert await b.leases.take_replies() == []
    assert await b.leases.unhandled([asked.message.id, created.message.id]) == set()
