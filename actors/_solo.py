"""Suspect turns run alone, so that a crash during one is blamed on it and on nothing else.

A message found at the head of its mailbox by two restarts in a row may be what crashes the
process. Its next run is a suspect turn: it waits until no other turn runs handler code,
keeps the others out, records the attempt durably, and ends only once its commit has landed.
A crash meanwhile can only be its own.

A turn asked from a running turn (a message with a live chain) is part of the asking turn
and passes the gate: the suspect may ask other actors. Turns can still wait on each other
across the gate (an ordinary turn asking the suspect's actor; the suspect asking an actor
whose next message is an ordinary one), so each side waits at most ``WAIT`` and then runs
anyway: the blame is then less certain, never a deadlock.
"""

from __future__ import annotations

import anyio

WAIT = 1.0
"""The longest a suspect turn waits for the ordinary turns under way to end."""


class Solo:
    def __init__(self) -> None:
        self.running = 0  # ordinary turns running handler code
        self.pending = 0  # suspect turns waiting for their slot, or in it
        self._lock = anyio.Lock()
        self._changed = anyio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def enter(self) -> None:
        """An ordinary turn starts: not while a suspect's runs, unless that takes ``WAIT``.

        Bounded too, because the suspect may be waiting on this very turn's actor (it asked
        an actor whose next message is this one).
        """
        with anyio.move_on_after(WAIT):
            while self.pending:
                await self._changed.wait()
        self.running += 1

    def leave(self) -> None:
        """An ordinary turn ends (or starts waiting for an ask's reply)."""
        self.running -= 1
        if not self.running and self.pending:
            self._notify()

    async def enter_alone(self) -> None:
        """A suspect turn starts once no other turn runs; others wait until ``leave_alone``."""
        self.pending += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self.pending -= 1
            self._notify()
            raise
        try:
            with anyio.move_on_after(WAIT):
                while self.running:
                    await self._changed.wait()
        except BaseException:
            self.leave_alone()
            raise

    def leave_alone(self) -> None:
        self._lock.release()
        self.pending -= 1
        self._notify()
