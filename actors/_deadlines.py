"""Deadlines for callers waiting on answers: on the system clock, or on an injected one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from anyio.abc import TaskGroup

from actors._clock import Clock
from actors.errors import AskTimeout


@contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """``fail_after`` that raises AskTimeout naming what timed out (no limit: no-op)."""
    if seconds is None:
        yield
        return
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError as exc:
        if isinstance(exc, AskTimeout):
            raise
        raise AskTimeout(f"no answer to {what} within {seconds:g} s") from None


@contextmanager
def clock_deadline(
    clock: Clock, services: TaskGroup, seconds: float | None, what: str
) -> Iterator[None]:
    """:func:`deadline` on an injected clock (a test's virtual clock, say).

    The clock's sleep runs in a runtime service task, which cancels the caller's scope when
    it ends; the caller's own task never leaves its scope, so its exceptions stay its own.
    """
    if seconds is None:
        yield
        return
    expired = False
    ringer = anyio.CancelScope()

    async def ring() -> None:
        nonlocal expired
        with ringer:
            await clock.sleep(seconds)
            expired = True
            scope.cancel()

    with anyio.CancelScope() as scope:
        services.start_soon(ring)
        try:
            yield
        finally:
            ringer.cancel()
    if expired and scope.cancelled_caught:
        raise AskTimeout(f"no answer to {what} within {seconds:g} s")
