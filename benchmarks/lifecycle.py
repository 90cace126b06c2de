"""Lifecycle figures: memory per activation, the stall of a large purge, and timer throughput.

- L1: the traced Python memory of a live activation and of a passivated actor (tracemalloc,
  started before a warm-up round so that table growth nets out; a virtual clock passivates).
- L2: 100,000 expired completed actors, written straight through the store API, purged by the
  retention loop in ``purge_batch`` batches while one caller asks a counter in a loop; the
  asks' latency during the purge, and without it (the same runtime, once the purge is over).
- L3: 10,000 timers on 1,000 actors, due over one second of a virtual clock: the real time
  it takes to fire them and commit their turns.

Each timed workload runs ``--runs`` times on a fresh SQLite file (synchronous=FULL) and prints
medians (L1 runs once: it counts bytes, and they hardly vary); ``--quick`` runs small sizes
once (the test suite uses it). Run it with::

    python -m benchmarks.lifecycle            # or: --runs 5, --quick
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import anyio

from actors import Context, Entity, Runtime, RuntimeConfig, handler
from actors.testing import VirtualClock
from benchmarks.core import medians, percentiles, quiet_logging, report, run_callers
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    Completion,
    ForwardingStore,
    MessageKind,
    NewMessage,
    Status,
    Store,
    TurnCommit,
    WriteItem,
    open_store,
)
from tests.entities import Counter, Payment


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    actors: int  # L1: actors activated (and passivated) per round
    expired: int  # L2: completed actors to purge
    timer_actors: int  # L3: actors with TIMERS_PER_ACTOR timers each


FULL = Sizes(actors=10_000, expired=100_000, timer_actors=1000)
QUICK = Sizes(actors=500, expired=2000, timer_actors=100)

MINUTE = timedelta(minutes=1)
WRITE_BATCH = 1000  # records per store transaction while building L2's expired actors
PURGE_INTERVAL = timedelta(milliseconds=50)
TIMERS_PER_ACTOR = 10


# -- L1: memory ------------------------------------------------------------------------


async def memory(actors: int, url: str) -> dict[str, float]:
    """Traced bytes per live activation and per passivated actor (``actors`` of each)."""
    clock = VirtualClock()
    config = RuntimeConfig(idle_timeout=MINUTE, max_active=actors)

    async def activate_all(rt: Runtime, prefix: str) -> None:
        await run_callers(actors, lambda i: rt.ref(Counter, f"{prefix}-{i}").ask(Counter.add, 1))

    def traced() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        async with Runtime.open(url, entities=[Counter], clock=clock, config=config) as rt:
            # A round of other actors first: the runtime's tables reach their size.
            await activate_all(rt, "warm-up")
            await clock.advance(2 * MINUTE)
            before = traced()
            await activate_all(rt, "measured")
            assert rt.statistics().activations == actors
            live = traced()
            await clock.advance(2 * MINUTE)
            after = traced()
            assert rt.statistics().activations == 0
    finally:
        tracemalloc.stop()
    return {
        "bytes_per_live_activation": (live - before) / actors,
        "bytes_per_passivated_actor": (after - before) / actors,
    }


# -- L2: purge stall -------------------------------------------------------------------


async def build_expired(path: Path, count: int) -> None:
    """Write ``count`` completed Payment actors to ``path``, expired an hour ago."""
    store = await open_store(f"sqlite:///{path}")
    past = time.time() - 2 * 3600  # retention is an hour: all expired an hour ago
    start = NewMessage(kind=MessageKind.START, handler="charge", payload=b'{"amount":1}')
    result = b'{"charge_id":"ch_1","amount":1}'
    try:
        for first in range(0, count, WRITE_BATCH):
            ids = [
                ActorId(entity=Payment.name, key=f"order-{i}")
                for i in range(first, min(first + WRITE_BATCH, count))
            ]
            admitted = await store.write(
                [Admit(actor=a, message=start, init=ActorInit(retention=3600.0)) for a in ids],
                now=past,
            )
            commits: list[WriteItem] = []
            for actor, outcome in zip(ids, admitted, strict=True):
                assert isinstance(outcome, AdmitOutcome)
                assert outcome.message is not None
                commits.append(
                    TurnCommit(
                        actor=actor,
                        generation=outcome.generation,
                        consumed=outcome.message.id,
                        state=b'{"charges":1}',
                        completion=Completion(status=Status.COMPLETED, result=result),
                    )
                )
            await store.write(commits, now=past)
    finally:
        await store.close()


class TimedPurges(ForwardingStore):
    """A store that records when each ``purge_expired`` call ran; the rest passes through."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.started = anyio.Event()  # set when the first purge begins
        self.calls: list[tuple[float, float, int]] = []  # (began, ended, purged)

    async def purge_expired(self, *, now: float, limit: int) -> int:
        self.started.set()
        began = time.perf_counter()
        purged = await self.inner.purge_expired(now=now, limit=limit)
        self.calls.append((began, time.perf_counter(), purged))
        return purged


async def _timed(ask: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await ask()
    return (time.perf_counter() - started) * 1000


def _latency(prefix: str, samples: list[float]) -> dict[str, float]:
    figures = {**percentiles(samples), "max_ms": max(samples)}
    return {f"{prefix}_{metric}": value for metric, value in figures.items()}


async def purge_stall(template: Path, count: int, url: str) -> dict[str, float]:
    """Purge ``count`` expired actors (a copy of ``template``) under a loop of asks."""
    path = Path(url.removeprefix("sqlite:///"))
    shutil.copyfile(template, path)
    store = TimedPurges(await open_store(url))
    config = RuntimeConfig(purge_interval=PURGE_INTERVAL)
    try:
        async with Runtime.open(store, entities=[Counter, Payment], config=config) as rt:
            ask = partial(rt.ref(Counter, "hot").ask, Counter.add, 1)
            await ask()  # the counter exists and is in memory before the purge starts
            await store.started.wait()
            during = []
            while rt.statistics().purged < count:
                during.append(await _timed(ask))
            baseline = [await _timed(ask) for _ in range(max(len(during), 200))]
            assert rt.statistics().purged == count
            batches = rt._retention.purges
    finally:
        await store.close()
    purging = [call for call in store.calls if call[2]]
    seconds = purging[-1][1] - purging[0][0]
    return {
        "purge_seconds": seconds,
        "purge_actors_per_s": count / seconds,
        "purge_batches": batches,
        "purge_batch_max_ms": max(ended - began for began, ended, _ in purging) * 1000,
        **_latency("during", during),
        **_latency("baseline", baseline),
    }


# -- L3: timers ------------------------------------------------------------------------


@dataclass
class BeeperState:
    rang: int = 0


class Beeper(Entity):
    """Schedules TIMERS_PER_ACTOR timers, due 0.1 s apart over the next second."""

    name = "beeper"
    state: BeeperState

    @handler
    async def arm(self, ctx: Context) -> None:
        for i in range(1, TIMERS_PER_ACTOR + 1):
            ctx.schedule(Beeper.ring, after=timedelta(seconds=i / TIMERS_PER_ACTOR))

    @handler
    async def ring(self, ctx: Context) -> None:
        self.state.rang += 1

    @handler
    async def rang(self, ctx: Context) -> int:
        return self.state.rang


async def timers(actors: int, url: str) -> dict[str, float]:
    """Real time to fire and handle the timers of ``actors`` Beepers, due within 1 s."""
    clock = VirtualClock()
    total = actors * TIMERS_PER_ACTOR
    async with Runtime.open(url, entities=[Beeper], clock=clock) as rt:
        refs = [rt.ref(Beeper, f"beeper-{i}") for i in range(actors)]
        await run_callers(len(refs), lambda i: refs[i].ask(Beeper.arm))
        assert rt.statistics().timers_fired == 0
        started = time.perf_counter()
        # Returns once every timer due on the way has fired and its turn has committed.
        await clock.advance(timedelta(seconds=2))
        elapsed = time.perf_counter() - started
        assert rt.statistics().timers_fired == total
        rang = [await ref.ask(Beeper.rang) for ref in refs]
        assert rang == [TIMERS_PER_ACTOR] * actors, "a timer was lost or fired twice"
    return {"timers_per_s": total / elapsed}


# -- main ------------------------------------------------------------------------------


def _part(figures: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in figures.items() if k.startswith(prefix)}


async def main(runs: int, sizes: Sizes) -> None:
    quiet_logging()
    # Memory is counted, not timed: one run gives the same figures as several.
    n = sizes.actors
    report(f"L1 memory, {n:,} actors", 1, await medians(partial(memory, n), 1))
    with tempfile.TemporaryDirectory() as folder:
        template = Path(folder) / "expired.db"
        await build_expired(template, sizes.expired)
        purge = await medians(partial(purge_stall, template, sizes.expired), runs)
    report(f"L2 purge {sizes.expired:,} expired", runs, _part(purge, "purge_"))
    report("L2 asks during the purge", runs, _part(purge, "during_"))
    report("L2 asks, no purge", runs, _part(purge, "baseline_"))
    total = sizes.timer_actors * TIMERS_PER_ACTOR
    name = f"L3 {total:,} timers on {sizes.timer_actors:,} actors"
    report(name, runs, await medians(partial(timers, sizes.timer_actors), runs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per timed workload (default 3; 1 quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes (the tests use it)")
    args = parser.parse_args()
    anyio.run(main, args.runs or (1 if args.quick else 3), QUICK if args.quick else FULL)
