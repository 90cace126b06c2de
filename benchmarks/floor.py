"""The durable floor: the least Python a durable keyed actor can run on, without the runtime.

W2's and W3's shapes, written as directly as plain asyncio and ``sqlite3`` allow while
keeping what makes an actor durable:
- each ask's message is stored, in a group commit with every other write that is ready,
  before its actor handles it;
- the turn's new state and the message's consumption commit together, in a later group
  commit, before the reply is released;
- each actor handles its messages one at a time, in the order they were stored.

It keeps nothing else: no validation, deduplication, generations, backpressure, timeouts,
logs or traces, and no error handling. One thread owns the connection (SQLite in WAL mode
at the durability's ``synchronous`` level), on a schema with the runtime's ``actors`` and
``messages`` tables and its mailbox index, and a counter row for message ids.

So W2's messages/s over the floor's is the share of the least durable work's speed that the
runtime keeps, and W3's p50 over the floor's how many least round trips one ask takes: what
the runtime's own Python costs, on the same machine, disk and interpreter. Nothing here
imports the runtime.
"""

from __future__ import annotations

import asyncio  # noqa: TID251  # the floor is plain asyncio by definition
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.ceilings import SYNCHRONOUS
from benchmarks.core import percentiles, run_callers
from benchmarks.workloads import TALLY_KEYS, Check, Outcome, Sizes
from persistence import Durability

__all__ = ["durable_floor"]

SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('next_message_id', 1);
CREATE TABLE actors (
    entity TEXT NOT NULL, key TEXT NOT NULL, generation INTEGER NOT NULL,
    status TEXT NOT NULL, state BLOB, updated_at REAL NOT NULL,
    PRIMARY KEY (entity, key)
) WITHOUT ROWID;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, entity TEXT NOT NULL, key TEXT NOT NULL,
    generation INTEGER NOT NULL, kind TEXT NOT NULL, handler TEXT NOT NULL,
    payload BLOB NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX messages_mailbox ON messages (entity, key, id);
"""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

Job = Callable[[sqlite3.Connection], Any]


class _Store:
    """One connection, used by one thread; ``call`` hands it a job, whose result it awaits."""

    def __init__(self, path: Path, durability: Durability) -> None:
        self._path = path
        self._synchronous = SYNCHRONOUS[durability]
        self._jobs: queue.SimpleQueue[tuple[Job, asyncio.Future[Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="floor sqlite", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.executescript(SCHEMA)
        while (job := self._jobs.get()) is not None:
            run, done = job
            try:
                result = run(conn)
            except Exception as exc:  # to the caller, which fails the run with it
                self._loop.call_soon_threadsafe(_settle, done, None, exc)
            else:
                self._loop.call_soon_threadsafe(_settle, done, result, None)
        conn.close()

    def call(self, run: Job) -> asyncio.Future[Any]:
        done = self._loop.create_future()
        self._jobs.put((run, done))
        return done

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def _settle(done: asyncio.Future[Any], result: object, error: Exception | None) -> None:
    if done.done():  # its awaiter was cancelled
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


def _stored(conn: sqlite3.Connection) -> tuple[int, int]:
    """Messages still stored, and the sum of the actors' stored counts."""
    [(unhandled,)] = conn.execute("SELECT count(*) FROM messages")
    states = conn.execute("SELECT state FROM actors WHERE state IS NOT NULL")
    return unhandled, sum(_decode(state)["count"] for (state,) in states)


def _commit(
    created: list[tuple[str, float]],
    stored: list[tuple[Any, ...]],
    next_id: int,
    states: list[tuple[bytes, float, str]],
    consumed: list[tuple[int]],
    conn: sqlite3.Connection,
) -> None:
    """One group commit: new actors, stored messages, and turns with their consumption."""
    conn.execute("BEGIN IMMEDIATE")
    if created:
        conn.executemany("INSERT INTO actors VALUES ('Tally', ?, 1, 'active', NULL, ?)", created)
    if stored:
        conn.executemany("INSERT INTO messages VALUES (?, 'Tally', ?, 1, ?, 'add', ?, ?)", stored)
        conn.execute("UPDATE meta SET value = ? WHERE name = 'next_message_id'", (next_id,))
    if states:
        conn.executemany(
            "UPDATE actors SET state = ?, updated_at = ? WHERE entity = 'Tally' AND key = ?",
            states,
        )
        conn.executemany("DELETE FROM messages WHERE id = ?", consumed)
    conn.execute("COMMIT")


Reply = asyncio.Future[int] | None  # an ask's reply; a tell's turn has none


class _Actor:
    __slots__ = ("count", "key", "mailbox", "running")

    def __init__(self, key: str) -> None:
        self.key = key
        self.count = 0
        self.mailbox: deque[tuple[int, bytes, Reply]] = deque()
        self.running = False


class _Floor:
    """Tally actors whose messages and turns go through one writer's group commits.

    Every actor stays in memory: passivating none is the least work.
    """

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._actors: dict[str, _Actor] = {}
        # Messages to store: key, payload, the ask's reply or the tell's acceptance, and
        # whether it is an ask.
        self._messages: list[tuple[str, bytes, asyncio.Future[int], bool]] = []
        self._turns: list[tuple[str, bytes, int, int, Reply]] = []
        self._ready = asyncio.Event()
        self._next_id = 1
        self._drivers: set[asyncio.Task[None]] = set()
        self.handled = 0  # turns committed
        self.all_handled = asyncio.Event()  # set when ``handled`` reaches ``expected``
        self.expected = 0

    def ask(self, key: str, amount: int) -> asyncio.Future[int]:
        """Add ``amount`` to actor ``key``: its new count, once the turn has committed."""
        return self._send(key, amount, ask=True)

    def tell(self, key: str, amount: int) -> asyncio.Future[int]:
        """Add ``amount`` to actor ``key``: done once the message is stored."""
        return self._send(key, amount, ask=False)

    def _send(self, key: str, amount: int, *, ask: bool) -> asyncio.Future[int]:
        answer = asyncio.get_running_loop().create_future()
        self._messages.append((key, _encode(amount), answer, ask))
        self._ready.set()
        return answer

    async def write(self) -> None:
        """The writer: commit everything ready, then deliver; forever."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            messages, self._messages = self._messages, []
            turns, self._turns = self._turns, []
            now = time.time()
            first = self._next_id
            self._next_id += len(messages)
            new = [key for key in dict.fromkeys(m[0] for m in messages) if key not in self._actors]
            for key in new:
                self._actors[key] = _Actor(key)
            await self._store.call(
                partial(
                    _commit,
                    [(key, now) for key in new],
                    [
                        (first + n, key, "request" if ask else "tell", data, now)
                        for n, (key, data, _, ask) in enumerate(messages)
                    ],
                    self._next_id,
                    [(state, now, key) for key, state, _, _, _ in turns],
                    [(message,) for _, _, message, _, _ in turns],
                )
            )
            for _, _, _, count, reply in turns:
                if reply is not None:
                    reply.set_result(count)
            self.handled += len(turns)
            if turns and self.handled == self.expected:
                self.all_handled.set()
            for n, (key, data, answer, ask) in enumerate(messages):
                actor = self._actors[key]
                actor.mailbox.append((first + n, data, answer if ask else None))
                if not ask:
                    answer.set_result(0)  # stored: the sender goes on
                if not actor.running:
                    actor.running = True
                    driver = asyncio.get_running_loop().create_task(self._drive(actor))
                    self._drivers.add(driver)
                    driver.add_done_callback(self._drivers.discard)

    async def _drive(self, actor: _Actor) -> None:
        """Run ``actor``'s turns in order, each one's commit handed to the writer."""
        while actor.mailbox:
            message, data, reply = actor.mailbox.popleft()
            actor.count += _decode(data)
            state = _encode({"count": actor.count})
            self._turns.append((actor.key, state, message, actor.count, reply))
            self._ready.set()
            await asyncio.sleep(0)  # another task's turn, as between the runtime's turns
        actor.running = False


async def durable_floor(folder: Path, durability: Durability, sizes: Sizes) -> Outcome:
    """W2's messages/s, W3's p50 and W4's tells/s on the floor, with their checks."""
    store = _Store(folder / "floor.db", durability)
    floor = _Floor(store)
    writer = asyncio.get_running_loop().create_task(floor.write())
    asks = sizes.asks_per_key
    replies: list[list[int]] = [[] for _ in range(TALLY_KEYS)]
    samples: list[float] = []
    in_order = 0

    async def ask(job: int) -> None:
        key = job % TALLY_KEYS
        replies[key].append(await floor.ask(f"tally-{key}", 1))

    async def tell(job: int) -> None:
        await floor.tell(f"inbox-{job}", 1)

    async def run() -> tuple[float, float, int, int]:
        nonlocal in_order
        elapsed = await run_callers(TALLY_KEYS * asks, ask)
        last = await floor.ask("hot", 0)  # untimed, as W3 activates its actor first
        for _ in range(sizes.hot_asks):
            started = time.perf_counter()
            value = await floor.ask("hot", 1)
            samples.append((time.perf_counter() - started) * 1000)
            in_order += value == last + 1
            last = value
        floor.expected = floor.handled + sizes.fanout
        started = time.perf_counter()
        await run_callers(sizes.fanout, tell)
        await floor.all_handled.wait()
        fanned_out = time.perf_counter() - started
        unhandled, total = await store.call(_stored)
        return elapsed, fanned_out, unhandled, total

    workload = asyncio.get_running_loop().create_task(run())
    try:
        # A writer that fails fails the run, rather than leaving the callers waiting.
        await asyncio.wait({workload, writer}, return_when=asyncio.FIRST_COMPLETED)
        if writer.done():
            writer.result()  # raises the writer's error
        elapsed, fanned_out, unhandled, total = workload.result()
    finally:
        for task in (workload, writer):
            task.cancel()
        await asyncio.gather(workload, writer, return_exceptions=True)
        store.close()
    expected = list(range(1, asks + 1))
    return Outcome(
        figures={
            "messages_per_s": TALLY_KEYS * asks / elapsed,
            "ask_p50_ms": percentiles(samples)["p50_ms"],
            "tells_per_s": sizes.fanout / fanned_out,
        },
        checks=[
            Check(
                what=f"actors whose replies are a permutation of 1..{asks}",
                expected=TALLY_KEYS,
                observed=sum(sorted(r) == expected for r in replies),
            ),
            Check(
                what="replies one more than the last", expected=sizes.hot_asks, observed=in_order
            ),
            Check(what="messages still stored (all handled)", expected=0, observed=unhandled),
            Check(
                what="sum of the stored counts",
                expected=TALLY_KEYS * asks + sizes.hot_asks + sizes.fanout,
                observed=total,
            ),
        ],
    )
