"""The multi-node part of the storage contract: sessions, leases, wake-ups and replies.

A store that several nodes share (PostgreSQL) also implements :class:`Leases`. A node joins
with a *session*: a number that is never reused, kept live by renewing it before its lease
runs out. A session owns actors through per-actor leases, each with an *epoch*, a number that
grows every time the actor changes hands. While a session is live, no other session can take
its actors; a turn's commit carries its epoch (``TurnCommit.epoch``) and is refused when the
lease has moved on or the session has expired (``TurnOutcome.fenced``).

A store with leases decides ownership as it stores messages: a message for an actor that no
live session owns makes the writing session its owner (``MessageRecord.epoch``); a message for
an actor that another live session owns wakes that session (:class:`MailFor`). Replies to
callers on other nodes are stored and wake their session (:class:`RepliesReady`); the end of
a generation wakes every session (:class:`Ended`). Wake-ups are hints, delivered after the
commit and perhaps not at all (a dropped connection): a node also looks now and then
(``claim_orphans``, ``take_replies``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from persistence.records import ActorId, ReplyRecord, Status, StoredReply

__all__ = ["Ended", "Leases", "MailFor", "Notification", "Orphaned", "RepliesReady"]


@dataclass(frozen=True, slots=True)
class MailFor:
    """A message was stored for ``actor``, which this session owns (or owned)."""

    actor: ActorId


@dataclass(frozen=True, slots=True)
class RepliesReady:
    """Replies for this session's callers were stored: take them with ``take_replies``."""


@dataclass(frozen=True, slots=True)
class Ended:
    """``generation`` of ``actor`` ended with ``status`` (sent to every session)."""

    actor: ActorId
    generation: int
    status: Status


@dataclass(frozen=True, slots=True)
class Orphaned:
    """A node left (sent to every session): its actors with mail are anyone's to take."""


Notification = MailFor | RepliesReady | Ended | Orphaned
"""A wake-up a store with leases sends to a session (see :meth:`Leases.join`)."""


@runtime_checkable
class Leases(Protocol):
    """Sessions and actor leases of a store shared by several nodes."""

    @property
    def session(self) -> int | None:
        """This store's live session, or ``None`` before ``join`` (and after ``leave``)."""
        ...

    async def join(
        self, node: str, *, lease: float, listener: Callable[[Notification], None]
    ) -> int:
        """Start a new session for ``node``, live for ``lease`` seconds unless renewed.

        ``listener`` is called (on the event loop) with the wake-ups for this session, until
        ``leave``. Writes made after ``join`` are made by this session. A store joins once at
        a time: joining again (after the session was lost) replaces the session.
        """
        ...

    async def renew(self) -> bool:
        """Extend the session by its lease; ``False`` if it had expired.

        An expired session is lost: every lease it held may have moved, and the node must
        drop its actors and join anew.
        """
        ...

    async def leave(self) -> None:
        """End the session: release every lease it holds, and wake the other sessions.

        They hear :class:`Orphaned`, and take its actors that have mail over at once.
        """
        ...

    async def claim(self, actors: Sequence[ActorId]) -> dict[ActorId, int]:
        """Take the leases of ``actors`` that no live session holds; keep those held already.

        Returns the epoch of every one of ``actors`` this session holds now.
        """
        ...

    async def claim_orphans(self, *, entities: frozenset[str], limit: int) -> dict[ActorId, int]:
        """Claim up to ``limit`` orphans: actors of ``entities`` with unhandled messages.

        An orphan has no live owner (its node died or left). Returns each one's new epoch.
        """
        ...

    async def mine_with_mail(self, *, limit: int) -> list[ActorId]:
        """Up to ``limit`` actors this session holds that have unhandled messages."""
        ...

    async def release(self, actor: ActorId, epoch: int) -> bool:
        """Give up the lease on ``actor`` at ``epoch`` unless it has unhandled messages.

        Returns whether it was released (``False``: mail came, or the lease had moved).
        """
        ...

    async def unhandled(self, messages: Sequence[int]) -> set[int]:
        """Which of ``messages`` are stored and not handled yet."""
        ...

    async def kept_replies(self, messages: Sequence[int]) -> dict[int, StoredReply]:
        """The replies kept for those of ``messages`` that were handled (idempotency keys)."""
        ...

    async def take_replies(self) -> list[ReplyRecord]:
        """The replies stored for this session's callers, deleted as they are taken."""
        ...
