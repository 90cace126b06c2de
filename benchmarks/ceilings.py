"""The ceilings the workloads are read against: raw SQLite, and an in-memory asyncio actor.

- SQLite: the plain ``sqlite3`` module on a fresh file in WAL mode, at the ``synchronous``
  level the runtime uses for the durability (``FULL`` or ``NORMAL``). Batched inserts of
  W4's row count, ``BATCH`` rows per transaction through ``executemany`` (rows/s: what the
  disk allows when commits are shared, the bound for W1 and W4); then sequential
  transactions of one small insert each, as many as W3's asks (commits/s and the p50 of one
  commit: the physical floor of a durable round trip, W3's).
- asyncio: an actor that is an ``asyncio.Queue`` of ``(amount, future)`` and one task that
  adds and resolves, asked by CALLERS callers in W2's shape (round trips/s), then
  sequentially, as W3 (p50): what a turn costs with no storage at all.

Nothing here imports the runtime: these are the numbers without it.
"""

from __future__ import annotations

import asyncio  # noqa: TID251  # the asyncio ceiling is plain asyncio by definition
import sqlite3
import time
from pathlib import Path

import anyio

from benchmarks.core import percentiles, run_callers
from benchmarks.workloads import TALLY_KEYS, Outcome, Sizes
from persistence import Durability

__all__ = ["SYNCHRONOUS", "asyncio_ceiling", "sqlite_ceiling"]

SYNCHRONOUS: dict[Durability, str] = {"full": "FULL", "process": "NORMAL"}
"""The SQLite ``synchronous`` level of each durability (as ``persistence`` sets it)."""

BATCH = 100  # rows per transaction of the batched inserts
PAYLOAD = b"x" * 32  # about one small encoded message


def connect(path: Path, durability: Durability) -> sqlite3.Connection:
    """A fresh database at ``path``, set up as the runtime sets up its store."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
    conn.execute(
        "CREATE TABLE message (id INTEGER PRIMARY KEY, actor TEXT NOT NULL, payload BLOB NOT NULL)"
    )
    return conn


def batched_inserts(conn: sqlite3.Connection, rows: int) -> float:
    """Insert ``rows`` rows, BATCH per transaction; rows per second."""
    started = time.perf_counter()
    for first in range(0, rows, BATCH):
        batch = [(f"actor-{n}", PAYLOAD) for n in range(first, min(first + BATCH, rows))]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO message (actor, payload) VALUES (?, ?)", batch)
        conn.execute("COMMIT")
    return rows / (time.perf_counter() - started)


def single_commits(conn: sqlite3.Connection, commits: int) -> list[float]:
    """``commits`` transactions of one insert each; each one's latency in milliseconds."""
    samples: list[float] = []
    for n in range(commits):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO message (actor, payload) VALUES (?, ?)", (f"one-{n}", PAYLOAD))
        conn.execute("COMMIT")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def sqlite_ceiling(folder: Path, durability: Durability, sizes: Sizes) -> Outcome:
    """Raw SQLite rows/s in batches, commits/s one row at a time, and one commit's p50."""
    conn = connect(folder / "raw.db", durability)
    try:
        rows_per_s = batched_inserts(conn, sizes.fanout)
        started = time.perf_counter()
        samples = single_commits(conn, sizes.hot_asks)
        commits = time.perf_counter() - started
    finally:
        conn.close()
    return Outcome(
        figures={
            "batched_rows_per_s": rows_per_s,
            "commits_per_s": len(samples) / commits,
            "commit_p50_ms": percentiles(samples)["p50_ms"],
        }
    )


class QueueActor:
    """An in-memory actor: a queue of requests that one task handles in order."""

    def __init__(self) -> None:
        self.value = 0
        self.inbox: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def run(self) -> None:
        """Handle requests forever, one at a time."""
        while True:
            amount, reply = await self.inbox.get()
            self.value += amount
            reply.set_result(self.value)

    async def ask(self, amount: int) -> int:
        """Add ``amount``; the new value."""
        reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.inbox.put_nowait((amount, reply))
        return await reply


async def asyncio_ceiling(sizes: Sizes) -> Outcome:
    """Round trips/s of TALLY_KEYS queue actors asked by CALLERS; one round trip's p50."""
    actors = [QueueActor() for _ in range(TALLY_KEYS)]

    async def ask(job: int) -> None:
        await actors[job % TALLY_KEYS].ask(1)

    samples: list[float] = []
    async with anyio.create_task_group() as tg:
        for actor in actors:
            tg.start_soon(actor.run)
        elapsed = await run_callers(TALLY_KEYS * sizes.asks_per_key, ask)
        for _ in range(sizes.hot_asks):
            started = time.perf_counter()
            await actors[0].ask(1)
            samples.append((time.perf_counter() - started) * 1000)
        tg.cancel_scope.cancel()
    return Outcome(
        figures={
            "round_trips_per_s": TALLY_KEYS * sizes.asks_per_key / elapsed,
            "round_trip_p50_ms": percentiles(samples)["p50_ms"],
        }
    )
