"""Core-runtime figures: serialized entities, hot-key latency, and a dedupe storm.

A first slice of the published workloads (issue 7 adds the rest and the raw-SQLite ceilings).
Each workload runs ``--runs`` times on a fresh SQLite file (synchronous=FULL) and prints the
median. Run it with::

    python -m benchmarks.core            # or: --runs 5
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import structlog

from actors import Runtime
from tests.entities import ChargeRequest, Counter, Payment

CALLERS = 64


async def _bounded(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Run ``jobs`` with at most CALLERS in flight."""
    limiter = anyio.Semaphore(CALLERS)

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            await job()

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(run, job)


def percentiles(samples: list[float]) -> dict[str, float]:
    """The p50 and p99 of latency ``samples`` (milliseconds)."""
    ordered = sorted(samples)
    return {"p50_ms": ordered[len(ordered) // 2], "p99_ms": ordered[int(len(ordered) * 0.99)]}


async def serialized_entities(url: str) -> dict[str, float]:
    """W2: 10 keys x 2,000 add(1) asks from 64 callers; checks counters and permutations."""
    replies: defaultdict[str, list[int]] = defaultdict(list)
    async with Runtime.open(url, entities=[Counter]) as rt:

        def job(key: str) -> Callable[[], Awaitable[None]]:
            async def ask() -> None:
                replies[key].append(await rt.ref(Counter, key).ask(Counter.add, 1))

            return ask

        jobs = [job(f"k{i % 10}") for i in range(20_000)]
        started = time.perf_counter()
        await _bounded(jobs)
        elapsed = time.perf_counter() - started
    for values in replies.values():
        assert sorted(values) == list(range(1, 2001)), "serialization broken"
    return {"messages_per_s": 20_000 / elapsed}


async def hot_key_latency(url: str) -> dict[str, float]:
    """W3: 5,000 sequential asks to one actor: p50 and p99 in milliseconds."""
    samples: list[float] = []
    async with Runtime.open(url, entities=[Counter]) as rt:
        ref = rt.ref(Counter, "hot")
        for _ in range(5000):
            started = time.perf_counter()
            await ref.ask(Counter.add, 1)
            samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


async def dedupe_storm(url: str) -> dict[str, float]:
    """W1 (1,000 keys): 5 concurrent starts per key, then one late duplicate per key."""
    async with Runtime.open(url, entities=[Payment]) as rt:
        created = 0

        def job(key: str) -> Callable[[], Awaitable[None]]:
            async def start() -> None:
                nonlocal created
                h = await rt.start(Payment, key, ChargeRequest(amount=1))
                created += h.created
                await h.reply()

            return start

        jobs = [job(f"order-{i}") for i in range(1000) for _ in range(5)]
        started = time.perf_counter()
        await _bounded(jobs)
        storm = time.perf_counter() - started
        assert created == 1000, created
        late = [job(f"order-{i}") for i in range(1000)]
        started = time.perf_counter()
        await _bounded(late)
        late_elapsed = time.perf_counter() - started
    return {"requests_per_s": 5000 / storm, "late_duplicates_per_s": 1000 / late_elapsed}


WORKLOADS = {
    "W1 dedupe storm": dedupe_storm,
    "W2 serialized entities": serialized_entities,
    "W3 hot key latency": hot_key_latency,
}


Workload = Callable[[str], Awaitable[dict[str, float]]]
"""A workload: given a fresh SQLite URL, run once and return its figures by name."""


def quiet_logging() -> None:
    """Keep the runtime's info logs out of the printed figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


async def medians(workload: Workload, runs: int) -> dict[str, float]:
    """Run ``workload`` ``runs`` times, each on a fresh SQLite file; the median of each figure."""
    results: defaultdict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            figures = await workload(f"sqlite:///{Path(folder) / 'bench.db'}")
        for metric, value in figures.items():
            results[metric].append(value)
    return {metric: statistics.median(values) for metric, values in results.items()}


def report(name: str, runs: int, figures: dict[str, float]) -> None:
    """Print one workload's line: its name, then each figure."""
    line = ", ".join(f"{metric} {value:,.2f}" for metric, value in figures.items())
    print(f"{name:<24} median of {runs}: {line}")


async def main(runs: int) -> None:
    quiet_logging()
    for name, workload in WORKLOADS.items():
        report(name, runs, await medians(workload, runs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    anyio.run(main, parser.parse_args().runs)
