"""The storage contract for dead letters, run against every backend through ``store``.

``BuryMessage`` moves an unhandled message to the dead letters in a write batch;
``RetryDeadLetter`` puts it back as a new message of its generation; ``record_attempts``
counts restarts that found a message at its mailbox's head. Nothing accepted is lost (G4).
"""

from __future__ import annotations

from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    BuryMessage,
    BuryOutcome,
    Enqueue,
    EnqueueOutcome,
    MessageKind,
    NewMessage,
    RetryDeadLetter,
    RetryOutcome,
    Store,
    Successor,
    TurnCommit,
    TurnOutcome,
)

A = ActorId(entity="order", key="a-1")
NOW = 1_000.0


async def _actor_with_a_tell(store: Store) -> tuple[int, int]:
    """Actor ``A`` at generation 1 with its start and one tell stored: their ids."""
    start = NewMessage(kind=MessageKind.START, handler="begin", payload=b"start")
    tell = NewMessage(kind=MessageKind.TELL, handler="poke", payload=b"tell")
    admitted, enqueued = await store.write(
        [
            Admit(actor=A, message=start, init=ActorInit(retention=60.0)),
            Enqueue(actor=A, message=tell),
        ],
        now=NOW,
    )
    assert isinstance(admitted, AdmitOutcome)
    assert isinstance(enqueued, EnqueueOutcome)
    assert admitted.message is not None
    assert enqueued.message is not None
    return admitted.message.id, enqueued.message.id


async def test_a_buried_message_leaves_the_mailbox_for_the_dead_letters(store: Store) -> None:
    started, told = await _actor_with_a_tell(store)
    await store.record_attempts([told])
    [outcome] = await store.write([BuryMessage(message=told, attempts=3, error="boom")], now=NOW)
    assert outcome == BuryOutcome(buried=True)
    assert [m.id for m in await store.load_mailbox(A)] == [started]
    [dead] = await store.dead_letters(entities=None, after=None, limit=10)
    assert (dead.message.id, dead.message.attempts, dead.error) == (told, 3, "boom")
    assert await store.dead_letters(entities={"other"}, after=None, limit=10) == []
    # Burying it again does nothing: it is no longer an unhandled message.
    [again] = await store.write([BuryMessage(message=told, attempts=4, error="x")], now=NOW)
    assert again == BuryOutcome(buried=False)


async def test_a_retried_dead_letter_is_a_new_message_of_its_generation(store: Store) -> None:
    _, told = await _actor_with_a_tell(store)
    await store.write([BuryMessage(message=told, attempts=3, error="boom")], now=NOW)
    [unknown] = await store.write([RetryDeadLetter(dead_letter=told, entities={"other"})], now=NOW)
    assert unknown == RetryOutcome(message=None, problem="unknown")
    [outcome] = await store.write([RetryDeadLetter(dead_letter=told)], now=NOW)
    assert isinstance(outcome, RetryOutcome)
    assert outcome.message is not None
    assert outcome.message.id > told
    assert (outcome.message.generation, outcome.message.attempts) == (1, 0)
    assert await store.dead_letters(entities=None, after=None, limit=10) == []
    assert outcome.message.id in [m.id for m in await store.load_mailbox(A)]


async def test_a_retry_whose_message_goes_with_its_generation_keeps_the_dead_letter(
    store: Store,
) -> None:
    """A retry and a turn that replaces the generation in one batch: nothing is lost."""
    started, told = await _actor_with_a_tell(store)
    await store.write([BuryMessage(message=told, attempts=3, error="boom")], now=NOW)
    successor = Successor(
        init=ActorInit(retention=60.0),
        message=NewMessage(kind=MessageKind.START, handler="begin", payload=b"next"),
    )
    retried, turned = await store.write(
        [
            RetryDeadLetter(dead_letter=told),
            TurnCommit(actor=A, generation=1, consumed=started, successor=successor),
        ],
        now=NOW,
    )
    assert isinstance(retried, RetryOutcome)
    assert isinstance(turned, TurnOutcome)
    assert turned.successor is not None
    [dead] = await store.dead_letters(entities=None, after=None, limit=10)
    assert dead.message.id == told
    assert [m.id for m in await store.load_mailbox(A)] == [turned.successor.id]
    # Now its generation is gone: a retry says so and keeps it.
    [gone] = await store.write([RetryDeadLetter(dead_letter=told)], now=NOW)
    assert isinstance(gone, RetryOutcome)
    assert gone.problem == "actor_gone"
    assert await store.discard_dead_letter(told, entities={"other"}) is False
    assert await store.discard_dead_letter(told) is True
