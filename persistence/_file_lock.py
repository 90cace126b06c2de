"""One runtime per SQLite file: an exclusive lock on ``<real path>-lock`` while it is open.

A runtime keeps its actors in memory, so two on one file would run the same actors at once
and overwrite each other's state. The lock is ``flock`` on a file of its own, never on the
database: closing any descriptor of the database file would drop SQLite's own POSIX locks.
The operating system releases it when the process ends, however it ends; a child made by
``fork`` closes its copies, so that it does not keep the file locked after its parent let go.
Without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from persistence.errors import StoreInUse, StoreUnavailable

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["acquire", "release"]

_POLL = 0.02
_held: set[int] = set()  # this process's lock descriptors


def _close_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


async def acquire(path: str, *, wait: float = 1.0) -> int | None:
    """Lock ``path``'s runtime lock, waiting up to ``wait`` seconds; its descriptor.

    A tool may hold it for a moment (``actors dead-letters retry``), hence the wait.

    Raises:
        StoreInUse: another store holds it (in this process or another).
        StoreUnavailable: the lock file cannot be opened.
    """
    if path == ":memory:" or fcntl is None:
        return None
    fd = _open(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() < deadline:
                await asyncio.sleep(_POLL)
                continue
            os.close(fd)
            raise StoreInUse(
                f"SQLite database {path!r} is already open in a runtime's store (in this"
                " process or another): one runtime per file (runtimes of several namespaces in"
                " one process share one store: open_store() once and pass it to each), or use"
                " PostgreSQL for several processes"
            ) from None
        _held.add(fd)
        return fd


def _open(path: str) -> int:
    # The real path: a symbolic link to the database names the same lock.
    try:
        return os.open(os.path.realpath(path) + "-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc


def release(fd: int | None) -> None:
    """Let go of a lock :func:`acquire` took (``None``: there was none)."""
    if fd is not None:
        _held.discard(fd)
        os.close(fd)
