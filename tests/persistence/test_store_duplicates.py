"""Store contract for duplicates, supersede and per-message idempotency keys."""

from __future__ import annotations

import anyio

from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    Completion,
    Enqueue,
    EnqueueOutcome,
    MessageKind,
    NewMessage,
    Status,
    Store,
    StoredReply,
    Successor,
    TurnCommit,
    TurnOutcome,
    WriteItem,
    WriteOutcome,
)

A = ActorId(entity="payment", key="order-1")
INIT = ActorInit(retention=10.0)


def start(payload: bytes = b'"s"') -> NewMessage:
    return NewMessage(kind=MessageKind.START, handler="charge", payload=payload, meta=b'{"a":1}')


def asked(key: str, payload: bytes = b"1") -> NewMessage:
    return NewMessage(kind=MessageKind.REQUEST, handler="add", payload=payload, idempotency_key=key)


async def one(store: Store, item: WriteItem, now: float) -> WriteOutcome:
    with anyio.fail_after(30):
        [outcome] = await store.write([item], now=now)
    return outcome


async def test_a_duplicate_keeps_the_callers_metadata(store: Store) -> None:
    """G1: the duplicate message carries the caller's metadata to the owner."""
    first = await one(store, Admit(actor=A, message=start(), init=INIT), 1.0)
    second = await one(store, Admit(actor=A, message=start(b'"t"'), init=INIT), 2.0)
    assert isinstance(first, AdmitOutcome)
    assert isinstance(second, AdmitOutcome)
    assert second.message is not None
    assert (second.message.kind, second.message.meta) == (MessageKind.DUPLICATE, b'{"a":1}')
    assert [m.payload for m in await store.load_mailbox(A)] == [b'"s"', b'"t"']


async def test_to_terminal_delivers_a_duplicate_to_an_ended_actor(store: Store) -> None:
    """G1: with a custom policy, a duplicate reaches the owner even after completion."""
    first = await one(store, Admit(actor=A, message=start(), init=INIT), 1.0)
    assert isinstance(first, AdmitOutcome)
    assert first.message is not None
    done = Completion(status=Status.FAILED, error=b"e")
    await one(
        store, TurnCommit(actor=A, generation=1, consumed=first.message.id, completion=done), 2.0
    )
    plain = await one(store, Admit(actor=A, message=start(), init=INIT), 3.0)
    routed = await one(store, Admit(actor=A, message=start(), init=INIT, to_terminal=True), 3.0)
    assert isinstance(plain, AdmitOutcome)
    assert isinstance(routed, AdmitOutcome)
    assert plain.message is None
    assert plain.error == b"e"
    assert routed.message is not None
    assert (routed.created, routed.status, routed.message.generation) == (False, Status.FAILED, 1)


async def test_a_successor_replaces_the_generation_in_the_same_commit(store: Store) -> None:
    """G1, G3: supersede ends generation n and starts n+1 with its first message, atomically."""
    first = await one(store, Admit(actor=A, message=start(), init=INIT), 1.0)
    dup = await one(store, Admit(actor=A, message=start(b'"new"'), init=INIT), 2.0)
    late = await one(store, Enqueue(actor=A, message=asked("k1"), generation=1), 2.0)
    assert isinstance(first, AdmitOutcome)
    assert isinstance(dup, AdmitOutcome)
    assert isinstance(late, EnqueueOutcome)
    assert dup.message is not None
    assert late.message is not None
    commit = TurnCommit(
        actor=A,
        generation=1,
        consumed=dup.message.id,
        completion=Completion(status=Status.SUPERSEDED),
        successor=Successor(init=INIT, message=start(b'"new"')),
    )
    outcome = await one(store, commit, 3.0)
    assert isinstance(outcome, TurnOutcome)
    assert outcome.successor is not None
    assert outcome.successor.generation == 2
    record = await store.load_actor(A)
    assert record is not None
    assert (record.generation, record.status) == (2, Status.ACTIVE)
    mailbox = await store.load_mailbox(A)
    assert [(m.generation, m.payload) for m in mailbox] == [(2, b'"new"')]


async def test_a_readmit_is_decided_like_an_admit_after_the_turn(store: Store) -> None:
    """G1: a forwarded duplicate reaches whatever generation is current when it commits."""
    first = await one(store, Admit(actor=A, message=start(), init=INIT), 1.0)
    assert isinstance(first, AdmitOutcome)
    assert first.message is not None
    commit = TurnCommit(
        actor=A,
        generation=1,
        consumed=first.message.id,
        completion=Completion(status=Status.COMPLETED, result=b"r"),
        readmit=Admit(actor=A, message=start(), init=INIT),
    )
    outcome = await one(store, commit, 2.0)
    assert isinstance(outcome, TurnOutcome)
    assert outcome.readmitted is not None
    assert (outcome.readmitted.created, outcome.readmitted.result) == (False, b"r")


async def test_an_idempotency_key_stores_a_message_once_and_keeps_its_reply(store: Store) -> None:
    """G5: a repeat gets the pending message, then its stored reply, until retention ends."""
    await one(store, Admit(actor=A, message=start(), init=INIT), 1.0)
    first = await one(store, Enqueue(actor=A, message=asked("k")), 2.0)
    pending = await one(store, Enqueue(actor=A, message=asked("k")), 2.5)
    assert isinstance(first, EnqueueOutcome)
    assert isinstance(pending, EnqueueOutcome)
    assert first.message is not None
    assert pending.message is None
    assert pending.repeat_of == first.message
    assert pending.stored_reply is None
    reply = StoredReply(reply=b"42")
    await one(store, TurnCommit(actor=A, generation=1, consumed=first.message.id, reply=reply), 3.0)
    assert [m.kind for m in await store.load_mailbox(A)] == [MessageKind.START]
    repeat = await one(store, Enqueue(actor=A, message=asked("k")), 12.9)
    assert isinstance(repeat, EnqueueOutcome)
    assert repeat.stored_reply == reply
    again = await one(store, Enqueue(actor=A, message=asked("k")), 13.1)
    assert isinstance(again, EnqueueOutcome)
    assert again.message is not None, "after the window the key is free again"
    assert again.message.id != first.message.id


async def test_purge_removes_replies_whose_window_passed(store: Store) -> None:
    """G6: kept replies do not outlive their window; storage stays bounded."""
    await one(store, Admit(actor=A, message=start(), init=INIT), 1.0)
    first = await one(store, Enqueue(actor=A, message=asked("k")), 2.0)
    assert isinstance(first, EnqueueOutcome)
    assert first.message is not None
    await one(
        store,
        TurnCommit(actor=A, generation=1, consumed=first.message.id, reply=StoredReply()),
        3.0,
    )
    with anyio.fail_after(30):
        assert await store.purge_expired(now=12.0, limit=10) == 0
        assert await store.purge_expired(now=13.5, limit=10) == 1
    again = await one(store, Enqueue(actor=A, message=asked("k")), 14.0)
    assert isinstance(again, EnqueueOutcome)
    assert again.message is not None
