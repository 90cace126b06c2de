"""``SQLiteThread``: one sqlite3 connection, owned by one thread, reached by whole operations.

An operation is a plain function of the connection (a whole write batch, or a read). It runs on
the connection's own thread, so the event loop goes on while SQLite works and syncs to disk, and
it costs one thread hop however many statements it takes; a driver that hops once per statement
(aiosqlite) costs one per statement. Operations run one at a time, in the order they came.

The thread waits on a ``queue.SimpleQueue`` and answers through the event loop's
``call_soon_threadsafe``: a round trip costs a third of ``anyio.to_thread.run_sync``'s (13 µs
against 37 µs on the 2-core machine), and an ask waits for two. That ties this module to
asyncio, which the backends may use (the runtime may not).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from persistence.errors import StoreUnavailable

__all__ = ["SQLiteThread"]

T = TypeVar("T")

# An operation, the loop of its caller, and the future its outcome goes to.
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]]


class SQLiteThread:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    async def connect(cls, path: str) -> SQLiteThread:
        """Open ``path`` (a file or ``:memory:``) in autocommit mode; raises ``sqlite3.Error``."""
        self = cls()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(path, loop, ready), name=f"sqlite {path}", daemon=True
        )
        self._thread.start()
        with anyio.CancelScope(shield=True):  # the thread is running: learn how it started
            await ready
        return self

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` on the connection and return what it returns.

        Once submitted, an operation runs to its end even if the caller is cancelled meanwhile
        (the caller's cancellation takes effect when it returns), so a transaction is never
        left half done and its outcome is never unknown to its caller.

        Raises:
            StoreUnavailable: the connection is closed.
        """
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._jobs.put((operation, loop, done))
        with anyio.CancelScope(shield=True):
            result = await done
        return result

    async def close(self) -> None:
        """Close the connection once the operations submitted before (if any) end. Idempotent.

        Operations submitted before ``close`` run first: the thread takes them in order.
        """
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
        thread = self._thread
        if thread is not None and thread.is_alive():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join)

    def _serve(
        self, path: str, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]
    ) -> None:
        """The connection's thread: open it, then run operations until ``close``."""
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except BaseException as exc:
            self._closed = True
            _settle(loop, ready, None, exc)
            return
        _settle(loop, ready, None, None)
        try:
            while (job := self._jobs.get()) is not None:
                operation, caller, done = job
                try:
                    result = operation(conn)
                except BaseException as exc:
                    _settle(caller, done, None, exc)
                else:
                    _settle(caller, done, result, None)
        finally:
            conn.close()


def _settle(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    result: object,
    error: BaseException | None,
) -> None:
    """Hand an outcome to its caller's loop (from the connection's thread)."""

    def settle() -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)
