"""Faults: store failures at the contract boundary, a full disk, handlers that hang.

Every test runs the real SQLite backend; most reach it through :class:`tests.faults.FaultyStore`,
which fails, slows or refuses writes and loads before they reach the store (a refused write
never happened). What is checked is what a caller can see: retryable failures are retried
and the caller succeeds; what cannot succeed is a clear ``StorageError``; an actor whose turn
commit failed resets from the store and re-runs the message; other actors keep serving; and
every accepted message is handled exactly once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import anyio
import pytest

from actors import (
    Context,
    DeadLetter,
    Entity,
    HandlerFailed,
    MessageDeadLettered,
    RuntimeConfig,
    StorageError,
    handler,
)
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    Enqueue,
    MessageKind,
    NewMessage,
    StorageFull,
    StoreBusy,
    StoreError,
    TurnCommit,
    open_store,
)
from persistence.sqlite import SQLiteStore
from tests.entities import Counter, Job
from tests.faults import FaultyStore, faulty_store, runtime_on, stored_state, until

MEMORY = "sqlite:///:memory:"


def counter(key: str) -> ActorId:
    return ActorId(entity=Counter.name, key=key)


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyStore]:
    async with faulty_store(MEMORY) as store:
        yield store


# -- retryable write failures ----------------------------------------------------------------


async def test_a_caller_whose_commits_hit_a_few_busy_errors_still_succeeds(
    faulty: FaultyStore,
) -> None:
    """The writer retries a batch the store refused for now (StoreBusy), with backoff."""
    async with runtime_on(faulty, Counter) as rt:
        ref = rt.ref(Counter, "k")
        faulty.fail_writes(2, error=StoreBusy, kinds={Enqueue})
        assert await ref.ask(Counter.add, 1) == 1
        faulty.fail_writes(2, error=StoreBusy, kinds={TurnCommit})
        assert await ref.ask(Counter.add, 1) == 2
        assert await ref.ask(Counter.get) == 2
    assert faulty.injected["write"] == 4
    assert await stored_state(faulty.inner, counter("k")) == {"value": 2, "seen": []}


async def test_past_its_retries_a_busy_store_is_a_retryable_storage_error(
    faulty: FaultyStore,
) -> None:
    """1 try + 3 retries refused: the caller gets StorageError(retryable=True); nothing stored."""
    async with runtime_on(faulty, Counter) as rt:
        ref, fresh = rt.ref(Counter, "k"), rt.ref(Counter, "fresh")
        assert await ref.ask(Counter.add, 1) == 1
        fault = faulty.fail_writes(None, error=StoreBusy, kinds={Enqueue})
        failures: list[StorageError] = []

        async def refused(call: Awaitable[object]) -> None:
            with pytest.raises(StorageError) as caught:
                await call
            failures.append(caught.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(refused, ref.ask(Counter.add, 10))
            tg.start_soon(refused, fresh.tell(Counter.add, 1))
        faulty.remove(fault)
        assert len(failures) == 2
        for failure in failures:
            assert failure.retryable is True
            assert isinstance(failure.__cause__, StoreBusy)
            assert "injected" in str(failure)
        # 1 try + 3 retries per batch
        assert faulty.injected["write"] in (4, 8)
        # Nothing half-stored: no message, state as before, no actor created; all still serve.
        assert await faulty.inner.load_mailbox(counter("k")) == []
        assert await stored_state(faulty.inner, counter("k")) == {"value": 1, "seen": []}
        assert await faulty.inner.load_actor(counter("fresh")) is None
        assert await ref.ask(Counter.add, 1) == 2
        assert await fresh.ask(Counter.add, 1) == 1


async def test_a_turn_whose_commit_stays_busy_past_the_retries_is_rerun_once(
    faulty: FaultyStore,
) -> None:
    """G3, G4: an accepted message survives a turn commit that failed past the retries."""
    async with runtime_on(faulty, Counter) as rt:
        ref = rt.ref(Counter, "k")
        faulty.fail_writes(6, error=StoreBusy, kinds={TurnCommit})
        assert await ref.ask(Counter.add, 1) == 1
        assert await ref.ask(Counter.get) == 1
    assert faulty.injected["write"] == 6
    assert await stored_state(faulty.inner, counter("k")) == {"value": 1, "seen": []}


# -- non-retryable failures: isolation ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["enqueue", "admit"])
async def test_an_item_the_store_refuses_fails_alone_and_its_batch_mates_succeed(
    faulty: FaultyStore, kind: str
) -> None:
    """G4: a batch refused for good is re-committed item by item; only the refused fails."""
    bad = ActorId(entity=Counter.name if kind == "enqueue" else Job.name, key="bad")
    faulty.fail_writes(
        None, error=StoreError, kinds={Enqueue if kind == "enqueue" else Admit}, actor=bad
    )
    results: dict[str, object] = {}
    keys = [*(f"good-{i}" for i in range(5)), "bad", *(f"good-{i}" for i in range(5, 10))]
    async with runtime_on(faulty, Counter, Job) as rt:

        async def call(key: str) -> None:
            try:
                if kind == "enqueue":
                    results[key] = await rt.ref(Counter, key).ask(Counter.add, 1)
                else:
                    handle = await rt.start(Job, key, key)
                    results[key] = await handle.reply()
            except StorageError as exc:
                results[key] = exc

        # Let the first write gather every caller, so that the refused item shares a batch.
        faulty.slow_writes(0.05)
        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(call, key)
            await until(lambda: bool(faulty.log))
            faulty.slow_writes(0.0)
        faulty.clear()
        refused = results.pop("bad")
        assert isinstance(refused, StorageError), refused
        assert refused.retryable is False
        for key, value in results.items():
            assert value == (1 if kind == "enqueue" else f"started {key}"), key
        assert await faulty.inner.load_actor(bad) is None
    # The refusal did hit a batch with others in it: isolation was exercised.
    assert any(entry.fault == "StoreError" and entry.size > 1 for entry in faulty.log), [
        (e.kinds, e.fault) for e in faulty.log
    ]


async def test_a_refused_turn_commit_resets_the_actor_while_others_keep_serving(
    faulty: FaultyStore,
) -> None:
    """G3: the failed actor reloads its committed state and re-runs its messages once each."""
    config = RuntimeConfig(max_attempts=1000)  # no dead letters here: only resets
    tokens = [f"t{i}" for i in range(10)]
    async with runtime_on(faulty, Counter, config=config) as rt:
        a, b = rt.ref(Counter, "a"), rt.ref(Counter, "b")
        assert await a.ask(Counter.add, 5) == 5
        loads = faulty.loads
        fault = faulty.fail_writes(None, error=StoreError, kinds={TurnCommit}, actor=counter("a"))
        for token in tokens:
            await a.tell(Counter.record, token)
        answer: list[int] = []

        async def get() -> None:
            answer.append(await a.ask(Counter.get))

        async with anyio.create_task_group() as tg:
            tg.start_soon(get)
            await until(lambda: faulty.injected["write"] >= 3)
            # Meanwhile b serves, and a's committed state is its last good one.
            for expected in range(1, 4):
                assert await b.ask(Counter.add, 1) == expected
            assert await stored_state(faulty.inner, counter("a")) == {"value": 5, "seen": []}
            assert not answer
            faulty.remove(fault)
        assert answer == [15]
        assert await a.ask(Counter.seen) == tokens
        # Each reset re-read the actor from the store.
        assert faulty.loads > loads
    assert await stored_state(faulty.inner, counter("a")) == {"value": 15, "seen": tokens}


# -- load failures -----------------------------------------------------------------------------


async def test_an_activation_whose_load_fails_retries_and_then_serves(
    faulty: FaultyStore,
) -> None:
    """load_actor failing a few times delays the actor's turns; no message is lost."""
    async with runtime_on(faulty, Counter) as rt:
        assert await rt.ref(Counter, "k").ask(Counter.add, 3) == 3
    faulty.fail_loads(3, op="load_actor", actor=counter("k"))
    async with runtime_on(faulty, Counter) as rt:
        ref = rt.ref(Counter, "k")
        await ref.tell(Counter.record, "a")
        assert await ref.ask(Counter.add, 1) == 5
        assert await ref.ask(Counter.seen) == ["a"]
    assert faulty.injected["load_actor"] == 3


async def test_a_mailbox_load_failing_at_recovery_is_retried(faulty: FaultyStore) -> None:
    """A retryable failure to read a mailbox while reopening does not lose its messages."""
    message = NewMessage(kind=MessageKind.TELL, handler="record", payload=b'"stored"')
    enqueue = Enqueue(actor=counter("k"), message=message, init=ActorInit(retention=3600.0))
    await faulty.inner.write([enqueue], now=time.time())
    faulty.fail_loads(2, op="load_mailbox", error=StoreBusy)
    async with runtime_on(faulty, Counter) as rt:
        assert await rt.ref(Counter, "k").ask(Counter.seen) == ["stored"]
    assert faulty.injected["load_mailbox"] == 2


async def test_a_load_failing_for_good_answers_the_callers_and_keeps_the_messages(
    faulty: FaultyStore,
) -> None:
    """A non-retryable load error reaches the waiting caller; the message still runs later."""
    message = NewMessage(kind=MessageKind.TELL, handler="record", payload=b'"stored"')
    enqueue = Enqueue(actor=counter("k"), message=message, init=ActorInit(retention=3600.0))
    await faulty.inner.write([enqueue], now=time.time())
    fault = faulty.fail_loads(None, op="load_actor", error=StoreError)
    async with runtime_on(faulty, Counter) as rt:
        with pytest.raises(StorageError) as caught:
            await rt.ref(Counter, "k").ask(Counter.record, "asked")
        assert caught.value.retryable is False
        faulty.remove(fault)
        seen = await rt.ref(Counter, "k").ask(Counter.seen)
    # Both messages ran once, in order; only the caller's wait was cut short.
    assert seen == ["stored", "asked"]


# -- slow commits ------------------------------------------------------------------------------


async def test_with_slow_commits_everything_is_answered_in_order_per_actor(
    faulty: FaultyStore,
) -> None:
    """50 ms per commit: every message is still handled once, in each actor's order."""
    tokens = [f"m{i}" for i in range(6)]
    seen: dict[str, list[str]] = {}
    async with runtime_on(faulty, Counter) as rt:
        faulty.slow_writes(0.05)

        async def feed(key: str) -> None:
            ref = rt.ref(Counter, key)
            for i, token in enumerate(tokens):
                if i % 2:
                    await ref.tell(Counter.record, token)
                else:
                    await ref.ask(Counter.record, token)
            seen[key] = await ref.ask(Counter.seen)

        async with anyio.create_task_group() as tg:
            for key in ("a", "b", "c"):
                tg.start_soon(feed, key)
    assert seen == dict.fromkeys(("a", "b", "c"), tokens)
    assert any(entry.ended - entry.started >= 0.05 for entry in faulty.log)


# -- dead letters ------------------------------------------------------------------------------


def _poison(payload: bytes) -> bool:
    return payload.startswith(b'"poison')


async def test_a_turn_the_store_always_refuses_goes_to_the_dead_letters(
    faulty: FaultyStore,
) -> None:
    """After max_attempts refused commits the message is dead-lettered; the actor goes on."""
    config = RuntimeConfig(max_attempts=3)
    refusal = faulty.refuse_turns(lambda m: _poison(m.payload))
    async with runtime_on(faulty, Counter, config=config) as rt:
        ref = rt.ref(Counter, "a")
        await ref.tell(Counter.record, "m1")
        before = datetime.now(UTC)
        with pytest.raises(MessageDeadLettered) as caught:
            await ref.ask(Counter.record, "poison", idempotency_key="idem-poison")
        dead = caught.value.dead_letter
        await ref.ask(Counter.record, "m3")
        assert await ref.ask(Counter.seen) == ["m1", "m3"]
        assert faulty.injected["refused"] == 3

        letters = await rt.dead_letters()
        assert [letter.id for letter in letters] == [dead]
        letter = letters[0]
        assert isinstance(letter, DeadLetter)
        assert (letter.entity, letter.key, letter.generation) == ("counter", "a", 1)
        assert (letter.handler, letter.kind) == ("record", "request")
        assert letter.payload == b'"poison"'
        assert letter.idempotency_key == "idem-poison"
        assert letter.attempts == 3
        assert "refuse" in letter.error
        assert before - timedelta(seconds=5) <= letter.dead_at <= datetime.now(UTC)
        assert await rt.dead_letters(Counter) == letters

        # Once the fault is gone, a retry runs it at the end of the mailbox.
        faulty.remove(refusal)
        assert await rt.retry_dead_letter(dead) is True
        assert await ref.ask(Counter.seen) == ["m1", "m3", "poison"]
        assert await rt.dead_letters() == []
        assert await rt.retry_dead_letter(dead) is False
    state = await stored_state(faulty.inner, counter("a"))
    assert state == {"value": 3, "seen": ["m1", "m3", "poison"]}


async def test_a_dead_letter_can_be_discarded_and_a_told_poison_does_not_block(
    faulty: FaultyStore,
) -> None:
    """discard_dead_letter removes it (True), then False; unknown ids are False."""
    config = RuntimeConfig(max_attempts=2)
    faulty.refuse_turns(lambda m: _poison(m.payload))
    async with runtime_on(faulty, Counter, config=config) as rt:
        ref = rt.ref(Counter, "a")
        await ref.tell(Counter.record, "poison-told")
        await ref.tell(Counter.record, "after")
        with pytest.raises(MessageDeadLettered) as caught:
            await ref.ask(Counter.record, "poison-asked")
        assert await ref.ask(Counter.seen) == ["after"]
        letters = await rt.dead_letters()
        assert [letter.payload for letter in letters] == [b'"poison-told"', b'"poison-asked"']
        assert [letter.kind for letter in letters] == ["tell", "request"]
        assert caught.value.dead_letter == letters[1].id
        assert await rt.dead_letters(limit=1) == letters[:1]
        assert await rt.dead_letters(after=letters[0].id) == letters[1:]
        for letter in letters:
            assert await rt.discard_dead_letter(letter.id) is True
            assert await rt.discard_dead_letter(letter.id) is False
        assert await rt.discard_dead_letter(10**9) is False
        assert await rt.retry_dead_letter(10**9) is False
        assert await rt.dead_letters() == []
        assert await ref.ask(Counter.seen) == ["after"]


# -- disk full ---------------------------------------------------------------------------------


@dataclass
class BlobState:
    blobs: list[str] = field(default_factory=list)


class Blob(Entity):
    """Grows its state by a payload; ``grow_after_gate`` waits for the test to open a gate."""

    name = "blob"
    state: BlobState
    gate: ClassVar[anyio.Event | None] = None

    @handler
    async def grow(self, ctx: Context, blob: str) -> int:
        self.state.blobs.append(blob)
        return len(self.state.blobs)

    @handler
    async def grow_after_gate(self, ctx: Context, size: int) -> int:
        assert Blob.gate is not None
        await Blob.gate.wait()
        self.state.blobs.append("y" * size)
        return len(self.state.blobs)

    @handler
    async def count(self, ctx: Context) -> int:
        return len(self.state.blobs)


async def _max_page_count(store: SQLiteStore, pages: int) -> None:
    # Reaches into the backend: SQLite refuses writes that would grow the file past this.
    await store.run(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}").fetchall())


async def test_a_full_disk_is_a_clear_error_loses_nothing_and_service_resumes(
    tmp_path: Path,
) -> None:
    """G4: writes past max_page_count fail as StorageError; earlier work stays; it recovers.

    A full disk is retryable (space may come back): a turn whose commit fails for lack of
    space is retried with backoff for as long as it takes, never dead-lettered.
    """
    store = await open_store(f"sqlite:///{tmp_path / 'full.db'}")
    assert isinstance(store, SQLiteStore)
    watched = FaultyStore(store)  # injects nothing: it only logs the real store's failures
    blob_id = ActorId(entity=Blob.name, key="b")
    Blob.gate = anyio.Event()
    config = RuntimeConfig(max_attempts=2)

    def full_turn_commits() -> int:
        return sum(
            1
            for entry in watched.log
            if entry.fault is not None
            and "StorageFull" in entry.fault
            and "TurnCommit" in entry.kinds
        )

    try:
        async with runtime_on(watched, Blob, config=config) as rt:
            ref = rt.ref(Blob, "b")
            assert await ref.ask(Blob.grow, "x" * 1000) == 1
            pending: list[object] = []

            async def grow_after_gate() -> None:
                try:
                    pending.append(await ref.ask(Blob.grow_after_gate, 64_000))
                except Exception as exc:
                    pending.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(grow_after_gate)
                # Its message is accepted (stored) before the disk fills up.
                await until(_has_mail(store, blob_id))
                await _max_page_count(store, 1)  # no growth past the current size
                Blob.gate.set()
                with pytest.raises(StorageError) as caught:
                    await ref.ask(Blob.grow, "z" * 64_000)
                message = str(caught.value)
                assert "full" in message, message
                assert isinstance(caught.value.__cause__, StorageFull)
                assert caught.value.retryable is True
                # The pending turn keeps being retried, past max_attempts commits.
                await until(lambda: full_turn_commits() > 4 or bool(pending))
                assert not pending
                # Nothing accepted earlier is lost: the committed state and the pending message.
                assert await stored_state(store, blob_id) == {"blobs": ["x" * 1000]}
                assert [m.handler for m in await store.load_mailbox(blob_id)] == ["grow_after_gate"]
                assert await rt.dead_letters() == []
                await _max_page_count(store, 1_000_000)
            assert pending == [2]
            assert await ref.ask(Blob.grow, "z" * 64_000) == 3
        state = await stored_state(store, blob_id)
        assert state is not None
        blobs = state["blobs"]
        assert isinstance(blobs, list)
        assert [len(blob) for blob in blobs] == [1000, 64_000, 64_000]
    finally:
        Blob.gate = None
        await store.close()


def _has_mail(store: SQLiteStore, actor: ActorId) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await store.load_mailbox(actor))

    return check


# -- handlers that hang ------------------------------------------------------------------------


@dataclass
class SleepyState:
    value: int = 0


class Sleepy(Entity):
    name = "sleepy"
    state: SleepyState

    @handler(timeout=timedelta(milliseconds=100))
    async def hang(self, ctx: Context) -> int:
        self.state.value += 100
        await anyio.sleep_forever()
        return self.state.value

    @handler(timeout=timedelta(milliseconds=100))
    async def swallow(self, ctx: Context) -> int:
        """Catches the timeout's cancellation and carries on waiting."""
        self.state.value += 1000
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            await anyio.sleep(30)
        return self.state.value

    @handler
    async def hang_default(self, ctx: Context) -> int:
        self.state.value += 100
        await anyio.sleep(30)
        return self.state.value

    @handler(timeout=timedelta(seconds=10))
    async def patient(self, ctx: Context) -> int:
        await anyio.sleep(0.3)
        self.state.value += 1
        return self.state.value

    @handler(timeout=timedelta(seconds=10))
    async def linger(self, ctx: Context, seconds: float) -> int:
        await anyio.sleep(seconds)
        self.state.value += 1
        return self.state.value

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        self.state.value += amount
        return self.state.value


async def test_a_hanging_handler_times_out_into_an_error_and_the_actor_stays_usable() -> None:
    """@handler(timeout=...): the ask gets HandlerFailed(HandlerTimeout); state is unchanged."""
    async with runtime_on(MEMORY, Sleepy) as rt:
        ref = rt.ref(Sleepy, "s")
        assert await ref.ask(Sleepy.add, 1) == 1
        started = time.monotonic()
        with pytest.raises(HandlerFailed) as caught:
            await ref.ask(Sleepy.hang)
        assert time.monotonic() - started < 5
        assert caught.value.error_type == "HandlerTimeout"
        assert caught.value.handler == "hang"
        assert await ref.ask(Sleepy.add, 1) == 2
        # A told hang does not block the actor either; nor does a handler that swallows
        # the cancellation once.
        await ref.tell(Sleepy.hang)
        with pytest.raises(HandlerFailed) as swallowed:
            await ref.ask(Sleepy.swallow)
        assert swallowed.value.error_type == "HandlerTimeout"
        assert await ref.ask(Sleepy.add, 1) == 3


async def test_a_short_timeout_fires_on_time_while_a_longer_one_runs() -> None:
    """One watchdog serves every turn: a turn with a nearer deadline wakes it.

    The 10 s turn starts first, so the watchdog sleeps towards its deadline; the 100 ms
    hang on another actor must still time out after about 100 ms, and the long turn must
    not be cut short by it.
    """
    async with runtime_on(MEMORY, Sleepy) as rt:
        slow, hung = rt.ref(Sleepy, "slow"), rt.ref(Sleepy, "hung")
        async with anyio.create_task_group() as tg:
            lingered: list[int] = []

            async def linger() -> None:
                lingered.append(await slow.ask(Sleepy.linger, 1.0))

            tg.start_soon(linger)
            await anyio.sleep(0.05)  # the long turn is running
            started = time.monotonic()
            with pytest.raises(HandlerFailed) as caught:
                await hung.ask(Sleepy.hang)
            took = time.monotonic() - started
        assert caught.value.error_type == "HandlerTimeout"
        assert took < 0.9, f"the 100 ms timeout fired after {took:.2f} s"
        assert lingered == [1]
        # Each actor goes on: the hung one's driver runs its next turn in a new scope.
        assert await hung.ask(Sleepy.add, 1) == 1
        assert await slow.ask(Sleepy.add, 1) == 2


async def test_a_timeout_longer_than_the_watchdogs_horizon_fires_on_time() -> None:
    """A turn that does not wake the watchdog still times out at its own deadline.

    With no turn running the watchdog sleeps for at most a second, so a turn with a longer
    timeout leaves it asleep; it must still wake at the turn's deadline (1.5 s), not at a
    later horizon (2 s) or never.
    """
    config = RuntimeConfig(handler_timeout=timedelta(seconds=1.5))
    async with runtime_on(MEMORY, Sleepy, config=config) as rt:
        ref = rt.ref(Sleepy, "s")
        assert await ref.ask(Sleepy.add, 1) == 1
        await anyio.sleep(0.05)  # the watchdog has seen that turn end and gone back to sleep
        started = time.monotonic()
        with pytest.raises(HandlerFailed) as caught:
            await ref.ask(Sleepy.hang_default)
        took = time.monotonic() - started
        assert caught.value.error_type == "HandlerTimeout"
        assert 1.4 < took < 1.9, f"the 1.5 s timeout fired after {took:.2f} s"
        assert await ref.ask(Sleepy.add, 1) == 2


async def test_the_runtime_handler_timeout_is_the_default_and_a_handlers_own_wins() -> None:
    """RuntimeConfig(handler_timeout=...) applies to handlers without their own timeout."""
    config = RuntimeConfig(handler_timeout=timedelta(milliseconds=100))
    async with runtime_on(MEMORY, Sleepy, config=config) as rt:
        ref = rt.ref(Sleepy, "s")
        with pytest.raises(HandlerFailed) as caught:
            await ref.ask(Sleepy.hang_default)
        assert caught.value.error_type == "HandlerTimeout"
        assert await ref.ask(Sleepy.patient) == 1  # 0.3 s, within its own 10 s
        assert await ref.ask(Sleepy.add, 1) == 2
