"""Passivation: idle actors leave memory, max_active bounds it, and callers never notice."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import anyio
import pytest
from structlog.testing import capture_logs

from actors import Context, Entity, InvalidEntity, Runtime, RuntimeConfig, handler
from actors.testing import VirtualClock
from tests.conftest import running
from tests.entities import Counter

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Hooked(Entity):
    """Records its lifecycle hooks in a class-level journal."""

    name = "hooked"
    idle_timeout = timedelta(minutes=2)
    state: int = 0
    journal: ClassVar[list[str]] = []
    fail_activations: ClassVar[int] = 0
    fail_passivation: ClassVar[bool] = False

    async def on_activate(self, key: str) -> None:
        if Hooked.fail_activations:
            Hooked.fail_activations -= 1
            raise RuntimeError("not yet")
        Hooked.journal.append(f"activate {key} at {self.state}")

    async def on_passivate(self, key: str) -> None:
        Hooked.journal.append(f"passivate {key} at {self.state}")
        if Hooked.fail_passivation:
            raise RuntimeError("cannot say goodbye")

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        self.state += amount
        return self.state


@pytest.fixture(autouse=True)
def _fresh_journal() -> None:
    Hooked.journal.clear()
    Hooked.fail_activations = 0
    Hooked.fail_passivation = False


async def test_an_idle_actor_is_passivated_after_its_timeout_and_comes_back_on_demand(
    store_url: str,
) -> None:
    """An actor with no work for ``idle_timeout`` leaves memory; its next message reloads it."""
    clock = VirtualClock(T0)
    config = RuntimeConfig(idle_timeout=timedelta(minutes=5))
    async with running(store_url, Counter, clock=clock, config=config) as rt:
        ref = rt.ref(Counter, "c")
        await ref.ask(Counter.add, 2)
        await clock.advance(5 * MINUTE - timedelta(seconds=1))
        assert rt.statistics().activations == 1
        await clock.advance(timedelta(seconds=1))
        stats = rt.statistics()
        assert (stats.activations, stats.passivated) == (0, 1)
        assert await ref.ask(Counter.add, 3) == 5  # state was kept in the store
        assert rt.statistics().activated == 2


async def test_activity_postpones_passivation(store_url: str) -> None:
    """The idle timeout counts from the last turn, not from activation."""
    clock = VirtualClock(T0)
    config = RuntimeConfig(idle_timeout=timedelta(minutes=5))
    async with running(store_url, Counter, clock=clock, config=config) as rt:
        ref = rt.ref(Counter, "c")
        for _ in range(4):
            await ref.ask(Counter.add, 1)
            await clock.advance(4 * MINUTE)
        assert rt.statistics().passivated == 0
        await clock.advance(MINUTE)
        assert rt.statistics().passivated == 1


async def test_an_entity_idle_timeout_overrides_the_runtime_default(store_url: str) -> None:
    """``idle_timeout`` on the entity class wins over ``RuntimeConfig.idle_timeout``."""
    clock = VirtualClock(T0)
    config = RuntimeConfig(idle_timeout=timedelta(hours=1))
    async with running(store_url, Counter, Hooked, clock=clock, config=config) as rt:
        await rt.ref(Counter, "c").ask(Counter.add, 1)
        await rt.ref(Hooked, "h").ask(Hooked.add, 1)
        await clock.advance(2 * MINUTE)
        assert rt.statistics().activations == 1  # the Hooked one went after 2 minutes
        assert Hooked.journal == ["activate h at 0", "passivate h at 1"]
        await clock.advance(timedelta(hours=1))
        assert rt.statistics().activations == 0


async def test_hooks_run_around_each_stay_in_memory(store_url: str) -> None:
    """``on_activate`` runs before the first turn in memory, ``on_passivate`` when it leaves."""
    clock = VirtualClock(T0)
    async with running(store_url, Hooked, clock=clock) as rt:
        ref = rt.ref(Hooked, "h")
        await ref.ask(Hooked.add, 1)
        await ref.ask(Hooked.add, 1)
        await clock.advance(3 * MINUTE)
        await ref.ask(Hooked.add, 1)
        assert Hooked.journal == ["activate h at 0", "passivate h at 2", "activate h at 2"]


async def test_a_failing_on_activate_is_retried_and_the_message_still_runs(
    store_url: str,
) -> None:
    """An exception in ``on_activate`` is logged; the actor's turns wait and run after it."""
    Hooked.fail_activations = 2
    async with running(store_url, Hooked) as rt:
        with capture_logs() as logs:
            assert await rt.ref(Hooked, "h").ask(Hooked.add, 7) == 7
    failures = [e for e in logs if e["event"] == "on_activate_failed"]
    assert len(failures) == 2
    assert failures[0]["error"] == "not yet"


async def test_a_failing_on_passivate_is_logged_and_the_actor_still_leaves(
    store_url: str,
) -> None:
    """An exception in ``on_passivate`` does not keep the actor in memory."""
    Hooked.fail_passivation = True
    clock = VirtualClock(T0)
    async with running(store_url, Hooked, clock=clock) as rt:
        await rt.ref(Hooked, "h").ask(Hooked.add, 1)
        with capture_logs() as logs:
            await clock.advance(3 * MINUTE)
        assert rt.statistics().activations == 0
    assert [e["error"] for e in logs if e["event"] == "on_passivate_failed"] == [
        "cannot say goodbye"
    ]


async def test_max_active_evicts_the_least_recently_used_idle_actor(store_url: str) -> None:
    """At the cap, the idle actor unused the longest makes room for a new one."""
    config = RuntimeConfig(max_active=2)
    async with running(store_url, Hooked, config=config) as rt:
        a, b, c = (rt.ref(Hooked, k) for k in "abc")
        await a.ask(Hooked.add, 1)
        await b.ask(Hooked.add, 1)
        await a.ask(Hooked.add, 1)  # b is now the least recently used
        await c.ask(Hooked.add, 1)
        assert Hooked.journal[-2:] == ["passivate b at 1", "activate c at 0"]
        assert rt.statistics().activations == 2


class Gate(Entity):
    """Blocks in a handler until a test opens the gate."""

    name = "gate"
    opened: ClassVar[anyio.Event | None] = None

    @handler
    async def wait(self, ctx: Context) -> str:
        assert Gate.opened is not None
        await Gate.opened.wait()
        return ctx.key


async def test_messages_wait_for_room_while_every_activation_is_busy(store_url: str) -> None:
    """With max_active busy actors, a message for another waits; it runs once there is room."""
    Gate.opened = anyio.Event()
    config = RuntimeConfig(max_active=2)
    async with running(store_url, Gate, config=config) as rt:
        answers: list[str] = []

        async def ask(key: str) -> None:
            answers.append(await rt.ref(Gate, key).ask(Gate.wait))

        async with anyio.create_task_group() as tg:
            for key in "abc":
                tg.start_soon(ask, key)
            while not rt._dispatcher._waiting:  # noqa: ASYNC110  # until "c" waits for room
                await anyio.sleep(0.005)
            assert rt.statistics().activations == 2
            Gate.opened.set()
        assert sorted(answers) == ["a", "b", "c"]
        assert rt.statistics().peak_activations == 2


async def test_a_hundred_thousand_actors_never_exceed_max_active(tmp_path: object) -> None:
    """max_active=1000 holds with 100,000 distinct actors sent one message each."""
    config = RuntimeConfig(max_active=1000)
    async with running("sqlite:///:memory:", Counter, config=config, limit=600) as rt:
        for start in range(0, 100_000, 5000):
            async with anyio.create_task_group() as tg:
                for i in range(start, start + 5000):
                    tg.start_soon(rt.ref(Counter, f"c{i}").tell, Counter.add, 1)
        for i in (0, 54_321, 99_999):
            assert await rt.ref(Counter, f"c{i}").ask(Counter.get) == 1
        stats = rt.statistics()
        assert stats.peak_activations == 1000
        assert stats.activations <= 1000
        assert stats.turns >= 100_000


async def test_a_passivated_actor_costs_no_runtime_memory() -> None:
    """After passivation, memory is back where it was before the actors were activated."""
    clock = VirtualClock(T0)
    config = RuntimeConfig(idle_timeout=MINUTE)

    async def activate_and_passivate(prefix: str) -> int:
        for i in range(2000):
            await rt.ref(Counter, f"{prefix}-{i}").ask(Counter.add, 1)
        live = tracemalloc.get_traced_memory()[0]
        await clock.advance(2 * MINUTE)
        gc.collect()
        return live

    tracemalloc.start()
    try:
        async with running("sqlite:///:memory:", Counter, clock=clock, config=config) as rt:
            # The same number of other actors first: the runtime's tables reach their size.
            await activate_and_passivate("warm-up")
            # Two rounds: memory kept per passivated actor shows in both, while a one-off
            # allocation (a table growing, a cache filling) shows in one at most.
            kept = []
            for prefix in ("first", "second"):
                before = tracemalloc.get_traced_memory()[0]
                live = await activate_and_passivate(prefix)
                kept.append((tracemalloc.get_traced_memory()[0] - before) / 2000)
                assert (live - before) / 2000 > 500  # a live activation does cost memory
            assert rt.statistics().activations == 0
    finally:
        tracemalloc.stop()
    assert min(kept) < 16  # a passivated one does not


@pytest.mark.parametrize(
    ("attribute", "value", "text"),
    [
        ("idle_timeout", timedelta(0), "idle_timeout must be a positive timedelta"),
        ("idle_timeout", 60, "idle_timeout must be a positive timedelta"),
    ],
)
async def test_a_bad_idle_timeout_is_refused_at_registration(
    attribute: str, value: object, text: str
) -> None:
    """An entity with an unusable idle_timeout cannot be registered."""
    bad = type("Bad", (Counter,), {attribute: value, "name": "bad"})
    with pytest.raises(InvalidEntity, match=text):
        async with Runtime.open("sqlite:///:memory:", entities=[bad]):
            pass


async def test_a_hook_with_the_wrong_signature_is_refused_at_registration() -> None:
    """Hooks are ``async def (self, key)``; anything else is a registration error."""

    class Sync(Counter):
        name = "sync-hook"

        def on_activate(self, key: str) -> None:  # the bad input: not async
            pass

    with pytest.raises(InvalidEntity, match="on_activate must be an async def"):
        async with Runtime.open("sqlite:///:memory:", entities=[Sync]):
            pass
