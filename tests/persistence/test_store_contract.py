"""The storage contract, run against every backend through the ``store`` fixture.

Each test drives a real store through ``persistence``'s public names only, so a new backend
passes this module unchanged. Guarantee numbers refer to DESIGN.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import anyio
import pytest

from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    AttributeValue,
    Completion,
    Enqueue,
    EnqueueOutcome,
    MessageKind,
    MessageRecord,
    NewMessage,
    Status,
    Store,
    StoreError,
    StoreUnavailable,
    TurnCommit,
    TurnOutcome,
    WriteItem,
    WriteOutcome,
    open_store,
)

LIMIT = 30.0
RETENTION = 60.0

A = ActorId(entity="order", key="a-1")
B = ActorId(entity="order", key="b-2")
C = ActorId(entity="payment", key="a-1")


def start(payload: bytes = b"start", handler: str = "begin") -> NewMessage:
    return NewMessage(kind=MessageKind.START, handler=handler, payload=payload)


def tell(payload: bytes = b"tell", handler: str = "poke") -> NewMessage:
    return NewMessage(kind=MessageKind.TELL, handler=handler, payload=payload)


def actor_init(
    retention: float = RETENTION, attributes: Mapping[str, AttributeValue] | None = None
) -> ActorInit:
    return ActorInit(retention=retention, attributes=dict(attributes or {}))


async def write_one(store: Store, item: WriteItem, *, now: float) -> WriteOutcome:
    outcomes = await store.write([item], now=now)
    assert len(outcomes) == 1
    return outcomes[0]


async def admit(
    store: Store,
    actor: ActorId,
    *,
    now: float,
    payload: bytes = b"start",
    init: ActorInit | None = None,
) -> AdmitOutcome:
    item = Admit(actor=actor, message=start(payload), init=init or actor_init())
    outcome = await write_one(store, item, now=now)
    assert isinstance(outcome, AdmitOutcome)
    return outcome


async def enqueue(store: Store, item: Enqueue, *, now: float) -> EnqueueOutcome:
    outcome = await write_one(store, item, now=now)
    assert isinstance(outcome, EnqueueOutcome)
    return outcome


async def send(store: Store, actor: ActorId, *, now: float, payload: bytes = b"tell") -> int:
    """Store a tell for a live actor and return its message id."""
    return stored(await enqueue(store, Enqueue(actor=actor, message=tell(payload)), now=now)).id


async def commit(store: Store, item: TurnCommit, *, now: float) -> TurnOutcome:
    outcome = await write_one(store, item, now=now)
    assert isinstance(outcome, TurnOutcome)
    return outcome


def stored(outcome: AdmitOutcome | EnqueueOutcome) -> MessageRecord:
    assert outcome.message is not None, f"expected a stored message, got {outcome}"
    return outcome.message


async def completed_actor(
    store: Store,
    actor: ActorId,
    *,
    now: float,
    retention: float = RETENTION,
    status: Status = Status.COMPLETED,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> int:
    """Create ``actor``, leave one unhandled tell in its mailbox, and end it at ``now``."""
    created = await admit(store, actor, now=now, init=actor_init(retention, attributes))
    assert created.created
    await send(store, actor, now=now, payload=b"left over")
    ended = await commit(
        store,
        TurnCommit(
            actor=actor,
            generation=created.generation,
            consumed=stored(created).id,
            completion=Completion(status=status, result=b"done", error=b"why"),
        ),
        now=now,
    )
    assert ended.applied
    return created.generation


# Admission (G1)


async def test_admit_on_a_new_key_creates_generation_one_with_its_start_message(
    store: Store,
) -> None:
    """G1: admission creates the actor and stores its first message in one transaction."""
    with anyio.fail_after(LIMIT):
        outcome = await admit(
            store, A, now=100.0, payload=b"hello", init=actor_init(30.0, {"tier": "gold"})
        )

        assert outcome.created
        assert outcome.generation == 1
        assert outcome.status is Status.ACTIVE
        message = stored(outcome)
        assert (message.entity, message.key, message.generation) == ("order", "a-1", 1)
        assert (message.kind, message.handler, message.payload) == (
            MessageKind.START,
            "begin",
            b"hello",
        )
        assert message.created_at == 100.0
        record = await store.load_actor(A)
        assert record is not None
        assert record.id == A
        assert (record.generation, record.status, record.state) == (1, Status.ACTIVE, None)
        assert (record.retention, record.created_at, record.updated_at) == (30.0, 100.0, 100.0)
        assert (record.completed_at, record.expires_at) == (None, None)
        assert dict(record.attributes) == {"tier": "gold"}
        assert await store.load_mailbox(A) == [message]


async def test_a_second_admit_in_the_same_batch_becomes_a_duplicate_message(store: Store) -> None:
    """G1: of two admissions of one key in a batch, exactly one creates the actor."""
    with anyio.fail_after(LIMIT):
        first, second = await store.write(
            [
                Admit(actor=A, message=start(b"one"), init=actor_init()),
                Admit(actor=A, message=start(b"two", handler="again"), init=actor_init()),
            ],
            now=5.0,
        )

        assert isinstance(first, AdmitOutcome)
        assert isinstance(second, AdmitOutcome)
        assert first.created
        assert not second.created
        assert second.generation == first.generation == 1
        assert second.status is Status.ACTIVE
        duplicate = stored(second)
        assert (duplicate.kind, duplicate.handler, duplicate.payload) == (
            MessageKind.DUPLICATE,
            "again",
            b"two",
        )
        assert duplicate.generation == 1
        assert await store.load_mailbox(A) == [stored(first), duplicate]


async def test_an_admit_in_a_later_batch_becomes_a_duplicate_of_the_same_generation(
    store: Store,
) -> None:
    """G1: a start of an active key is a duplicate message; the actor's record is untouched."""
    with anyio.fail_after(LIMIT):
        first = await admit(store, A, now=1.0, init=actor_init(10.0, {"origin": "first"}))
        second = await admit(
            store, A, now=2.0, payload=b"again", init=actor_init(99.0, {"origin": "second"})
        )

        assert not second.created
        assert second.generation == first.generation
        assert (second.result, second.error) == (None, None)
        duplicate = stored(second)
        assert (duplicate.kind, duplicate.payload, duplicate.generation) == (
            MessageKind.DUPLICATE,
            b"again",
            first.generation,
        )
        record = await store.load_actor(A)
        assert record is not None
        assert (record.retention, record.created_at) == (10.0, 1.0)
        assert dict(record.attributes) == {"origin": "first"}
        assert await store.load_mailbox(A) == [stored(first), duplicate]


async def test_concurrent_admits_of_one_key_create_exactly_one_actor(store: Store) -> None:
    """G1: of N concurrent starts of one key on one store, exactly one sees created=True."""
    outcomes: list[AdmitOutcome] = []

    async def start_one(index: int) -> None:
        outcomes.append(await admit(store, A, now=1.0, payload=str(index).encode()))

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            for index in range(25):
                tg.start_soon(start_one, index)

        assert sum(outcome.created for outcome in outcomes) == 1
        assert {outcome.generation for outcome in outcomes} == {1}
        kinds = [message.kind for message in await store.load_mailbox(A)]
        assert kinds == [MessageKind.START] + [MessageKind.DUPLICATE] * 24


async def test_concurrent_admits_through_two_stores_on_one_file_create_exactly_one_actor(
    db_path: Path,
) -> None:
    """G1: exactly one of N concurrent starts wins even across connections to one file.

    The second store is a tool's (``migrate=False``): one runtime's store per file.
    """
    url = f"sqlite:///{db_path}"
    outcomes: list[AdmitOutcome] = []

    async def start_one(on: Store, index: int) -> None:
        outcomes.append(await admit(on, A, now=1.0, payload=str(index).encode()))

    with anyio.fail_after(LIMIT):
        first = await open_store(url)
        second = await open_store(url, migrate=False)
        try:
            async with anyio.create_task_group() as tg:
                for index in range(20):
                    tg.start_soon(start_one, first if index % 2 else second, index)
        finally:
            await first.close()
            await second.close()

        assert sum(outcome.created for outcome in outcomes) == 1
        ids = [stored(outcome).id for outcome in outcomes]
        assert len(set(ids)) == len(ids)


# Retention (G6)


@pytest.mark.parametrize(
    ("status", "result", "error"),
    [
        (Status.COMPLETED, b"the result", None),
        (Status.FAILED, None, b"the error"),
        (Status.CANCELLED, None, None),
        (Status.SUPERSEDED, b"handed on", None),
    ],
)
async def test_admit_on_an_ended_actor_within_retention_stores_nothing_and_returns_its_outcome(
    store: Store, status: Status, result: bytes | None, error: bytes | None
) -> None:
    """G6: inside the retention window a duplicate start gets the stored outcome.

    With it, when the record expires: the runtime answers later duplicates until then.
    """
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=0.0, init=actor_init(retention=10.0))
        await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=stored(created).id,
                completion=Completion(status=status, result=result, error=error),
            ),
            now=0.0,
        )
        before = await store.load_actor(A)

        outcome = await admit(store, A, now=9.5, payload=b"late")

        assert outcome == AdmitOutcome(
            created=False,
            generation=1,
            status=status,
            message=None,
            result=result,
            error=error,
            expires_at=10.0,
        )
        assert await store.load_mailbox(A) == []
        assert await store.load_actor(A) == before


async def test_admit_after_retention_creates_a_larger_generation_without_the_old_data(
    store: Store,
) -> None:
    """G6: a start after the window creates a new generation; the old one's data is gone."""
    with anyio.fail_after(LIMIT):
        old = await completed_actor(
            store, A, now=0.0, retention=10.0, attributes={"stale": "yes", "shared": 1}
        )
        assert [m.payload for m in await store.load_mailbox(A)] == [b"left over"]

        outcome = await admit(
            store, A, now=10.5, payload=b"fresh", init=actor_init(5.0, {"shared": 2})
        )

        assert outcome.created
        assert outcome.generation > old
        assert outcome.status is Status.ACTIVE
        assert await store.load_mailbox(A) == [stored(outcome)]
        record = await store.load_actor(A)
        assert record is not None
        assert record.generation == outcome.generation
        assert (record.status, record.state, record.result, record.error) == (
            Status.ACTIVE,
            None,
            None,
            None,
        )
        assert (record.completed_at, record.expires_at) == (None, None)
        assert (record.retention, record.created_at) == (5.0, 10.5)
        assert dict(record.attributes) == {"shared": 2}


async def test_retention_ends_at_expires_at_for_admit_and_purge_alike(store: Store) -> None:
    """G6: admission and purge agree on the instant a record expires."""
    with anyio.fail_after(LIMIT):
        await completed_actor(store, A, now=0.0, retention=10.0)
        await completed_actor(store, B, now=0.0, retention=10.0)

        assert not (await admit(store, A, now=9.999)).created
        assert await store.purge_expired(now=9.999, limit=10) == 0

        assert (await admit(store, A, now=10.0)).created
        assert await store.purge_expired(now=10.0, limit=10) == 1
        assert await store.load_actor(B) is None


# Enqueue


async def test_enqueue_with_init_creates_a_virtual_actor(store: Store) -> None:
    """An enqueue with init creates a missing actor and stores the message for it."""
    with anyio.fail_after(LIMIT):
        outcome = await enqueue(
            store,
            Enqueue(actor=A, message=tell(b"first"), init=actor_init(7.0, {"kind": "virtual"})),
            now=3.0,
        )

        assert outcome.created
        assert (outcome.generation, outcome.status) == (1, Status.ACTIVE)
        message = stored(outcome)
        assert (message.kind, message.payload, message.generation) == (
            MessageKind.TELL,
            b"first",
            1,
        )
        record = await store.load_actor(A)
        assert record is not None
        assert (record.generation, record.status, record.retention) == (1, Status.ACTIVE, 7.0)
        assert dict(record.attributes) == {"kind": "virtual"}
        assert await store.load_mailbox(A) == [message]


async def test_enqueue_with_init_to_a_live_actor_stores_the_message_without_creating(
    store: Store,
) -> None:
    """An init is used only when there is no live record."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0, init=actor_init(10.0, {"from": "admit"}))
        outcome = await enqueue(
            store,
            Enqueue(actor=A, message=tell(), init=actor_init(99.0, {"from": "enqueue"})),
            now=2.0,
        )

        assert not outcome.created
        assert (outcome.generation, outcome.status) == (1, Status.ACTIVE)
        assert await store.load_mailbox(A) == [stored(created), stored(outcome)]
        record = await store.load_actor(A)
        assert record is not None
        assert record.retention == 10.0
        assert dict(record.attributes) == {"from": "admit"}


async def test_enqueue_without_init_to_a_missing_actor_stores_nothing(store: Store) -> None:
    """A message for an actor that does not exist is not accepted."""
    with anyio.fail_after(LIMIT):
        outcome = await enqueue(store, Enqueue(actor=A, message=tell()), now=1.0)

        assert outcome == EnqueueOutcome(message=None, created=False, generation=0, status=None)
        assert await store.load_actor(A) is None
        assert await store.load_mailbox(A) == []
        assert await store.actors_with_mail(after=None, limit=10) == []


@pytest.mark.parametrize("with_init", [False, True], ids=["without-init", "with-init"])
async def test_enqueue_to_an_ended_actor_stores_nothing_and_reports_its_status(
    store: Store, with_init: bool
) -> None:
    """G6: within retention an ended actor takes no messages, and init does not revive it."""
    with anyio.fail_after(LIMIT):
        generation = await completed_actor(store, A, now=0.0, status=Status.FAILED)
        before = await store.load_mailbox(A)
        init = actor_init() if with_init else None

        outcome = await enqueue(store, Enqueue(actor=A, message=tell(), init=init), now=1.0)

        assert outcome == EnqueueOutcome(
            message=None, created=False, generation=generation, status=Status.FAILED
        )
        assert await store.load_mailbox(A) == before
        record = await store.load_actor(A)
        assert record is not None
        assert (record.generation, record.status) == (generation, Status.FAILED)


async def test_enqueue_bound_to_a_stale_generation_stores_nothing(store: Store) -> None:
    """A message for generation N never reaches generation N+1 (no ABA)."""
    with anyio.fail_after(LIMIT):
        old = await completed_actor(store, A, now=0.0, retention=1.0)
        current = await admit(store, A, now=5.0)
        assert current.generation > old

        stale = await enqueue(store, Enqueue(actor=A, message=tell(), generation=old), now=6.0)
        bound = await enqueue(
            store, Enqueue(actor=A, message=tell(b"ok"), generation=current.generation), now=6.0
        )

        assert stale == EnqueueOutcome(
            message=None, created=False, generation=current.generation, status=Status.ACTIVE
        )
        assert stored(bound).generation == current.generation
        assert await store.load_mailbox(A) == [stored(current), stored(bound)]


async def test_an_enqueue_that_stores_no_message_creates_no_actor(store: Store) -> None:
    """An enqueue bound to a generation of a missing actor must not leave an empty actor behind.

    Enqueue stores nothing unless its generation matches; creating a record for it anyway
    leaves an active actor with an empty mailbox that never runs, ends or expires.
    """
    with anyio.fail_after(LIMIT):
        outcome = await enqueue(
            store, Enqueue(actor=A, message=tell(), generation=3, init=actor_init()), now=1.0
        )

        assert outcome.message is None
        assert await store.load_actor(A) is None, f"an actor was created though {outcome}"


# Turns (G3)


async def test_a_turn_commit_consumes_its_message_and_writes_state(store: Store) -> None:
    """G3: a turn's new state is committed with the consumption of its message."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=10.0)
        waiting = await send(store, A, now=10.0)

        outcome = await commit(
            store,
            TurnCommit(actor=A, generation=1, consumed=stored(created).id, state=b"s1"),
            now=20.0,
        )

        assert outcome.applied
        assert list(outcome.outgoing) == []
        assert [m.id for m in await store.load_mailbox(A)] == [waiting]
        record = await store.load_actor(A)
        assert record is not None
        assert (record.state, record.status, record.updated_at) == (b"s1", Status.ACTIVE, 20.0)
        assert (record.completed_at, record.expires_at) == (None, None)


async def test_a_turn_commit_without_state_keeps_the_stored_state(store: Store) -> None:
    """G3: state None means the turn left the state as it was, also between turns of a batch."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0)
        ids = [await send(store, A, now=1.0) for _ in range(3)]

        await commit(
            store,
            TurnCommit(actor=A, generation=1, consumed=stored(created).id, state=b"v1"),
            now=2.0,
        )
        await commit(store, TurnCommit(actor=A, generation=1, consumed=ids[0]), now=3.0)
        record = await store.load_actor(A)
        assert record is not None
        assert record.state == b"v1"

        await store.write(
            [
                TurnCommit(actor=A, generation=1, consumed=ids[1], state=b"v2"),
                TurnCommit(actor=A, generation=1, consumed=ids[2]),
            ],
            now=4.0,
        )
        record = await store.load_actor(A)
        assert record is not None
        assert record.state == b"v2"
        assert await store.load_mailbox(A) == []


async def test_pipelined_turns_in_one_batch_keep_the_last_state_written(store: Store) -> None:
    """G3: turns of one actor committed together apply in order; the last state wins."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0)
        second = await send(store, A, now=1.0)

        await store.write(
            [
                TurnCommit(actor=A, generation=1, consumed=stored(created).id, state=b"first"),
                TurnCommit(actor=A, generation=1, consumed=second, state=b"second"),
            ],
            now=2.0,
        )

        record = await store.load_actor(A)
        assert record is not None
        assert record.state == b"second"


async def test_a_turn_commit_sets_and_removes_attributes(store: Store) -> None:
    """G3: a turn's attribute changes are committed with it."""
    with anyio.fail_after(LIMIT):
        created = await admit(
            store, A, now=1.0, init=actor_init(attributes={"keep": 1, "drop": "x", "other": 0.5})
        )

        await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=stored(created).id,
                set_attributes={"keep": 2, "new": True},
                remove_attributes=["drop", "never-set"],
            ),
            now=2.0,
        )

        record = await store.load_actor(A)
        assert record is not None
        assert dict(record.attributes) == {"keep": 2, "new": True, "other": 0.5}


async def test_the_last_attribute_change_in_a_batch_wins(store: Store) -> None:
    """G3: turns committed in one batch change attributes in turn order."""
    with anyio.fail_after(LIMIT):
        created = await admit(
            store,
            A,
            now=1.0,
            init=actor_init(attributes={"removed_then_set": "old", "set_then_removed": "old"}),
        )
        second = await send(store, A, now=1.0)

        await store.write(
            [
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=stored(created).id,
                    set_attributes={"set_then_removed": "new", "set_twice": 1},
                    remove_attributes=["removed_then_set"],
                ),
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=second,
                    set_attributes={"removed_then_set": "back", "set_twice": 2},
                    remove_attributes=["set_then_removed"],
                ),
            ],
            now=2.0,
        )

        record = await store.load_actor(A)
        assert record is not None
        assert dict(record.attributes) == {"removed_then_set": "back", "set_twice": 2}


@pytest.mark.parametrize(
    ("status", "result", "error"),
    [
        (Status.COMPLETED, b"paid", None),
        (Status.FAILED, None, b"declined"),
        (Status.CANCELLED, None, None),
        (Status.SUPERSEDED, None, None),
    ],
)
async def test_a_completion_ends_the_generation_and_starts_its_retention(
    store: Store, status: Status, result: bytes | None, error: bytes | None
) -> None:
    """G6: completion sets completed_at to the commit time and expires_at to it plus retention."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=900.0, init=actor_init(retention=60.0))

        outcome = await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=stored(created).id,
                state=b"final",
                completion=Completion(status=status, result=result, error=error),
            ),
            now=1000.0,
        )

        assert outcome.applied
        record = await store.load_actor(A)
        assert record is not None
        assert (record.status, record.result, record.error, record.state) == (
            status,
            result,
            error,
            b"final",
        )
        assert (record.completed_at, record.expires_at, record.updated_at) == (
            1000.0,
            1060.0,
            1000.0,
        )
        assert await store.load_mailbox(A) == []


async def test_a_turn_commit_for_a_stale_generation_is_not_applied_but_consumes_its_message(
    store: Store,
) -> None:
    """G3: a late commit of an ended generation changes nothing but still takes its message."""
    with anyio.fail_after(LIMIT):
        old = await completed_actor(store, A, now=0.0, retention=1.0)
        current = await admit(store, A, now=5.0, init=actor_init(attributes={"gen": "new"}))
        before = await store.load_actor(A)

        outcome = await commit(
            store,
            TurnCommit(
                actor=A,
                generation=old,
                consumed=stored(current).id,
                state=b"stale",
                set_attributes={"gen": "old"},
                remove_attributes=["gen"],
                outgoing=[Enqueue(actor=B, message=tell(), init=actor_init())],
                completion=Completion(status=Status.FAILED, error=b"late"),
            ),
            now=6.0,
        )

        assert not outcome.applied
        assert list(outcome.outgoing) == []
        assert await store.load_actor(A) == before
        assert await store.load_mailbox(A) == []
        assert await store.load_actor(B) is None
        assert await store.load_mailbox(B) == []


async def test_a_turn_commit_for_an_actor_without_a_record_is_not_applied(store: Store) -> None:
    """G3: a commit never creates the actor it was computed for."""
    with anyio.fail_after(LIMIT):
        outcome = await commit(
            store, TurnCommit(actor=A, generation=1, consumed=1, state=b"ghost"), now=1.0
        )

        assert not outcome.applied
        assert await store.load_actor(A) is None


async def test_outgoing_messages_are_stored_with_the_turn_that_sent_them(store: Store) -> None:
    """G3: messages a turn sends to other actors are committed in the turn's transaction."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0)

        outcome = await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=stored(created).id,
                state=b"sent",
                outgoing=[
                    Enqueue(actor=B, message=tell(b"to b"), init=actor_init(attributes={"c": 1})),
                    Enqueue(actor=C, message=tell(b"to nobody")),
                    Enqueue(actor=A, message=tell(b"to self")),
                ],
            ),
            now=2.0,
        )

        assert outcome.applied
        to_b, to_c, to_self = outcome.outgoing
        assert to_b.created
        assert stored(to_b).payload == b"to b"
        assert to_c == EnqueueOutcome(message=None, created=False, generation=0, status=None)
        assert stored(to_self).generation == 1
        assert await store.load_mailbox(B) == [stored(to_b)]
        assert await store.load_mailbox(C) == []
        assert await store.load_mailbox(A) == [stored(to_self)]
        record = await store.load_actor(B)
        assert record is not None
        assert dict(record.attributes) == {"c": 1}


# Atomicity of a batch (G3, G4)


async def test_a_batch_that_fails_in_the_database_leaves_nothing_written(store: Store) -> None:
    """G3: when one item of a batch fails, none of the batch is kept and the store goes on."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0, init=actor_init(attributes={"n": 1}))
        before_actor, before_mailbox = await store.load_actor(A), await store.load_mailbox(A)
        # A message without a payload violates the schema (payload NOT NULL) when inserted,
        # after the batch's other statements already ran in its transaction.
        broken = NewMessage(kind=MessageKind.TELL, handler="poke", payload=cast(bytes, None))

        with pytest.raises(StoreError):
            await store.write(
                [
                    TurnCommit(
                        actor=A,
                        generation=1,
                        consumed=stored(created).id,
                        state=b"lost",
                        set_attributes={"n": 2},
                        outgoing=[Enqueue(actor=B, message=tell(), init=actor_init())],
                        completion=Completion(status=Status.COMPLETED, result=b"lost"),
                    ),
                    Admit(actor=C, message=start(), init=actor_init()),
                    Enqueue(actor=C, message=broken),
                ],
                now=2.0,
            )

        assert await store.load_actor(A) == before_actor
        assert await store.load_mailbox(A) == before_mailbox
        for absent in (B, C):
            assert await store.load_actor(absent) is None
            assert await store.load_mailbox(absent) == []
        after = await admit(store, C, now=3.0)
        assert after.created
        assert stored(after).id > stored(created).id


async def test_a_batch_that_fails_while_encoding_attributes_leaves_nothing_written(
    store: Store,
) -> None:
    """G3: an attribute value the store cannot hold fails the whole batch."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0)
        before_actor, before_mailbox = await store.load_actor(A), await store.load_mailbox(A)
        # A list is outside AttributeValue: the store can only refuse it, mid-transaction.
        unsupported = cast(AttributeValue, ["not", "an", "attribute"])

        with pytest.raises(TypeError, match="unsupported attribute value type"):
            await store.write(
                [
                    Admit(actor=B, message=start(), init=actor_init()),
                    TurnCommit(
                        actor=A,
                        generation=1,
                        consumed=stored(created).id,
                        state=b"lost",
                        set_attributes={"bad": unsupported},
                    ),
                ],
                now=2.0,
            )

        assert await store.load_actor(A) == before_actor
        assert await store.load_mailbox(A) == before_mailbox
        assert await store.load_actor(B) is None
        assert (await admit(store, B, now=3.0)).created


async def test_a_closed_store_refuses_every_operation(contract_url: str) -> None:
    """A closed store raises StoreUnavailable, and closing it again is harmless."""
    with anyio.fail_after(LIMIT):
        closed = await open_store(contract_url)
        await closed.close()
        await closed.close()

        with pytest.raises(StoreUnavailable):
            await closed.write([Admit(actor=A, message=start(), init=actor_init())], now=1.0)
        with pytest.raises(StoreUnavailable):
            await closed.load_actor(A)
        with pytest.raises(StoreUnavailable):
            await closed.load_mailbox(A)
        with pytest.raises(StoreUnavailable):
            await closed.actors_with_mail(after=None, limit=1)
        with pytest.raises(StoreUnavailable):
            await closed.purge_expired(now=1.0, limit=1)


# Message ids and mailboxes


async def test_message_ids_increase_across_batches_and_are_never_reused(store: Store) -> None:
    """G2: mailbox order is id order, so an id is never handed out twice, even after deletes."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0)
        second = await send(store, A, now=1.0)
        third = await send(store, A, now=1.0)
        assert stored(created).id < second < third
        # Consume the newest messages so that the highest id in the table is gone.
        await store.write(
            [
                TurnCommit(actor=A, generation=1, consumed=third),
                TurnCommit(actor=A, generation=1, consumed=second),
            ],
            now=2.0,
        )

        fourth = await send(store, A, now=3.0)
        other = await admit(store, B, now=3.0)

        assert fourth > third
        assert stored(other).id > fourth
        await commit(store, TurnCommit(actor=B, generation=1, consumed=stored(other).id), now=4.0)
        assert await send(store, B, now=5.0) > stored(other).id


async def test_load_mailbox_returns_only_that_actors_messages_in_id_order(store: Store) -> None:
    """G2: a mailbox is read back in acceptance order."""
    with anyio.fail_after(LIMIT):
        expected: list[int] = []
        first = await admit(store, A, now=1.0)
        expected.append(stored(first).id)
        await admit(store, B, now=1.0)
        for round_ in range(3):
            outcomes = await store.write(
                [
                    Enqueue(actor=B, message=tell()),
                    Enqueue(actor=A, message=tell(f"a{round_}".encode())),
                    Admit(actor=A, message=start(f"dup{round_}".encode()), init=actor_init()),
                ],
                now=2.0 + round_,
            )
            for outcome in outcomes[1:]:
                assert isinstance(outcome, AdmitOutcome | EnqueueOutcome)
                expected.append(stored(outcome).id)

        mailbox = await store.load_mailbox(A)

        assert [m.id for m in mailbox] == expected
        assert expected == sorted(expected)
        assert {(m.entity, m.key) for m in mailbox} == {("order", "a-1")}
        assert [m.payload for m in mailbox] == [
            b"start",
            b"a0",
            b"dup0",
            b"a1",
            b"dup1",
            b"a2",
            b"dup2",
        ]


async def test_actors_with_mail_pages_through_actors_in_actor_id_order(store: Store) -> None:
    """Recovery finds every actor with stored messages, a page at a time, in ActorId order."""
    with_mail = [
        ActorId(entity="b", key="1"),
        ActorId(entity="a", key="2"),
        ActorId(entity="a", key="10"),
        ActorId(entity="b", key="0"),
        ActorId(entity="a", key="1"),
    ]
    without_mail = ActorId(entity="a", key="15")
    with anyio.fail_after(LIMIT):
        await store.write(
            [Admit(actor=actor, message=start(), init=actor_init()) for actor in with_mail],
            now=1.0,
        )
        empty = await admit(store, without_mail, now=1.0)
        await commit(
            store,
            TurnCommit(actor=without_mail, generation=1, consumed=stored(empty).id),
            now=2.0,
        )

        pages: list[list[ActorId]] = []
        after: ActorId | None = None
        while page := await store.actors_with_mail(after=after, limit=2):
            assert len(page) <= 2
            pages.append(page)
            after = page[-1]

        assert [actor for page in pages for actor in page] == sorted(with_mail)
        assert len(pages) == 3
        assert await store.actors_with_mail(after=without_mail, limit=10) == [
            ActorId(entity="a", key="2"),
            ActorId(entity="b", key="0"),
            ActorId(entity="b", key="1"),
        ]


# Purge (G6)


async def test_purge_expired_removes_only_expired_ended_actors_with_their_data(
    store: Store,
) -> None:
    """G6: an ended actor is purged with its messages and attributes once its window is over."""
    expired_done = ActorId(entity="e", key="expired-completed")
    expired_failed = ActorId(entity="e", key="expired-failed")
    retained = ActorId(entity="e", key="retained")
    active = ActorId(entity="e", key="active")
    with anyio.fail_after(LIMIT):
        await completed_actor(store, expired_done, now=0.0, retention=10.0, attributes={"x": 1})
        await completed_actor(store, expired_failed, now=5.0, retention=10.0, status=Status.FAILED)
        await completed_actor(store, retained, now=0.0, retention=100.0, attributes={"x": 2})
        await admit(store, active, now=0.0, init=actor_init(retention=1.0, attributes={"x": 3}))
        kept = {
            actor: (await store.load_actor(actor), await store.load_mailbox(actor))
            for actor in (retained, active)
        }

        assert await store.purge_expired(now=20.0, limit=100) == 2

        for gone in (expired_done, expired_failed):
            assert await store.load_actor(gone) is None
            assert await store.load_mailbox(gone) == []
        for actor, (record, mailbox) in kept.items():
            assert await store.load_actor(actor) == record
            assert await store.load_mailbox(actor) == mailbox
        assert await store.actors_with_mail(after=None, limit=10) == [active, retained]
        assert await store.purge_expired(now=20.0, limit=100) == 0
        recreated = await admit(store, expired_done, now=21.0)
        record = await store.load_actor(expired_done)
        assert record is not None
        assert dict(record.attributes) == {}
        assert await store.load_mailbox(expired_done) == [stored(recreated)]


async def test_purge_expired_removes_at_most_limit_actors_per_call(store: Store) -> None:
    """G6: purging runs in bounded batches."""
    with anyio.fail_after(LIMIT):
        for index in range(5):
            await completed_actor(
                store, ActorId(entity="e", key=str(index)), now=0.0, retention=1.0
            )

        counts = [await store.purge_expired(now=2.0, limit=2) for _ in range(4)]

        assert counts == [2, 2, 1, 0]
        for index in range(5):
            assert await store.load_actor(ActorId(entity="e", key=str(index))) is None


async def test_a_key_created_after_its_purge_gets_a_larger_generation(store: Store) -> None:
    """G6: a start after the purge makes a new generation, never an old number again (no ABA)."""
    with anyio.fail_after(LIMIT):
        first = await completed_actor(store, A, now=0.0, retention=1.0)
        second = await completed_actor(store, A, now=2.0, retention=1.0)
        assert second > first
        assert await store.purge_expired(now=10.0, limit=10) == 1
        assert await store.load_actor(A) is None

        third = await admit(store, A, now=11.0)

        assert third.created
        assert third.generation > second
        stale = await enqueue(store, Enqueue(actor=A, message=tell(), generation=second), now=12.0)
        assert stale.message is None


async def test_a_generation_recreated_in_the_batch_that_ended_it_keeps_only_its_duplicates(
    store: Store,
) -> None:
    """G4, G6: a replaced generation goes with what it owned, except unhandled duplicates.

    With zero retention, an actor that ends in a batch is expired at once, so a later start
    in the same batch creates the next generation. Messages stored for the old generation go
    with it, except duplicates not yet handled: those are accepted starts, kept under their
    old generation so that the runtime re-admits them to the new one, even after a crash.
    """
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0, init=actor_init(retention=0.0))

        told, duplicate, ended, recreated = await store.write(
            [
                Enqueue(actor=A, message=tell(b"old")),
                Admit(actor=A, message=start(b"dup"), init=actor_init(retention=0.0)),
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=stored(created).id,
                    completion=Completion(status=Status.COMPLETED),
                ),
                Admit(actor=A, message=start(b"next"), init=actor_init(retention=0.0)),
            ],
            now=2.0,
        )

        assert isinstance(told, EnqueueOutcome)
        assert isinstance(duplicate, AdmitOutcome)
        assert stored(duplicate).generation == 1
        assert isinstance(ended, TurnOutcome)
        assert ended.applied
        assert isinstance(recreated, AdmitOutcome)
        assert recreated.created
        mailbox = await store.load_mailbox(A)
        assert mailbox == [stored(duplicate), stored(recreated)], (
            f"generation {recreated.generation} inherited {mailbox[:-1]}"
        )


# Attribute values


NOW = datetime(2024, 5, 17, 12, 34, 56, 789123, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "",
        "ünïcødé ✓",
        0,
        -42,
        2**62,
        1.5,
        -0.25,
        2.0,
        1e300,
        True,
        False,
        NOW,
        NOW.astimezone(timezone(timedelta(hours=5, minutes=30))),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
    ],
    ids=repr,
)
async def test_attribute_values_round_trip_with_their_python_type(
    store: Store, value: AttributeValue
) -> None:
    """The registry gets back the value and Python type it was given; a bool stays a bool."""
    with anyio.fail_after(LIMIT):
        created = await admit(store, A, now=1.0, init=actor_init(attributes={"initial": value}))
        await commit(
            store,
            TurnCommit(
                actor=A, generation=1, consumed=stored(created).id, set_attributes={"set": value}
            ),
            now=2.0,
        )

        record = await store.load_actor(A)

        assert record is not None
        for name in ("initial", "set"):
            loaded = record.attributes[name]
            assert type(loaded) is type(value)
            assert loaded == value
            if isinstance(value, datetime):
                assert isinstance(loaded, datetime)
                assert loaded.utcoffset() is not None


async def test_string_attributes_that_look_like_numbers_round_trip_unchanged(store: Store) -> None:
    """A str attribute comes back exactly as written, whatever characters it holds."""
    values: dict[str, AttributeValue] = {
        "leading_zeros": "007",
        "trailing_zero": "1.50",
        "exponent": "1e3",
        "huge": "12345678901234567890",
        "plain_number": "42",
    }
    with anyio.fail_after(LIMIT):
        await admit(store, A, now=1.0, init=actor_init(attributes=values))

        record = await store.load_actor(A)

        assert record is not None
        assert dict(record.attributes) == values


async def test_a_nan_attribute_never_makes_its_actor_unreadable(store: Store) -> None:
    """A float attribute of NaN is either refused when written or read back as NaN."""
    with anyio.fail_after(LIMIT):
        try:
            await admit(store, A, now=1.0, init=actor_init(attributes={"score": math.nan}))
        except (StoreError, ValueError):
            assert await store.load_actor(A) is None
            return

        record = await store.load_actor(A)

        assert record is not None
        score = record.attributes["score"]
        assert isinstance(score, float)
        assert math.isnan(score)


# Durability (G4)


async def test_a_file_store_keeps_everything_across_close_and_reopen(db_path: Path) -> None:
    """G4: what a write accepted is there after the store is closed and opened again."""
    url = f"sqlite:///{db_path}"
    with anyio.fail_after(LIMIT):
        store = await open_store(url)
        try:
            created = await admit(
                store, A, now=1.0, init=actor_init(attributes={"flag": True, "at": NOW})
            )
            await send(store, A, now=1.0, payload=b"pending")
            await commit(
                store,
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=stored(created).id,
                    state=b"state",
                    set_attributes={"count": 3},
                ),
                now=2.0,
            )
            await completed_actor(store, B, now=3.0, status=Status.FAILED)
            before = {
                actor: (await store.load_actor(actor), await store.load_mailbox(actor))
                for actor in (A, B)
            }
            last_id = max(m.id for _, mailbox in before.values() for m in mailbox)
        finally:
            await store.close()

        reopened = await open_store(url)
        try:
            for actor, (record, mailbox) in before.items():
                assert record is not None
                assert await reopened.load_actor(actor) == record
                assert await reopened.load_mailbox(actor) == mailbox
            assert await reopened.actors_with_mail(after=None, limit=10) == [A, B]
            assert await send(reopened, A, now=4.0) > last_id
        finally:
            await reopened.close()
