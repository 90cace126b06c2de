"""The published workloads W1-W4: each runs once on a store URL and returns its figures.

Every workload checks what it ran (handler runs, replies, ordering) and returns those checks
with its timings: a figure is only worth printing when its checks hold. Callers are
``CALLERS`` tasks taking jobs from one shared iterator, as a server's request handlers would.
A workload never prints: ``benchmarks.suite`` runs it in a subprocess and reads its outcome.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

import anyio

from actors import Overloaded, Runtime, RuntimeConfig
from benchmarks.core import percentiles, run_callers
from benchmarks.entities import COUNTS, Charge, Checkout, Inbox, Tally, reset_counts
from persistence import Durability

__all__ = ["WORKLOADS", "Check", "Outcome", "Sizes", "Workload"]

T = TypeVar("T")

DUPLICATES = 5  # W1: concurrent starts per key
TALLY_KEYS = 10  # W2: actors the asks are spread over
DRAIN_TIMEOUT = timedelta(minutes=10)  # W4: the longest wait for told messages to be handled
BACKOFF = 0.001  # seconds a caller waits after Overloaded before it tries again


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """How much each workload does; ``scaled(1.0)`` is the published size."""

    storm_keys: int  # W1: keys, each started DUPLICATES times at once, then once more
    asks_per_key: int  # W2: asks to each of TALLY_KEYS actors
    hot_asks: int  # W3: sequential asks to one actor
    fanout: int  # W4: actors, told one message each
    max_active: int  # W4: RuntimeConfig.max_active (the default, 10,000, at scale 1)

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        """The published sizes times ``scale`` (each at least 1)."""

        def times(n: int) -> int:
            return max(1, round(n * scale))

        return cls(
            storm_keys=times(10_000),
            asks_per_key=times(2000),
            hot_asks=times(5000),
            fanout=times(100_000),
            max_active=times(10_000),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One verification: how many things should have passed it, and how many did."""

    what: str
    expected: int
    observed: int

    @property
    def holds(self) -> bool:
        """Whether the observation matches the expectation."""
        return self.expected == self.observed


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What one workload run measured and verified."""

    figures: dict[str, float] = field(default_factory=dict)  # timings: all positive
    checks: list[Check] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # context: activations, retries


Workload = Callable[[str, Durability, Sizes], Awaitable[Outcome]]
"""A workload: given a fresh store URL, a durability and sizes, run once."""


async def retrying(outcome: Outcome, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, tried again after a short pause while the runtime answers Overloaded."""
    while True:
        try:
            return await call()
        except Overloaded:
            outcome.counts["overloaded_retries"] = outcome.counts.get("overloaded_retries", 0) + 1
            await anyio.sleep(BACKOFF)


def open_runtime(
    url: str, durability: Durability, config: RuntimeConfig | None = None
) -> AbstractAsyncContextManager[Runtime]:
    """A runtime on ``url`` hosting the benchmark entities."""
    return Runtime.open(
        url, entities=[Checkout, Tally, Inbox], durability=durability, config=config
    )


def count_statistics(outcome: Outcome, rt: Runtime) -> None:
    """Record the runtime's activation and commit counters in ``outcome.counts``."""
    stats = rt.statistics()
    outcome.counts.update(
        activated=stats.activated,
        passivated=stats.passivated,
        peak_activations=stats.peak_activations,
        turns=stats.turns,
        commits=stats.commits,
        committed_items=stats.committed_items,
    )


async def dedupe_storm(url: str, durability: Durability, sizes: Sizes) -> Outcome:
    """W1: each key started DUPLICATES times at once, then once more after all completed.

    Checks that each key's start handler ran once (counted in the handler), that one start
    per key saw ``created=True``, and that all of a key's replies are the same receipt.
    """
    keys = sizes.storm_keys
    reset_counts(0)
    outcome = Outcome()
    created = [0] * keys
    receipts: list[list[int]] = [[] for _ in range(keys)]
    async with open_runtime(url, durability) as rt:

        async def start(key: int) -> None:
            handle = await retrying(
                outcome,
                lambda: rt.start(
                    Checkout, f"order-{key}", Charge(amount=1), handler=Checkout.charge
                ),
            )
            created[key] += handle.created
            receipts[key].append((await handle.reply()).number)

        storm = await run_callers(keys * DUPLICATES, lambda job: start(job // DUPLICATES))
        late = await run_callers(keys, start)
        count_statistics(outcome, rt)
    outcome.figures.update(
        requests_per_s=keys * DUPLICATES / storm, late_duplicates_per_s=keys / late
    )
    outcome.checks += [
        Check(what="start handler runs", expected=keys, observed=COUNTS.checkouts),
        Check(
            what="keys created by exactly one start",
            expected=keys,
            observed=sum(n == 1 for n in created),
        ),
        Check(
            what=f"keys whose {DUPLICATES + 1} replies are one receipt",
            expected=keys,
            observed=sum(len(r) == DUPLICATES + 1 and len(set(r)) == 1 for r in receipts),
        ),
    ]
    return outcome


async def serialized_entities(url: str, durability: Durability, sizes: Sizes) -> Outcome:
    """W2: TALLY_KEYS actors, each asked ``add(1)`` ``asks_per_key`` times by all callers.

    Checks that each actor's replies are a permutation of 1..asks_per_key (its turns ran one
    at a time) and that each ends at asks_per_key.
    """
    asks = sizes.asks_per_key
    outcome = Outcome()
    replies: list[list[int]] = [[] for _ in range(TALLY_KEYS)]
    async with open_runtime(url, durability) as rt:
        refs = [rt.ref(Tally, f"tally-{k}") for k in range(TALLY_KEYS)]

        async def ask(job: int) -> None:
            key = job % TALLY_KEYS
            replies[key].append(await retrying(outcome, lambda: refs[key].ask(Tally.add, 1)))

        elapsed = await run_callers(TALLY_KEYS * asks, ask)
        finals = [await ref.ask(Tally.get) for ref in refs]
        count_statistics(outcome, rt)
    outcome.figures["messages_per_s"] = TALLY_KEYS * asks / elapsed
    expected = list(range(1, asks + 1))
    outcome.checks += [
        Check(
            what=f"actors whose replies are a permutation of 1..{asks}",
            expected=TALLY_KEYS,
            observed=sum(sorted(r) == expected for r in replies),
        ),
        Check(
            what=f"actors whose count is {asks}",
            expected=TALLY_KEYS,
            observed=sum(value == asks for value in finals),
        ),
    ]
    return outcome


async def hot_key_latency(url: str, durability: Durability, sizes: Sizes) -> Outcome:
    """W3: ``hot_asks`` sequential asks to one (already active) actor; their latency.

    Checks that the replies count up by one.
    """
    samples: list[float] = []
    outcome = Outcome()
    in_order = 0
    async with open_runtime(url, durability) as rt:
        ref = rt.ref(Tally, "hot")
        last = await ref.ask(Tally.get)  # untimed: activates the actor
        for _ in range(sizes.hot_asks):
            started = time.perf_counter()
            value = await ref.ask(Tally.add, 1)
            samples.append((time.perf_counter() - started) * 1000)
            in_order += value == last + 1
            last = value
        count_statistics(outcome, rt)
    outcome.figures.update(percentiles(samples))
    outcome.checks.append(
        Check(what="replies one more than the last", expected=sizes.hot_asks, observed=in_order)
    )
    return outcome


async def fan_out(url: str, durability: Durability, sizes: Sizes) -> Outcome:
    """W4: one tell to each of ``fanout`` new actors, at most ``max_active`` of them in memory.

    ``tells_per_s`` counts from the first tell until every message was handled;
    ``accepted_per_s`` until the last tell returned (durably accepted). Checks that each
    message was handled exactly once (counted in the handler) and that every actor is in the
    registry.
    """
    n = sizes.fanout
    reset_counts(n)
    outcome = Outcome()
    config = RuntimeConfig(max_active=sizes.max_active)
    async with open_runtime(url, durability, config) as rt:

        async def tell(job: int) -> None:
            ref = rt.ref(Inbox, f"inbox-{job}")
            await retrying(outcome, lambda: ref.tell(Inbox.deliver, job))

        started = time.perf_counter()
        accepted = await run_callers(n, tell)
        assert COUNTS.all_delivered is not None  # set by reset_counts
        with anyio.fail_after(DRAIN_TIMEOUT.total_seconds()):
            await COUNTS.all_delivered.wait()
        handled = time.perf_counter() - started
        actors = await rt.count(Inbox)
        count_statistics(outcome, rt)
    outcome.figures.update(tells_per_s=n / handled, accepted_per_s=n / accepted)
    outcome.checks += [
        Check(
            what="messages handled exactly once",
            expected=n,
            observed=COUNTS.deliveries.count(1),
        ),
        Check(what="actors in the registry", expected=n, observed=actors),
    ]
    return outcome


WORKLOADS: dict[str, tuple[str, Workload]] = {
    "W1": ("dedupe storm", dedupe_storm),
    "W2": ("serialized entities", serialized_entities),
    "W3": ("hot key latency", hot_key_latency),
    "W4": ("fan-out", fan_out),
}
"""Each workload's id, to its title and function."""
