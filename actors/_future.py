"""A one-shot result slot that one task sets and others wait on."""

from __future__ import annotations

from typing import Generic, TypeVar

import anyio

T = TypeVar("T")

_UNSET = object()


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
                self._event = anyio.Event()
            await self._event.wait()
        return self.result()

    def result(self) -> T:
        """The value of a future that is done, or its error raised."""
        assert self.done(), "result() of a future not yet set"
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set() stored a T
