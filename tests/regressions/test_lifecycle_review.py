"""Review of durable timers, idle passivation, max_active and retention: the bugs found.

Each test shows one defect of the change that added timers, passivation hooks, a strict
``max_active``, the expiry-driven retention loop and the settling ``VirtualClock``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import anyio
import pytest

from actors import (
    ActorNotFound,
    Context,
    Duplicate,
    Entity,
    RuntimeClosed,
    RuntimeConfig,
    handler,
)
from actors.testing import VirtualClock
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    FireOutcome,
    FireTimers,
    MessageKind,
    NewMessage,
    NewTimer,
    TurnCommit,
    open_store,
)
from tests.conftest import running
from tests.entities import Counter

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _id(entity: type[Entity], key: str) -> ActorId:
    return ActorId(entity=str(entity.name), key=key)


# -- retention ---------------------------------------------------------------------------


class Brief(Entity):
    """Completes at once, and keeps its record for 10 seconds."""

    name = "brief"
    retention = timedelta(seconds=10)

    @handler
    async def run(self, ctx: Context) -> str:
        ctx.complete("done")
        return "done"


async def test_a_wake_up_for_a_later_expiry_does_not_postpone_its_purge(tmp_path: Path) -> None:
    """G6: an actor is purged when its retention ends, not one purge interval later.

    The last purge was long ago, so nothing keeps the purge of an expiry at +10 s from
    running at +10 s. But the completion's ``wake_by(expires_at)`` cuts the retention loop's
    sleep at once (not at ``expires_at``); the loop then purges at once, finds nothing, and
    counts that empty purge as the last one, so the real purge waits until +30 s.
    """
    clock = VirtualClock(T0)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    async with running(url, Brief, clock=clock, limit=10) as rt:
        await clock.advance(MINUTE)  # purge_interval (30 s) has long passed
        await (await rt.start(Brief, "b")).reply()
        await clock.advance(timedelta(seconds=11))
        assert await rt._store.load_actor(_id(Brief, "b")) is None
        assert rt.statistics().purged == 1


# -- timers --------------------------------------------------------------------------------


class Reminder(Entity):
    """Schedules one timer on start; ``ring`` records the entity name that rang."""

    name = "reminder"
    rang: ClassVar[list[str]] = []

    @handler(start=True)
    async def arm(self, ctx: Context, seconds: float) -> None:
        ctx.schedule(Reminder.ring, after=timedelta(seconds=seconds))

    @handler
    async def ring(self, ctx: Context) -> None:
        Reminder.rang.append(ctx.entity)


async def test_a_runtime_leaves_the_timers_of_another_tenant_alone(tmp_path: Path) -> None:
    """Tenants (namespaces) sharing a store never share actors, and so never timers.

    The timer loop reads and fires every due timer in the store, whatever its entity, and the
    dispatcher then looks up the entity among its own specs: tenant ``beta``'s runtime dies
    with ``KeyError: 'acme:reminder'`` when ``acme``'s timer comes due. (So does a runtime
    opened with fewer entity types than the store has timers for.)
    """
    Reminder.rang.clear()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    clock = VirtualClock(T0)
    async with running(url, Reminder, clock=clock, namespace="acme", limit=5) as rt:
        await (await rt.start(Reminder, "r", 60.0)).reply()
    crashed: BaseException | None = None
    try:
        async with running(url, Reminder, clock=clock, namespace="beta", limit=5) as rt:
            await clock.advance(2 * MINUTE)
            assert rt.statistics().timers_fired == 0
    except Exception as exc:
        crashed = exc
    assert crashed is None, f"beta's runtime failed on acme's timer: {crashed!r}"
    async with running(url, Reminder, clock=clock, namespace="acme", limit=5) as rt:
        await clock.advance(MINUTE)
        assert (Reminder.rang, rt.statistics().timers_fired) == (["acme:reminder"], 1)


class Juggler(Entity):
    """Schedules, cancels and re-schedules one named timer, with two unnamed ones around."""

    name = "juggler"
    rang: ClassVar[list[str]] = []

    @handler(start=True)
    async def juggle(self, ctx: Context) -> list[str]:
        after = timedelta(seconds=1)
        ctx.schedule(Juggler.ring, "named 1", after=after, name="n")
        ctx.cancel_timer("n")
        ctx.schedule(Juggler.ring, "named 2", after=after, name="n")
        first = ctx.schedule(Juggler.ring, "first", after=after)
        ctx.cancel_timer("n")
        second = ctx.schedule(Juggler.ring, "second", after=after)
        return [first, second]

    @handler
    async def ring(self, ctx: Context, label: str) -> None:
        Juggler.rang.append(label)


async def test_generated_timer_ids_stay_unique_when_a_name_is_cancelled_twice() -> None:
    """Each ``schedule`` without a name gets an id of its own, and each such timer fires.

    The generated id is ``#<message id>.<len(timers) + len(cancelled)>``. Cancelling a name
    that is both scheduled and already in the cancelled set shrinks that sum, so the next
    generated id repeats an earlier one, and the second timer silently replaces the first.
    """
    Juggler.rang.clear()
    clock = VirtualClock(T0)
    async with running("sqlite:///:memory:", Juggler, clock=clock, limit=5) as rt:
        first, second = await (await rt.start(Juggler, "j")).reply()
        await clock.advance(timedelta(seconds=2))
        assert first != second
        assert sorted(Juggler.rang) == ["first", "second"]


async def test_timers_of_several_actors_due_together_fire_in_scheduling_order(
    tmp_path: Path,
) -> None:
    """Timers due at the same time fire in the order they were scheduled (``FireTimers``).

    One write batch commits three turns: actor a schedules ``t1``, actor b ``t2``, actor a
    ``t3``, all due together. The batch collects timer rows per actor and inserts them
    actor by actor (``t1, t3, t2``), so their ids, which order ties, are not the order of
    scheduling.
    """
    store = await open_store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        now = T0.timestamp()
        a, b = ActorId(entity="e", key="a"), ActorId(entity="e", key="b")
        starts = [
            Admit(
                actor=actor,
                message=NewMessage(kind=MessageKind.START, handler=h, payload=b"null"),
                init=ActorInit(retention=60.0),
            )
            for actor, h in ((a, "s1"), (b, "s2"), (a, "s3"))
        ]
        admitted = await store.write(starts, now=now)
        ids = []
        for outcome in admitted:
            assert isinstance(outcome, AdmitOutcome)
            assert outcome.message is not None
            ids.append(outcome.message.id)
        due = now + 10

        def turn(actor: ActorId, consumed: int, name: str) -> TurnCommit:
            timer = NewTimer(name=name, due_at=due, handler="ring", payload=name.encode())
            return TurnCommit(actor=actor, generation=1, consumed=consumed, timers=(timer,))

        await store.write(
            [turn(a, ids[0], "t1"), turn(b, ids[1], "t2"), turn(a, ids[2], "t3")], now=now
        )
        (fired,) = await store.write([FireTimers(limit=10)], now=due)
        assert isinstance(fired, FireOutcome)
        assert [m.timer for m in fired.messages] == ["t1", "t2", "t3"]
    finally:
        await store.close()


# -- passivation hooks -------------------------------------------------------------------


class Tracked(Entity):
    """Keeps a class-level set of its instances between ``on_activate`` and ``on_passivate``."""

    name = "tracked"
    idle_timeout = timedelta(minutes=2)
    live: ClassVar[set[int]] = set()
    journal: ClassVar[list[str]] = []
    state: int = 0

    async def on_activate(self, key: str) -> None:
        Tracked.live.add(id(self))
        Tracked.journal.append(f"activate {key}")

    async def on_passivate(self, key: str) -> None:
        Tracked.live.discard(id(self))
        Tracked.journal.append(f"passivate {key}")

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        return label

    @handler
    async def touch(self, ctx: Context) -> int:
        self.state += 1
        return self.state

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> str:
        return ctx.supersede()


@pytest.fixture
def _fresh_tracked() -> None:
    Tracked.live.clear()
    Tracked.journal.clear()


@pytest.mark.usefixtures("_fresh_tracked")
async def test_an_instance_replaced_in_memory_is_passivated_first() -> None:
    """Every instance whose ``on_activate`` ran gets its ``on_passivate`` when it goes.

    When a generation is superseded, the activation takes a new instance for the next
    generation (``Activation.fresh``, or ``_load`` for a new generation or after a failed
    commit) and runs ``on_activate`` on it; the old instance, whose ``on_activate`` ran, is
    dropped without ``on_passivate``: whatever it opened leaks.
    """
    clock = VirtualClock(T0)
    async with running("sqlite:///:memory:", Tracked, clock=clock, limit=5) as rt:
        assert await (await rt.start(Tracked, "k", "one")).reply() == "one"
        assert await (await rt.start(Tracked, "k", "two")).reply() == "two"  # supersedes
        await clock.advance(3 * MINUTE)  # everything idle is passivated
        assert rt.statistics().activations == 0
    assert Tracked.journal.count("activate k") == Tracked.journal.count("passivate k"), (
        Tracked.journal
    )
    assert Tracked.live == set()


class Slow(Entity):
    """An actor whose ``on_passivate`` takes a moment (it closes something, say)."""

    name = "slow"
    journal: ClassVar[list[str]] = []

    async def on_activate(self, key: str) -> None:
        Slow.journal.append(f"activate {key}")

    async def on_passivate(self, key: str) -> None:
        await anyio.sleep(0.05)
        Slow.journal.append(f"passivate {key}")

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        return amount

    @handler
    async def fan_out(self, ctx: Context, keys: list[str]) -> None:
        for key in keys:
            ctx.tell(ctx.ref(Slow, key), Slow.add, 1)


async def test_making_room_for_two_waiting_actors_passivates_two() -> None:
    """max_active: to make room, the least recently used idle actor goes, and no other.

    Three idle actors fill ``max_active=4`` next to a sender; one commit brings mail for two
    new ones. Two of the idle ones must go. But each time ``_admit_waiting`` admits a waiting
    actor while another still waits, ``_room()`` passivates one more idle actor, although a
    hook already running will free the room for it: a third idle actor is evicted for
    nothing.
    """
    Slow.journal.clear()
    config = RuntimeConfig(max_active=4)
    async with running("sqlite:///:memory:", Slow, config=config, limit=5) as rt:
        for key in ("a", "b", "c", "sender"):
            await rt.ref(Slow, key).ask(Slow.add, 1)
        await rt.ref(Slow, "sender").tell(Slow.fan_out, ["x", "y"])
        with anyio.fail_after(2):
            while rt.statistics().turns < 7 or rt._dispatcher.working:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        passivated = sorted(e for e in Slow.journal if e.startswith("passivate"))
        assert passivated == ["passivate a", "passivate b"], Slow.journal


class Closer(Entity):
    """Closes something in ``on_passivate``: the hook waits for the test's gate the first time."""

    name = "closer"
    journal: ClassVar[list[str]] = []
    gate: ClassVar[anyio.Event | None] = None

    async def on_activate(self, key: str) -> None:
        Closer.journal.append(f"activate {id(self)}")

    async def on_passivate(self, key: str) -> None:
        Closer.journal.append(f"passivate {id(self)}")
        if Closer.gate is not None:
            await Closer.gate.wait()
            Closer.gate = None

    @handler
    async def run(self, ctx: Context) -> str:
        ctx.complete("done")
        return "done"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[None]) -> str:
        return "again"


async def test_an_instance_is_passivated_once_even_if_its_reload_finds_no_record() -> None:
    """``on_passivate`` runs once per instance.

    Mail that arrives while ``on_passivate`` runs keeps the activation, marked unloaded, with
    the passivated instance still marked ``hooked``. If the reload then finds no record (the
    ended actor was purged meanwhile) or cannot decode it, that instance stays, and the next
    passivation runs ``on_passivate`` on it a second time.
    """
    Closer.journal.clear()
    Closer.gate = gate = anyio.Event()
    config = RuntimeConfig(
        idle_timeout=timedelta(milliseconds=100), purge_interval=timedelta(milliseconds=50)
    )
    async with running("sqlite:///:memory:", Closer, config=config, limit=5) as rt:
        first = await rt.start(Closer, "k", retention=timedelta(milliseconds=500))
        await first.reply()
        with anyio.fail_after(2):
            while not any(e.startswith("passivate") for e in Closer.journal):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            duplicate = await rt.start(Closer, "k")  # in retention: mail for the hooked actor
            assert duplicate.created is False
            while await rt._store.load_actor(_id(Closer, "k")):  # noqa: ASYNC110  # until purged
                await anyio.sleep(0.01)
            gate.set()
            with pytest.raises(ActorNotFound):
                await duplicate.reply()
            while rt.statistics().activations:  # noqa: ASYNC110  # passivated again
                await anyio.sleep(0.01)
    passivations = [e for e in Closer.journal if e.startswith("passivate")]
    assert len(passivations) == len(set(passivations)), Closer.journal


# -- ask deadlines on an injected clock ------------------------------------------------------


async def test_an_ask_with_a_timeout_after_close_says_the_runtime_is_closed() -> None:
    """``ask`` on a closed runtime raises ``RuntimeClosed``, with or without a timeout.

    On an injected clock the deadline starts a task in the runtime's service task group
    (``_clock_deadline``), which outlives nothing: after close, ``start_soon`` raises
    ``RuntimeError: This task group is not active`` before the ask can say why.
    """
    clock = VirtualClock(T0)
    async with running("sqlite:///:memory:", Counter, clock=clock, limit=5) as rt:
        ref = rt.ref(Counter, "c")
        await ref.ask(Counter.add, 1)
    with pytest.raises(RuntimeClosed):
        await ref.ask(Counter.add, 1, timeout=timedelta(seconds=5))
