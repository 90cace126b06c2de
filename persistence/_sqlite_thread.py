"""``SQLiteThread``: one sqlite3 connection, reached only through whole operations.

An operation is a plain function of the connection (a whole write batch, or a read). It runs on
a worker thread, so the event loop goes on while SQLite works and syncs to disk, and it costs one
thread hop however many statements it takes; a driver that hops once per statement (aiosqlite)
costs one per statement. At most one operation runs at a time, so operations never interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from persistence.errors import StoreUnavailable

__all__ = ["SQLiteThread"]

T = TypeVar("T")


class SQLiteThread:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        # One at a time: the connection is used from whichever worker thread runs the operation
        # (check_same_thread=False), never from two at once.
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    async def connect(cls, path: str) -> SQLiteThread:
        """Open ``path`` (a file or ``:memory:``) in autocommit mode; raises ``sqlite3.Error``."""

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

        return cls(await anyio.to_thread.run_sync(connect))

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` on the connection and return what it returns.

        Once started, an operation runs to its end even if the caller is cancelled meanwhile
        (the caller's cancellation takes effect when it returns), so a transaction is never
        left half done and its outcome is never unknown to its caller.

        Raises:
            StoreUnavailable: the connection is closed.
        """
        return await anyio.to_thread.run_sync(self._call, operation, limiter=self._limiter)

    def _call(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreUnavailable("the store is closed")
        return operation(self._conn)

    async def close(self) -> None:
        """Close the connection once the operation running now (if any) ends. Idempotent."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close, limiter=self._limiter)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
