"""Alarm: how a service loop sleeps until its next deadline, or until told of an earlier one.

The timer, retention and passivation loops each sleep until the earliest moment they have
work. New work with an earlier moment (a timer scheduled for sooner, a completion whose
retention ends first) calls :meth:`Alarm.wake_by`, which cuts the sleep short. A wake-up that
arrives while the loop is busy is remembered, so none is lost between reading the store and
going back to sleep.

``busy`` tells whether the loop may be working (see ``Runtime._quiet``): it is false only
while the loop sleeps and nobody has woken it.
"""

from __future__ import annotations

import anyio

from actors._clock import Clock


class Alarm:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._scope: anyio.CancelScope | None = None
        self._deadline: float | None = None
        self._earliest: float | None = None
        self.busy = True
        # Wake-ups asked for before this time count as asked for at it (a loop's spacing).
        self.not_before: float | None = None

    def reset(self) -> None:
        """Forget earlier wake-ups: the loop is about to read the work it has."""
        self._earliest = None

    def wake_by(self, when: float) -> None:
        """Make sure the loop wakes no later than ``when`` (or ``not_before``)."""
        if self.not_before is not None and when < self.not_before:
            when = self.not_before
        if self._earliest is None or when < self._earliest:
            self._earliest = when
        if self._scope is not None and (self._deadline is None or when < self._deadline):
            self.busy = True
            self._scope.cancel()

    async def sleep_until(self, deadline: float | None) -> None:
        """Sleep until ``deadline`` (``None``: until woken), or an earlier ``wake_by``."""
        if self._earliest is not None and (deadline is None or self._earliest < deadline):
            deadline = self._earliest
        now = self._clock.now()  # read once: a second reading may be past the deadline
        if deadline is not None and deadline <= now:
            await anyio.lowlevel.checkpoint()
            return
        with anyio.CancelScope() as scope:
            self._scope, self._deadline = scope, deadline
            self.busy = False
            try:
                if deadline is None:
                    await anyio.sleep_forever()
                else:
                    await self._clock.sleep(deadline - now)
            finally:
                self._scope = self._deadline = None
                self.busy = True
