"""The storage contract for durable timers, run against every backend through ``store``.

A turn schedules and cancels timers in its commit; ``FireTimers`` moves due timers into their
actor's mailbox as ``timer`` messages, once. Guarantee numbers refer to DESIGN.md: timers are
among a turn's effects (G3), and like everything inside the runtime they are exactly-once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import anyio
import pytest

from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    Completion,
    Enqueue,
    EnqueueOutcome,
    FireOutcome,
    FireTimers,
    MessageKind,
    MessageRecord,
    NewMessage,
    NewTimer,
    Status,
    Store,
    StoredReply,
    StoreError,
    Successor,
    TurnCommit,
    TurnOutcome,
    WriteOutcome,
    open_store,
)

LIMIT = 30.0
RETENTION = 60.0

A = ActorId(entity="order", key="a-1")
B = ActorId(entity="order", key="b-2")


def start(payload: bytes = b"start") -> NewMessage:
    return NewMessage(kind=MessageKind.START, handler="begin", payload=payload)


def tell(payload: bytes = b"tell") -> NewMessage:
    return NewMessage(kind=MessageKind.TELL, handler="poke", payload=payload)


def timer(
    name: str, due_at: float, *, handler: str = "remind", payload: bytes = b"tick"
) -> NewTimer:
    return NewTimer(name=name, due_at=due_at, handler=handler, payload=payload)


async def admit(store: Store, actor: ActorId, *, now: float, retention: float = RETENTION) -> int:
    """Create ``actor`` and return the id of its start message."""
    [outcome] = await store.write(
        [Admit(actor=actor, message=start(), init=ActorInit(retention=retention))], now=now
    )
    assert isinstance(outcome, AdmitOutcome)
    assert outcome.created
    assert outcome.message is not None
    return outcome.message.id


async def live(store: Store, actor: ActorId, *, now: float) -> None:
    """Create ``actor`` and handle its start message: it is active with an empty mailbox."""
    started = await admit(store, actor, now=now)
    handled = await commit(store, TurnCommit(actor=actor, generation=1, consumed=started), now=now)
    assert handled.applied


async def send(store: Store, actor: ActorId, *, now: float, payload: bytes = b"tell") -> int:
    """Store a tell for a live actor and return its id."""
    [outcome] = await store.write([Enqueue(actor=actor, message=tell(payload))], now=now)
    assert isinstance(outcome, EnqueueOutcome)
    assert outcome.message is not None
    return outcome.message.id


async def commit(store: Store, item: TurnCommit, *, now: float) -> TurnOutcome:
    [outcome] = await store.write([item], now=now)
    assert isinstance(outcome, TurnOutcome)
    return outcome


async def act(
    store: Store,
    actor: ActorId,
    *,
    now: float,
    generation: int = 1,
    timers: Sequence[NewTimer] = (),
    cancel: Sequence[str] = (),
    completion: Completion | None = None,
) -> TurnOutcome:
    """Run one turn of ``actor``: store a tell, then commit its handling with these effects."""
    consumed = await send(store, actor, now=now)
    outcome = await commit(
        store,
        TurnCommit(
            actor=actor,
            generation=generation,
            consumed=consumed,
            timers=timers,
            cancel_timers=cancel,
            completion=completion,
        ),
        now=now,
    )
    assert outcome.applied
    return outcome


def fired(outcome: WriteOutcome) -> list[MessageRecord]:
    assert isinstance(outcome, FireOutcome)
    return list(outcome.messages)


async def fire(store: Store, *, now: float, limit: int = 100) -> list[MessageRecord]:
    [outcome] = await store.write([FireTimers(limit=limit)], now=now)
    return fired(outcome)


def names(messages: Sequence[MessageRecord]) -> list[str | None]:
    return [message.timer for message in messages]


async def timer_messages(store: Store, actor: ActorId) -> list[MessageRecord]:
    return [m for m in await store.load_mailbox(actor) if m.kind is MessageKind.TIMER]


async def duplicate_for_ended(
    store: Store, actor: ActorId, payload: bytes, *, now: float
) -> MessageRecord:
    """A start of ``actor``, delivered ``to_terminal`` to its ended generation as a duplicate."""
    [routed] = await store.write(
        [
            Admit(
                actor=actor,
                message=start(payload),
                init=ActorInit(retention=RETENTION),
                to_terminal=True,
            )
        ],
        now=now,
    )
    assert isinstance(routed, AdmitOutcome)
    assert routed.message is not None
    return routed.message


async def terminal_generation_with_timer(store: Store, actor: ActorId, *, due_at: float) -> None:
    """Leave ``actor`` failed at time 2, after its ended generation tried to schedule a timer.

    A completion deletes its actor's timers; the one way an ended generation runs a turn
    later is a duplicate delivered ``to_terminal``. That turn's commit is applied, but the
    timers it schedules are not stored: an ended generation has no future.
    """
    started = await admit(store, actor, now=1.0)
    await commit(
        store,
        TurnCommit(
            actor=actor,
            generation=1,
            consumed=started,
            completion=Completion(status=Status.FAILED, error=b"no"),
        ),
        now=2.0,
    )
    routed = await duplicate_for_ended(store, actor, b"again", now=3.0)
    late = await commit(
        store,
        TurnCommit(actor=actor, generation=1, consumed=routed.id, timers=[timer("t", due_at)]),
        now=3.0,
    )
    assert late.applied
    assert await store.next_timer_due() is None


# Scheduling and firing


async def test_a_timer_scheduled_by_a_turn_is_stored_with_it_and_reported_by_next_timer_due(
    store: Store,
) -> None:
    """G3: a timer is one of a turn's effects, stored by the turn's commit, not a message yet."""
    with anyio.fail_after(LIMIT):
        assert await store.next_timer_due() is None
        started = await admit(store, A, now=1.0)

        outcome = await commit(
            store,
            TurnCommit(actor=A, generation=1, consumed=started, timers=[timer("remind", 50.0)]),
            now=2.0,
        )

        assert outcome.applied
        assert await store.next_timer_due() == 50.0
        assert await store.load_mailbox(A) == []
        assert await store.actors_with_mail(after=None, limit=10) == []


async def test_next_timer_due_is_the_earliest_due_time_of_any_actor(store: Store) -> None:
    """The runtime sleeps until next_timer_due: it is the minimum over every stored timer."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await live(store, B, now=1.0)

        await act(store, A, now=2.0, timers=[timer("late", 90.0), timer("soon", 40.0)])
        assert await store.next_timer_due() == 40.0
        await act(store, B, now=3.0, timers=[timer("sooner", 20.0)])
        assert await store.next_timer_due() == 20.0
        await fire(store, now=20.0)
        assert await store.next_timer_due() == 40.0


async def test_a_timer_does_not_fire_before_its_due_time(store: Store) -> None:
    """A FireTimers before ``due_at`` leaves the timer pending and the mailbox untouched."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("remind", 50.0)])

        assert await fire(store, now=49.999) == []

        assert await store.next_timer_due() == 50.0
        assert await store.load_mailbox(A) == []


@pytest.mark.parametrize("fire_at", [50.0, 75.0])
async def test_a_due_timer_fires_once_as_a_timer_message_of_its_generation(
    store: Store, fire_at: float
) -> None:
    """Exactly-once: at or after ``due_at`` the timer becomes one timer message, and only one."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("remind", 50.0, handler="nudge", payload=b"p")])

        [message] = await fire(store, now=fire_at)

        assert (message.entity, message.key, message.generation) == (A.entity, A.key, 1)
        assert (message.kind, message.handler, message.payload, message.timer) == (
            MessageKind.TIMER,
            "nudge",
            b"p",
            "remind",
        )
        assert message.created_at == fire_at
        assert (message.meta, message.idempotency_key) == (None, None)
        assert await fire(store, now=fire_at + 10.0) == []
        assert await store.next_timer_due() is None
        assert await store.load_mailbox(A) == [message]
        assert await store.actors_with_mail(after=None, limit=10) == [A]


async def test_a_fired_timer_message_is_deleted_by_the_turn_that_consumes_it(
    store: Store,
) -> None:
    """G3: a timer message is consumed like any other; storage stays bounded."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("remind", 10.0)])
        [message] = await fire(store, now=10.0)

        outcome = await commit(
            store, TurnCommit(actor=A, generation=1, consumed=message.id), now=11.0
        )

        assert outcome.applied
        assert await store.load_mailbox(A) == []
        assert await store.actors_with_mail(after=None, limit=10) == []
        assert await fire(store, now=100.0) == []
        assert await store.next_timer_due() is None


async def test_a_turn_consuming_its_timer_message_may_schedule_the_same_name_again(
    store: Store,
) -> None:
    """A periodic timer re-arms itself in the turn that handles its message."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("every", 10.0)])
        [first] = await fire(store, now=10.0)

        await commit(
            store,
            TurnCommit(actor=A, generation=1, consumed=first.id, timers=[timer("every", 20.0)]),
            now=11.0,
        )

        assert await store.load_mailbox(A) == []
        assert await store.next_timer_due() == 20.0
        [second] = await fire(store, now=20.0)
        assert second.timer == "every"
        assert second.id > first.id


async def test_concurrent_fire_timers_fire_each_timer_once(store: Store) -> None:
    """Exactly-once: FireTimers racing each other never fire one timer twice."""
    results: list[MessageRecord] = []

    async def fire_some() -> None:
        results.extend(await fire(store, now=100.0, limit=3))

    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer(f"t{i}", 10.0) for i in range(20)])

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(fire_some)

        assert sorted(names(results), key=str) == sorted(f"t{i}" for i in range(20))
        assert names(await store.load_mailbox(A)) == [f"t{i}" for i in range(20)]


async def test_fire_timers_through_two_stores_on_one_file_fire_each_timer_once(
    db_path: Path,
) -> None:
    """Exactly-once across connections: a timer is deleted in the transaction that fires it."""
    url = f"sqlite:///{db_path}"
    results: list[MessageRecord] = []

    async def fire_some(on: Store) -> None:
        results.extend(await fire(on, now=100.0, limit=2))

    with anyio.fail_after(LIMIT):
        first = await open_store(url)
        second = await open_store(url, migrate=False)  # a tool's: one runtime store per file
        try:
            await live(first, A, now=1.0)
            await act(first, A, now=2.0, timers=[timer(f"t{i}", 10.0) for i in range(10)])
            async with anyio.create_task_group() as tg:
                for index in range(10):
                    tg.start_soon(fire_some, first if index % 2 else second)
            mailbox = await second.load_mailbox(A)
        finally:
            await first.close()
            await second.close()

        assert sorted(names(results), key=str) == sorted(f"t{i}" for i in range(10))
        assert names(mailbox) == [f"t{i}" for i in range(10)]


# Firing order and limits


async def test_due_timers_fire_earliest_first_and_equal_due_times_in_scheduling_order(
    store: Store,
) -> None:
    """G2: timer messages reach mailboxes in due order, ties broken by scheduling order."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await live(store, B, now=1.0)
        await act(
            store,
            A,
            now=2.0,
            timers=[timer("late", 30.0), timer("tie-a", 20.0), timer("early", 10.0)],
        )
        await act(store, B, now=3.0, timers=[timer("tie-b", 20.0)])
        await act(store, A, now=4.0, timers=[timer("tie-c", 20.0)])

        messages = await fire(store, now=100.0)

        assert [(m.entity, m.key, m.timer) for m in messages] == [
            (A.entity, A.key, "early"),
            (A.entity, A.key, "tie-a"),
            (B.entity, B.key, "tie-b"),
            (A.entity, A.key, "tie-c"),
            (A.entity, A.key, "late"),
        ]
        ids = [m.id for m in messages]
        assert ids == sorted(ids)
        assert names(await store.load_mailbox(A)) == ["early", "tie-a", "tie-c", "late"]
        assert names(await store.load_mailbox(B)) == ["tie-b"]


async def test_limit_bounds_the_timers_fired_per_call_and_the_rest_fire_later_in_order(
    store: Store,
) -> None:
    """Firing runs in bounded batches; what a call leaves due fires in the next, in order."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer(f"t{i}", 10.0) for i in range(5)])

        rounds = [names(await fire(store, now=10.0 + i, limit=2)) for i in range(4)]

        assert rounds == [["t0", "t1"], ["t2", "t3"], ["t4"], []]
        assert names(await store.load_mailbox(A)) == ["t0", "t1", "t2", "t3", "t4"]
        assert await store.next_timer_due() is None


async def test_several_fire_timers_items_in_one_batch_fire_successive_timers(
    store: Store,
) -> None:
    """Each FireTimers of a batch takes the next due timers; none fires twice."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer(f"t{i}", 10.0 + i) for i in range(5)])

        outcomes = await store.write(
            [FireTimers(limit=2), FireTimers(limit=2), FireTimers(limit=2)], now=20.0
        )

        assert [names(fired(outcome)) for outcome in outcomes] == [
            ["t0", "t1"],
            ["t2", "t3"],
            ["t4"],
        ]
        mailbox = await store.load_mailbox(A)
        assert mailbox == [m for outcome in outcomes for m in fired(outcome)]
        assert await store.next_timer_due() is None


# Turns that are not applied, batches that fail


async def test_a_turn_that_is_not_applied_schedules_and_cancels_no_timers(store: Store) -> None:
    """G3: a commit for a generation that is no longer current has no timer effects."""
    with anyio.fail_after(LIMIT):
        old_start = await admit(store, A, now=0.0, retention=1.0)
        await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=old_start,
                completion=Completion(status=Status.COMPLETED),
            ),
            now=0.0,
        )
        await admit(store, A, now=5.0)
        record = await store.load_actor(A)
        assert record is not None
        assert record.generation == 2
        await act(store, A, now=6.0, generation=2, timers=[timer("keep", 10.0)])
        pending = await send(store, A, now=6.0)

        outcome = await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=pending,
                timers=[timer("ghost", 7.0)],
                cancel_timers=["keep"],
            ),
            now=6.5,
        )

        assert not outcome.applied
        assert await store.next_timer_due() == 10.0
        [message] = await fire(store, now=20.0)
        assert (message.timer, message.generation) == ("keep", 2)


async def test_a_batch_that_fails_neither_fires_nor_schedules_timers(store: Store) -> None:
    """G3: timers fire and are scheduled atomically with the rest of their batch."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("due", 10.0)])
        pending = await send(store, A, now=3.0)
        # A message without a payload violates the schema (payload NOT NULL) when inserted,
        # after the batch's other statements already ran in its transaction.
        broken = NewMessage(kind=MessageKind.TELL, handler="poke", payload=cast(bytes, None))

        with pytest.raises(StoreError):
            await store.write(
                [
                    FireTimers(limit=10),
                    TurnCommit(actor=A, generation=1, consumed=pending, timers=[timer("new", 5.0)]),
                    Enqueue(actor=A, message=broken),
                ],
                now=10.0,
            )

        assert await store.next_timer_due() == 10.0
        assert await timer_messages(store, A) == []
        assert names(await fire(store, now=10.0)) == ["due"]
        assert await store.next_timer_due() is None


# Timer names: replacing


async def test_scheduling_a_pending_timer_name_replaces_that_timer(store: Store) -> None:
    """A name is unique per actor: the new due time, handler and payload replace the old."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0, payload=b"first")])

        await act(store, A, now=3.0, timers=[timer("t", 30.0, handler="other", payload=b"second")])

        assert await store.next_timer_due() == 30.0
        assert await fire(store, now=20.0) == []
        [message] = await fire(store, now=30.0)
        assert (message.timer, message.handler, message.payload) == ("t", "other", b"second")
        assert await fire(store, now=40.0) == []


async def test_rescheduling_the_name_of_a_fired_unhandled_timer_drops_its_message(
    store: Store,
) -> None:
    """A timer's name covers its unhandled message too: rescheduling replaces both."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0, payload=b"first")])
        other = await send(store, A, now=3.0)
        [old] = await fire(store, now=10.0)
        assert [m.id for m in await store.load_mailbox(A)] == [other, old.id]

        await act(store, A, now=11.0, timers=[timer("t", 40.0, payload=b"second")])

        assert [m.id for m in await store.load_mailbox(A)] == [other]
        assert await store.next_timer_due() == 40.0
        [new] = await fire(store, now=40.0)
        assert (new.timer, new.payload) == ("t", b"second")
        assert [m.id for m in await store.load_mailbox(A)] == [other, new.id]


async def test_timer_names_are_unique_per_actor_not_across_actors(store: Store) -> None:
    """Two actors' timers of one name are independent; replacing one leaves the other."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await live(store, B, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0, payload=b"a")])
        await act(store, B, now=2.0, timers=[timer("t", 10.0, payload=b"b")])

        await act(store, A, now=3.0, timers=[timer("t", 20.0, payload=b"a2")])
        await act(store, B, now=3.0, cancel=["other"])

        messages = await fire(store, now=20.0)
        assert [(m.key, m.timer, m.payload) for m in messages] == [
            (B.key, "t", b"b"),
            (A.key, "t", b"a2"),
        ]


# Cancelling


async def test_cancelling_a_pending_timer_deletes_it_so_it_never_fires(store: Store) -> None:
    """A cancelled timer is gone; the actor's other timers are untouched."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("a", 10.0), timer("b", 20.0)])

        await act(store, A, now=3.0, cancel=["a"])

        assert await store.next_timer_due() == 20.0
        assert names(await fire(store, now=100.0)) == ["b"]
        assert names(await store.load_mailbox(A)) == ["b"]


async def test_cancelling_a_fired_timer_drops_its_unhandled_message(store: Store) -> None:
    """Cancelling covers a timer that has fired but whose message is not handled yet."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("a", 10.0), timer("b", 10.0)])
        other = await send(store, A, now=3.0)
        assert names(await fire(store, now=10.0)) == ["a", "b"]

        await act(store, A, now=11.0, cancel=["a"])

        mailbox = await store.load_mailbox(A)
        assert [(m.id == other, m.timer) for m in mailbox] == [(True, None), (False, "b")]


async def test_cancelling_an_unknown_timer_name_changes_nothing_else(store: Store) -> None:
    """A cancel of a name that has no timer is harmless: the turn applies, the rest stays."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("a", 10.0), timer("fired", 5.0)])
        await fire(store, now=5.0)
        before = await store.load_mailbox(A)

        outcome = await act(store, A, now=6.0, cancel=["nope", "also-nope"])

        assert outcome.applied
        assert await store.load_mailbox(A) == before
        assert await store.next_timer_due() == 10.0
        assert names(await fire(store, now=10.0)) == ["a"]


@pytest.mark.parametrize("fired_first", [False, True], ids=["pending", "fired"])
async def test_cancel_and_schedule_of_one_name_in_one_turn_leave_the_new_timer(
    store: Store, fired_first: bool
) -> None:
    """Cancels apply before schedules within a turn, so cancel-then-reschedule re-arms."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0, payload=b"old")])
        if fired_first:
            await fire(store, now=10.0)

        await act(store, A, now=11.0, cancel=["t"], timers=[timer("t", 20.0, payload=b"new")])

        assert await timer_messages(store, A) == []
        assert await store.next_timer_due() == 20.0
        [message] = await fire(store, now=20.0)
        assert (message.timer, message.payload) == ("t", b"new")


# Completion, successors and ended generations


async def test_a_completion_deletes_the_actors_timers_and_their_unhandled_messages(
    store: Store,
) -> None:
    """An ended generation has no future: none of its timers fires, scheduled or fired."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await live(store, B, now=1.0)
        await act(store, A, now=2.0, timers=[timer("pending", 100.0), timer("fired", 10.0)])
        await act(store, B, now=2.0, timers=[timer("other", 100.0)])
        assert names(await fire(store, now=10.0)) == ["fired"]
        left = await send(store, A, now=11.0, payload=b"left over")

        await act(
            store,
            A,
            now=12.0,
            timers=[timer("scheduled-while-ending", 50.0)],
            completion=Completion(status=Status.COMPLETED, result=b"done"),
        )

        assert [m.id for m in await store.load_mailbox(A)] == [left]
        assert await store.next_timer_due() == 100.0
        messages = await fire(store, now=200.0)
        assert [(m.key, m.timer) for m in messages] == [(B.key, "other")]


async def test_a_successor_starts_without_the_timers_of_the_generation_it_replaces(
    store: Store,
) -> None:
    """G1: a superseding turn hands on its payload, never its timers; names are free again."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("pending", 100.0), timer("fired", 10.0)])
        await fire(store, now=10.0)
        handing_on = await send(store, A, now=11.0)

        outcome = await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=handing_on,
                completion=Completion(status=Status.SUPERSEDED),
                successor=Successor(init=ActorInit(retention=RETENTION), message=start(b"next")),
            ),
            now=12.0,
        )

        assert outcome.successor is not None
        assert outcome.successor.generation == 2
        assert await store.load_mailbox(A) == [outcome.successor]
        assert await store.next_timer_due() is None
        assert await fire(store, now=200.0) == []
        await act(store, A, now=13.0, generation=2, timers=[timer("pending", 20.0)])
        [message] = await fire(store, now=20.0)
        assert (message.timer, message.generation) == ("pending", 2)


async def test_a_turn_of_an_ended_generation_stores_no_timers(store: Store) -> None:
    """A timer scheduled by a late turn of an ended generation is not stored, never fires."""
    with anyio.fail_after(LIMIT):
        await terminal_generation_with_timer(store, A, due_at=10.0)

        assert await fire(store, now=10.0) == []

        assert await store.next_timer_due() is None
        assert await store.load_mailbox(A) == []
        record = await store.load_actor(A)
        assert record is not None
        assert (record.generation, record.status) == (1, Status.FAILED)


async def test_a_rerun_after_failure_starts_without_the_failed_generations_timers(
    store: Store,
) -> None:
    """G1: a successor started from an ended generation leaves its timers behind too."""
    with anyio.fail_after(LIMIT):
        await terminal_generation_with_timer(store, A, due_at=10.0)
        routed = await duplicate_for_ended(store, A, b"rerun", now=4.0)

        outcome = await commit(
            store,
            TurnCommit(
                actor=A,
                generation=1,
                consumed=routed.id,
                timers=[timer("also-left-behind", 10.0)],
                successor=Successor(init=ActorInit(retention=RETENTION), message=start(b"2")),
            ),
            now=5.0,
        )

        assert outcome.successor is not None
        assert outcome.successor.generation == 2
        assert await store.next_timer_due() is None
        assert await fire(store, now=100.0) == []
        assert await store.load_mailbox(A) == [outcome.successor]


async def test_a_new_generation_after_expiry_starts_without_the_old_ones_timers(
    store: Store,
) -> None:
    """G6: a key created afresh owns nothing of its expired predecessor, timers included."""
    with anyio.fail_after(LIMIT):
        await terminal_generation_with_timer(store, A, due_at=1000.0)

        await admit(store, A, now=2.0 + RETENTION)

        assert await store.next_timer_due() is None
        assert await fire(store, now=2000.0) == []


# Timers and other items of the same batch


async def test_a_timer_fired_and_cancelled_in_one_batch_leaves_no_message(store: Store) -> None:
    """Items apply in order: a cancel later in the batch drops what FireTimers just stored."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0), timer("kept", 10.0)])
        pending = await send(store, A, now=3.0)

        _, turn = await store.write(
            [
                FireTimers(limit=10),
                TurnCommit(actor=A, generation=1, consumed=pending, cancel_timers=["t"]),
            ],
            now=10.0,
        )

        assert isinstance(turn, TurnOutcome)
        assert turn.applied
        assert names(await store.load_mailbox(A)) == ["kept"]
        assert await store.next_timer_due() is None
        assert await fire(store, now=100.0) == []


async def test_a_timer_fired_and_rescheduled_in_one_batch_leaves_only_the_new_timer(
    store: Store,
) -> None:
    """A schedule later in the batch replaces the timer FireTimers just fired, message too."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0, payload=b"old")])
        pending = await send(store, A, now=3.0)

        await store.write(
            [
                FireTimers(limit=10),
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=pending,
                    timers=[timer("t", 30.0, payload=b"new")],
                ),
            ],
            now=10.0,
        )

        assert await store.load_mailbox(A) == []
        assert await store.next_timer_due() == 30.0
        [message] = await fire(store, now=30.0)
        assert message.payload == b"new"


async def test_a_timer_fired_and_its_actor_completed_in_one_batch_leaves_no_message(
    store: Store,
) -> None:
    """A completion later in the batch drops the timer messages FireTimers just stored."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0)])
        pending = await send(store, A, now=3.0)

        await store.write(
            [
                FireTimers(limit=10),
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=pending,
                    completion=Completion(status=Status.CANCELLED),
                ),
            ],
            now=10.0,
        )

        assert await store.load_mailbox(A) == []
        assert await store.next_timer_due() is None


async def test_a_timer_scheduled_in_a_batch_fires_in_a_later_batch_not_that_one(
    store: Store,
) -> None:
    """FireTimers fires what was stored before its batch; a new timer waits for the next."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        pending = await send(store, A, now=2.0)

        _, firing = await store.write(
            [
                TurnCommit(actor=A, generation=1, consumed=pending, timers=[timer("already", 1.0)]),
                FireTimers(limit=10),
            ],
            now=5.0,
        )

        assert fired(firing) == []
        assert await store.next_timer_due() == 1.0
        assert await timer_messages(store, A) == []
        assert names(await fire(store, now=5.0)) == ["already"]


async def test_a_cancel_earlier_in_a_batch_keeps_a_later_fire_timers_from_firing_it(
    store: Store,
) -> None:
    """Items apply in order: a timer cancelled before FireTimers in the batch never fires."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("cancelled", 10.0), timer("kept", 10.0)])
        pending = await send(store, A, now=3.0)

        _, firing = await store.write(
            [
                TurnCommit(actor=A, generation=1, consumed=pending, cancel_timers=["cancelled"]),
                FireTimers(limit=10),
            ],
            now=10.0,
        )

        assert names(fired(firing)) == ["kept"]
        assert names(await store.load_mailbox(A)) == ["kept"]
        assert await store.next_timer_due() is None
        assert await fire(store, now=100.0) == []


async def test_a_replacement_earlier_in_a_batch_keeps_a_later_fire_timers_from_firing_the_old(
    store: Store,
) -> None:
    """A timer replaced before FireTimers in the batch never fires; its replacement waits."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0, payload=b"old")])
        pending = await send(store, A, now=3.0)

        _, firing = await store.write(
            [
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=pending,
                    timers=[timer("t", 30.0, payload=b"new")],
                ),
                FireTimers(limit=10),
            ],
            now=10.0,
        )

        assert fired(firing) == []
        assert await store.load_mailbox(A) == []
        assert await store.next_timer_due() == 30.0
        [message] = await fire(store, now=30.0)
        assert message.payload == b"new"


async def test_a_completion_earlier_in_a_batch_keeps_a_later_fire_timers_from_firing(
    store: Store,
) -> None:
    """A generation that ended earlier in the batch has no timer left to fire."""
    with anyio.fail_after(LIMIT):
        await live(store, A, now=1.0)
        await act(store, A, now=2.0, timers=[timer("t", 10.0)])
        pending = await send(store, A, now=3.0)

        _, firing = await store.write(
            [
                TurnCommit(
                    actor=A,
                    generation=1,
                    consumed=pending,
                    completion=Completion(status=Status.COMPLETED),
                ),
                FireTimers(limit=10),
            ],
            now=10.0,
        )

        assert fired(firing) == []
        assert await store.load_mailbox(A) == []
        assert await store.next_timer_due() is None


# Retention


async def test_purge_expired_keeps_the_timers_of_live_actors(store: Store) -> None:
    """G6: a purge leaves the timers of live actors alone (an ended actor has none left)."""
    with anyio.fail_after(LIMIT):
        await terminal_generation_with_timer(store, A, due_at=1000.0)
        await live(store, B, now=1.0)
        await act(store, B, now=2.0, timers=[timer("live", 2000.0)])
        assert await store.next_timer_due() == 2000.0

        assert await store.purge_expired(now=2.0 + RETENTION, limit=10) == 1

        assert await store.load_actor(A) is None
        assert await store.next_timer_due() == 2000.0
        messages = await fire(store, now=3000.0)
        assert [(m.key, m.timer) for m in messages] == [(B.key, "live")]


async def test_next_expiry_is_the_earliest_expiry_of_ended_actors_and_kept_replies(
    store: Store,
) -> None:
    """G6: the runtime sleeps until next_expiry; active actors and timers never expire."""
    ended = ActorId(entity="order", key="ended")
    with anyio.fail_after(LIMIT):
        assert await store.next_expiry() is None
        await admit(store, A, now=1.0, retention=10.0)
        await act(store, A, now=2.0, timers=[timer("t", 5.0)])
        assert await store.next_expiry() is None

        ended_start = await admit(store, ended, now=100.0, retention=60.0)
        await commit(
            store,
            TurnCommit(
                actor=ended,
                generation=1,
                consumed=ended_start,
                completion=Completion(status=Status.COMPLETED),
            ),
            now=100.0,
        )
        assert await store.next_expiry() == 160.0

        [asked] = await store.write(
            [
                Enqueue(
                    actor=A,
                    message=NewMessage(
                        kind=MessageKind.REQUEST,
                        handler="add",
                        payload=b"1",
                        idempotency_key="k",
                    ),
                )
            ],
            now=20.0,
        )
        assert isinstance(asked, EnqueueOutcome)
        assert asked.message is not None
        assert await store.next_expiry() == 160.0, "an unhandled message does not expire"
        await commit(
            store,
            TurnCommit(
                actor=A, generation=1, consumed=asked.message.id, reply=StoredReply(reply=b"2")
            ),
            now=20.0,
        )
        assert await store.next_expiry() == 30.0

        await store.purge_expired(now=30.0, limit=10)
        assert await store.next_expiry() == 160.0
        await store.purge_expired(now=160.0, limit=10)
        assert await store.next_expiry() is None


# Durability (G4)


async def test_timers_and_fired_timer_messages_survive_closing_and_reopening_a_file_store(
    db_path: Path,
) -> None:
    """G4: a committed timer, fired or not, is there after the store is opened again."""
    url = f"sqlite:///{db_path}"
    with anyio.fail_after(LIMIT):
        store = await open_store(url)
        try:
            await live(store, A, now=1.0)
            await act(
                store,
                A,
                now=2.0,
                timers=[
                    timer("fired", 5.0),
                    timer("tie-1", 20.0, payload=b"1"),
                    timer("tie-2", 20.0, payload=b"2"),
                ],
            )
            [fired_before] = await fire(store, now=5.0)
        finally:
            await store.close()

        reopened = await open_store(url)
        try:
            assert await reopened.next_timer_due() == 20.0
            assert await reopened.load_mailbox(A) == [fired_before]
            messages = await fire(reopened, now=20.0)
            assert [(m.timer, m.payload, m.generation) for m in messages] == [
                ("tie-1", b"1", 1),
                ("tie-2", b"2", 1),
            ]
            assert min(m.id for m in messages) > fired_before.id
            await act(reopened, A, now=21.0, cancel=["fired"])
            assert names(await reopened.load_mailbox(A)) == ["tie-1", "tie-2"]
        finally:
            await reopened.close()
