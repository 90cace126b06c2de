"""Durable timers: scheduled in a turn, fired once through the mailbox, across restarts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from actors import AskTimeout, Context, Entity, HandlerFailed, RuntimeConfig, handler
from actors.testing import VirtualClock
from tests.conftest import running
from tests.entities import Counter

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Plan:
    """Timers to schedule: (seconds from now, label); ``name`` names them all (the last wins)."""

    timers: list[tuple[float, str]]
    name: str | None = None


@dataclass
class AlarmState:
    rang: list[tuple[str, float]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


class Alarm(Entity):
    name = "alarm"
    state: AlarmState

    @handler(start=True)
    async def plan(self, ctx: Context, plan: Plan) -> list[str]:
        ids = [
            ctx.schedule(Alarm.ring, label, after=timedelta(seconds=after), name=plan.name)
            for after, label in plan.timers
        ]
        self.state.ids.extend(ids)
        return ids

    @handler
    async def ring(self, ctx: Context, label: str) -> None:
        self.state.rang.append((label, ctx.now().timestamp()))

    @handler
    async def cancel(self, ctx: Context, timer_id: str) -> None:
        ctx.cancel_timer(timer_id)

    @handler
    async def rang(self, ctx: Context) -> list[str]:
        return [label for label, _ in self.state.rang]

    @handler
    async def rang_at(self, ctx: Context) -> list[tuple[str, float]]:
        return self.state.rang

    @handler
    async def finish(self, ctx: Context) -> None:
        ctx.complete([label for label, _ in self.state.rang])

    @handler
    async def bad(self, ctx: Context, case: str) -> None:
        """Schedule a timer with one wrong argument, named by ``case``."""
        ring = Alarm.ring
        if case == "both":
            ctx.schedule(ring, "x", after=timedelta(1), at=T0)
        elif case == "neither":
            ctx.schedule(ring, "x")
        elif case == "negative":
            ctx.schedule(ring, "x", after=timedelta(seconds=-1))
        elif case == "naive":
            ctx.schedule(ring, "x", at=datetime(2026, 1, 1))  # the bad input
        elif case == "payload":
            ctx.schedule(ring, 42, after=timedelta(1))  # type: ignore[arg-type]  # the bad input
        elif case == "handler":
            ctx.schedule("nope", "x", after=timedelta(1))
        elif case == "reserved":
            ctx.schedule(ring, "x", after=timedelta(1), name="#1.0")
        elif case == "empty":
            ctx.schedule(ring, "x", after=timedelta(1), name="")


def plan(*timers: tuple[float, str], name: str | None = None) -> Plan:
    return Plan(timers=list(timers), name=name)


async def test_a_timer_fires_once_when_due_and_not_before(store_url: str) -> None:
    """G3: a timer scheduled in a turn runs its handler once, at its due time."""
    clock = VirtualClock(T0)
    async with running(store_url, Alarm, clock=clock) as rt:
        await rt.start(Alarm, "a", plan((60, "one")))
        ref = rt.ref(Alarm, "a")
        await clock.advance(timedelta(seconds=59))
        assert await ref.ask(Alarm.rang) == []
        await clock.advance(timedelta(seconds=1))
        assert await ref.ask(Alarm.rang_at) == [("one", T0.timestamp() + 60)]
        await clock.advance(timedelta(hours=1))
        assert await ref.ask(Alarm.rang) == ["one"]
        assert rt.statistics().timers_fired == 1


async def test_timers_fire_in_due_order_each_at_its_own_time(store_url: str) -> None:
    """Timers of one actor fire earliest first, ties in scheduling order, at their times."""
    clock = VirtualClock(T0)
    async with running(store_url, Alarm, clock=clock) as rt:
        await rt.start(Alarm, "a", plan((30, "c"), (10, "a"), (20, "b1"), (20, "b2"), (0, "now")))
        await clock.advance(timedelta(minutes=1))
        rang = await rt.ref(Alarm, "a").ask(Alarm.rang_at)
        assert rang == [
            ("now", T0.timestamp()),
            ("a", T0.timestamp() + 10),
            ("b1", T0.timestamp() + 20),
            ("b2", T0.timestamp() + 20),
            ("c", T0.timestamp() + 30),
        ]


async def test_a_timer_can_be_scheduled_at_a_datetime() -> None:
    """``at=`` takes an aware datetime; one in the past fires at once."""

    class AtAlarm(Alarm):
        name = "at-alarm"

        @handler
        async def at(self, ctx: Context, when: datetime) -> str:
            return ctx.schedule(Alarm.ring, when.isoformat(), at=when)

    clock = VirtualClock(T0)
    async with running("sqlite:///:memory:", AtAlarm, clock=clock) as rt:
        ref = rt.ref(AtAlarm, "a")
        await ref.ask(AtAlarm.at, T0 + timedelta(hours=2))
        await ref.ask(AtAlarm.at, T0 - timedelta(hours=2))
        await clock.advance(timedelta(0))
        assert await ref.ask(Alarm.rang) == [(T0 - timedelta(hours=2)).isoformat()]
        await clock.advance(timedelta(hours=2))
        assert len(await ref.ask(Alarm.rang)) == 2


async def test_a_cancelled_timer_never_fires(store_url: str) -> None:
    """``cancel_timer`` by the id ``schedule`` returned: the handler never runs."""
    clock = VirtualClock(T0)
    async with running(store_url, Alarm, clock=clock) as rt:
        ids = await (await rt.start(Alarm, "a", plan((10, "keep"), (20, "drop")))).reply()
        ref = rt.ref(Alarm, "a")
        await ref.ask(Alarm.cancel, ids[1])
        await ref.ask(Alarm.cancel, "no-such-timer")  # harmless
        await clock.advance(timedelta(minutes=5))
        assert await ref.ask(Alarm.rang) == ["keep"]
        assert rt.statistics().timers_fired == 1


async def test_generated_timer_ids_are_unique_and_names_replace(store_url: str) -> None:
    """Each schedule gets its own id; scheduling a pending name replaces that timer."""
    clock = VirtualClock(T0)
    async with running(store_url, Alarm, clock=clock) as rt:
        ids = await (await rt.start(Alarm, "a", plan((10, "x"), (10, "y")))).reply()
        assert len(set(ids)) == 2
        assert all(i.startswith("#") for i in ids)
        named = await (
            await rt.start(Alarm, "b", plan((10, "first"), (30, "second"), name="wake"))
        ).reply()
        assert named == ["wake", "wake"]
        await clock.advance(timedelta(seconds=20))
        assert await rt.ref(Alarm, "b").ask(Alarm.rang) == []
        await clock.advance(timedelta(seconds=10))
        assert await rt.ref(Alarm, "b").ask(Alarm.rang) == ["second"]


async def test_ending_a_generation_drops_its_timers(store_url: str) -> None:
    """Pending timers of a completed actor never fire."""
    clock = VirtualClock(T0)
    async with running(store_url, Alarm, clock=clock) as rt:
        started = await rt.start(Alarm, "a", plan((10, "early"), (100, "late")))
        await clock.advance(timedelta(seconds=10))
        await started.actor.ask(Alarm.finish)
        assert await started.actor.result() == ["early"]
        await clock.advance(timedelta(minutes=5))
        assert rt.statistics().timers_fired == 1


@pytest.mark.parametrize(
    ("case", "error_type", "text"),
    [
        ("both", "ValueError", "exactly one of after= or at="),
        ("neither", "ValueError", "exactly one of after= or at="),
        ("negative", "ValueError", "after must be a timedelta >= 0"),
        ("naive", "ValueError", "timezone-aware"),
        ("payload", "InvalidPayload", "payload of alarm.ring"),
        ("handler", "UnknownHandler", "no handler 'nope'"),
        ("reserved", "InvalidKey", "must not start with '#'"),
        ("empty", "InvalidKey", "a timer name must not be empty"),
    ],
)
async def test_bad_timer_arguments_fail_the_turn_and_store_nothing(
    case: str, error_type: str, text: str
) -> None:
    """Bad input is refused in the turn with a clear error; no timer is stored."""
    clock = VirtualClock(T0)
    async with running("sqlite:///:memory:", Alarm, clock=clock) as rt:
        ref = rt.ref(Alarm, "a")
        with pytest.raises(HandlerFailed) as caught:
            await ref.ask(Alarm.bad, case)
        assert caught.value.error_type == error_type
        assert text in caught.value.error_message
        assert await rt._store.next_timer_due() is None


async def test_a_timer_due_while_the_runtime_was_down_fires_on_start(file_url: str) -> None:
    """Timers are durable: one that came due while no runtime ran fires when one opens."""
    clock = VirtualClock(T0)
    async with running(file_url, Alarm, clock=clock) as rt:
        await (await rt.start(Alarm, "a", plan((60, "while-down")))).reply()
    await clock.advance(timedelta(hours=1))  # no runtime is open
    async with running(file_url, Alarm, clock=clock) as rt:
        await clock.advance(timedelta(0))
        assert await rt.ref(Alarm, "a").ask(Alarm.rang) == ["while-down"]


class Holder(Entity):
    """Cancels a timer only when a test lets it: the timer fires meanwhile."""

    name = "holder"
    state: AlarmState
    release: anyio.Event | None = None

    @handler(start=True)
    async def arm(self, ctx: Context, seconds: float) -> str:
        return ctx.schedule(Holder.ring, "late", after=timedelta(seconds=seconds), name="t")

    @handler
    async def ring(self, ctx: Context, label: str) -> None:
        self.state.rang.append((label, ctx.now().timestamp()))

    @handler
    async def cancel_when_released(self, ctx: Context) -> None:
        assert Holder.release is not None
        await Holder.release.wait()
        ctx.cancel_timer("t")

    @handler
    async def rang(self, ctx: Context) -> list[str]:
        return [label for label, _ in self.state.rang]


async def test_a_cancel_also_drops_a_timer_that_fired_and_waits_in_the_mailbox(
    store_url: str,
) -> None:
    """Once a cancel commits, the handler never runs, even if its message was queued."""
    Holder.release = anyio.Event()
    async with running(store_url, Holder) as rt:
        await (await rt.start(Holder, "h", 0.05)).reply()
        ref = rt.ref(Holder, "h")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Holder.cancel_when_released)
            while rt.statistics().timers_fired == 0:  # noqa: ASYNC110  # fires while the cancel waits
                await anyio.sleep(0.01)
            Holder.release.set()
        assert await ref.ask(Holder.rang) == []
        assert await rt._store.load_mailbox(ref._id) == []


async def test_ten_thousand_timers_across_a_thousand_actors_fire_once_in_order_across_a_restart(
    file_url: str,
) -> None:
    """10,000 timers on 1,000 actors, a restart halfway: each fires once, in due order."""
    rng = random.Random(4)
    clock = VirtualClock(T0)
    plans = {
        f"actor-{i}": [(rng.randrange(0, 1000), f"{i}-{j}") for j in range(10)] for i in range(1000)
    }
    async with running(file_url, Alarm, clock=clock, limit=300) as rt:
        async with anyio.create_task_group() as tg:
            for key, timers in plans.items():
                tg.start_soon(rt.start, Alarm, key, plan(*timers))
        await clock.advance(timedelta(seconds=500))
        halfway = rt.statistics().timers_fired
    assert 0 < halfway < 10_000
    async with running(file_url, Alarm, clock=clock, limit=300) as rt:
        await clock.advance(timedelta(seconds=600))
        assert rt.statistics().timers_fired == 10_000 - halfway
        for key, timers in plans.items():
            expected = [
                (label, T0.timestamp() + after)
                for after, label in sorted(timers, key=lambda t: t[0])  # stable: ties in order
            ]
            assert await rt.ref(Alarm, key).ask(Alarm.rang_at) == expected
        assert await rt._store.next_timer_due() is None


async def test_timer_batches_are_bounded_by_timer_batch() -> None:
    """Due timers fire ``timer_batch`` per commit, all of them in the end."""
    clock = VirtualClock(T0)
    config = RuntimeConfig(timer_batch=7)
    async with running("sqlite:///:memory:", Alarm, clock=clock, config=config) as rt:
        await rt.start(Alarm, "a", plan(*[(5, f"t{i}") for i in range(30)]))
        commits = rt.statistics().commits
        await clock.advance(timedelta(seconds=5))
        assert await rt.ref(Alarm, "a").ask(Alarm.rang) == [f"t{i}" for i in range(30)]
        assert rt.statistics().commits - commits >= 30 // 7


class Sleeper(Entity):
    """A handler that waits on the virtual clock: it can never finish under advance()."""

    name = "sleeper"
    clock: VirtualClock | None = None

    @handler
    async def nap(self, ctx: Context) -> None:
        assert Sleeper.clock is not None
        await Sleeper.clock.sleep(60)


async def test_advance_reports_a_runtime_that_never_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler waiting on the virtual clock cannot finish: advance says so, it does not hang."""
    monkeypatch.setattr("actors.testing._SETTLE_LIMIT", 0.2)
    clock = Sleeper.clock = VirtualClock(T0)
    async with running("sqlite:///:memory:", Sleeper, clock=clock) as rt:
        await rt.ref(Sleeper, "s").tell(Sleeper.nap)
        with pytest.raises(TimeoutError, match="did not finish its due work"):
            await clock.advance(timedelta(seconds=1))
        # Closing cancels the nap.


async def test_ask_timeouts_run_on_the_injected_clock() -> None:
    """A caller's deadline comes from the runtime's clock: a virtual one decides when it passes."""
    clock = VirtualClock(T0)
    async with running("sqlite:///:memory:", Counter, clock=clock) as rt:
        ref = rt.ref(Counter, "c")
        await ref.ask(Counter.add, 1)
        outcome: list[str] = []

        async def wait_for_result() -> None:
            try:
                await ref.result(timeout=timedelta(seconds=30))  # it never completes
            except AskTimeout as exc:
                outcome.append(str(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_result)
            await anyio.sleep(0.1)  # real time passes; virtual time does not
            assert outcome == []
            await clock.advance(timedelta(seconds=29))
            assert outcome == []
            await clock.advance(timedelta(seconds=1))
        assert outcome == ["no answer to result on counter/c within 30 s"]
