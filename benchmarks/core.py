"""Helpers every benchmark shares, and ``python -m benchmarks.core``: W1-W3 of the suite.

This was the first slice of the published workloads (W1-W3 at synchronous=FULL); the suite
(``python -m benchmarks``, see ``benchmarks.suite``) supersedes it. Run as a module, this is
an alias for the suite restricted to those workloads at that durability; any option of the
suite may follow and wins (``--runs 3``, ``--only W2``, ``--durability both``)::

    python -m benchmarks.core            # = python -m benchmarks --only W1,W2,W3 --durability full

The helpers (used by ``benchmarks.lifecycle`` and ``benchmarks.registry`` too) never print
unless asked to report.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import structlog

CALLERS = 64
"""Concurrent callers of the throughput workloads."""


async def run_callers(count: int, call: Callable[[int], Awaitable[object]]) -> float:
    """Run ``call(0)`` ... ``call(count - 1)`` from CALLERS tasks; the seconds it took.

    The callers take jobs from one shared iterator, as a server's request handlers would.
    """
    jobs = iter(range(count))

    async def caller() -> None:
        for job in jobs:  # one iterator shared by every caller: each job runs once
            await call(job)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(CALLERS, count)):
            tg.start_soon(caller)
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict[str, float]:
    """The p50 and p99 of latency ``samples`` (milliseconds)."""
    ordered = sorted(samples)
    return {"p50_ms": ordered[len(ordered) // 2], "p99_ms": ordered[int(len(ordered) * 0.99)]}


Workload = Callable[[str], Awaitable[dict[str, float]]]
"""A workload: given a fresh SQLite URL, run once and return its figures by name."""


def quiet_logging() -> None:
    """Keep the runtime's info logs out of the printed figures.

    Configured as structlog's performance guide recommends for production: a filtering
    bound logger, cached on first use. Without the cache, every call of a module's logger,
    even a filtered one, assembles a new logger (about 2.5 µs).
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )


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


if __name__ == "__main__":
    from benchmarks.suite import main  # here only: the suite imports this module's helpers

    sys.exit(main(["--only", "W1,W2,W3", "--durability", "full", *sys.argv[1:]]))
