"""The SQLite backend's connection thread: whole operations, in order, never abandoned."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio
import pytest

from persistence import StoreUnavailable
from persistence._sqlite_thread import SQLiteThread


async def test_operations_run_whole_on_one_thread_of_their_own(tmp_path: Path) -> None:
    """Concurrent operations each run whole, one at a time, off the event loop's thread."""
    thread = await SQLiteThread.connect(str(tmp_path / "t.db"))
    try:
        await thread.run(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))

        def insert_pair(conn: sqlite3.Connection, n: int) -> str:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            time.sleep(0.001)  # another operation would interleave here if it could
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            conn.execute("COMMIT")
            return threading.current_thread().name

        names: set[str] = set()

        async def insert(n: int) -> None:
            names.add(await thread.run(lambda conn: insert_pair(conn, n)))

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(insert, n)
        rows = await thread.run(
            lambda conn: conn.execute("SELECT n FROM t ORDER BY rowid").fetchall()
        )
    finally:
        await thread.close()
    values = [n for (n,) in rows]  # in insertion order
    assert sorted(values) == sorted(list(range(20)) * 2)
    assert all(values[i] == values[i + 1] for i in range(0, 40, 2)), "pairs never interleave"
    assert len(names) == 1
    assert names != {threading.current_thread().name}


async def test_an_operations_error_reaches_its_caller_as_it_is(tmp_path: Path) -> None:
    """The connection's thread hands back the exception the operation raised."""
    thread = await SQLiteThread.connect(":memory:")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await thread.run(lambda conn: conn.execute("SELECT * FROM missing"))
        assert await thread.run(lambda conn: conn.execute("SELECT 41 + 1").fetchone()) == (42,)
    finally:
        await thread.close()


async def test_a_cancelled_caller_waits_for_its_operation_to_end(tmp_path: Path) -> None:
    """Once submitted, an operation runs whole; its caller learns the outcome, then stops."""
    thread = await SQLiteThread.connect(str(tmp_path / "t.db"))
    try:
        await thread.run(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))

        def slow_insert(conn: sqlite3.Connection) -> None:
            time.sleep(0.2)
            conn.execute("INSERT INTO t VALUES (1)")

        started = time.monotonic()
        with anyio.move_on_after(0.05) as scope:
            await thread.run(slow_insert)
            await anyio.sleep(1)  # the cancellation lands here, after the operation returned
        assert scope.cancelled_caught
        assert time.monotonic() - started >= 0.2
        assert await thread.run(lambda conn: conn.execute("SELECT n FROM t").fetchall()) == [(1,)]
    finally:
        await thread.close()


async def test_operations_before_close_run_and_none_after(tmp_path: Path) -> None:
    """``close`` lets what was submitted before it finish; later calls are refused."""
    thread = await SQLiteThread.connect(str(tmp_path / "t.db"))
    await thread.run(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))
    results: list[object] = []

    def sleep_then_answer(conn: sqlite3.Connection) -> str:
        time.sleep(0.1)
        return "done"

    async def slow() -> None:
        results.append(await thread.run(sleep_then_answer))

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        await anyio.sleep(0.02)
        await thread.close()
        await thread.close()  # idempotent
    assert results == ["done"]
    with pytest.raises(StoreUnavailable, match="closed"):
        await thread.run(lambda conn: None)


async def test_a_connection_that_cannot_open_raises_sqlite_error(tmp_path: Path) -> None:
    """``connect`` reports SQLite's own error; nothing is left running."""
    with pytest.raises(sqlite3.OperationalError):
        await SQLiteThread.connect(str(tmp_path / "missing" / "dir" / "t.db"))
