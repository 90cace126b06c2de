"""A one-shot result slot that one task sets and others wait on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")

_UNSET = object()

# What a waiting future makes its event with (see use_running_backend).
_new_event: Callable[[], anyio.Event] = anyio.Event


def use_running_backend() -> None:
    """Make futures create the running event loop library's ``Event`` class directly.

    ``anyio.Event()`` finds the running library at each call, a microsecond of the few a
    message costs, and every ask makes two. ``Runtime.open`` calls this in its event loop;
    a process runs one library at a time (the storage backends are asyncio's).
    """
    global _new_event
    _new_event = type(anyio.Event())


def new_event() -> anyio.Event:
    """An ``anyio.Event``, made as futures make theirs (see ``use_running_backend``)."""
    return _new_event()


class Future(Generic[T]):
    """Set once with a value or an error; ``wait()`` returns the value or raises the error.

    The event that waiters sleep on is made only when someone waits before the result is in:
    most futures on the hot path are set before anyone waits, or waited on by one task.
    """

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._value: object = _UNSET
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._value is not _UNSET or self._error is not None

    def set(self, value: T) -> None:
        if not self.done():
            self._value = value
            if self._event is not None:
                self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self.done():
            self._error = error
            if self._event is not None:
                self._event.set()

    async def wait(self) -> T:
        if not self.done():
            if self._event is None:
                self._event = _new_event()
            await self._event.wait()
        return self.result()

    def result(self) -> T:
        """The value of a future that is done, or its error raised."""
        assert self.done(), "result() of a future not yet set"
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set() stored a T
