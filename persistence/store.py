"""The storage contract: the only way the runtime reaches durable state.

A store applies batches of writes in one transaction each (group commit), and answers reads
with committed data only. It makes no runtime decisions: it does not run handlers, decode
payloads or know about entities beyond their names.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from persistence.records import (
    ActorId,
    ActorRecord,
    ActorSummary,
    DeadLetterRecord,
    EntityStatistics,
    MessageRecord,
    Query,
    TimerRecord,
    WriteItem,
    WriteOutcome,
)

__all__ = ["Store"]


class Store(Protocol):
    """A durable store of actors, their mailboxes and attributes.

    Implementations serialize their own operations; callers may call them concurrently.
    Every method raises :class:`persistence.errors.StoreError` subclasses, never a driver's
    exception.
    """

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        """Apply ``items`` in order, in one transaction, at wall-clock time ``now``.

        Later items see the effects of earlier ones. Either every item is applied or none is
        (the error is raised).

        Returns:
            One outcome per item, in order: ``AdmitOutcome`` for ``Admit``, ``EnqueueOutcome``
            for ``Enqueue``, ``TurnOutcome`` for ``TurnCommit``, ``FireOutcome`` for
            ``FireTimers``, ``BuryOutcome`` for ``BuryMessage``, ``RetryOutcome`` for
            ``RetryDeadLetter``.
        """
        ...

    async def record_attempts(self, messages: Sequence[int]) -> None:
        """Add one to the ``attempts`` of each of these unhandled messages, durably."""
        ...

    async def dead_letters(
        self, *, entities: Collection[str] | None, after: int | None, limit: int
    ) -> list[DeadLetterRecord]:
        """Up to ``limit`` dead letters (of ``entities``, if given) in id order, after ``after``."""
        ...

    async def discard_dead_letter(
        self, dead_letter: int, *, entities: Collection[str] | None = None
    ) -> bool:
        """Delete a dead letter (of ``entities``, if given); whether there was one."""
        ...

    async def next_timer_due(self, entities: Collection[str] | None = None) -> float | None:
        """The earliest ``due_at`` of a stored timer (of ``entities``, if given), or ``None``."""
        ...

    async def next_expiry(self) -> float | None:
        """The earliest ``expires_at`` of a terminal actor or a kept reply, or ``None``."""
        ...

    async def load_actor(self, actor: ActorId) -> ActorRecord | None:
        """The actor's current record with its attributes, or ``None`` if there is none."""
        ...

    async def load_mailbox(self, actor: ActorId) -> list[MessageRecord]:
        """The actor's stored messages, in mailbox (id) order."""
        ...

    async def load_timers(self, actor: ActorId) -> list[TimerRecord]:
        """The actor's stored timers, soonest first."""
        ...

    async def entity_names(self) -> list[str]:
        """The names of the entities that have stored actors, in order."""
        ...

    async def statistics(self, *, now: float) -> list[EntityStatistics]:
        """What the store holds, per entity name, in name order; expiry judged at ``now``.

        Counts every row: meant for operators, not for a hot path.
        """
        ...

    async def actors_with_mail(self, *, after: ActorId | None, limit: int) -> list[ActorId]:
        """Actors that have stored messages, in ``ActorId`` order, after ``after``."""
        ...

    async def find(self, query: Query) -> list[ActorSummary]:
        """Up to ``query.limit`` live actors matching ``query``, in its order."""
        ...

    async def count(self, query: Query) -> int:
        """How many live actors match ``query`` (its order, cursor and limit aside)."""
        ...

    async def purge_expired(self, *, now: float, limit: int) -> int:
        """Delete up to ``limit`` terminal actors whose ``expires_at`` <= ``now``.

        Their messages and attributes go with them. Returns how many were purged.
        """
        ...

    async def close(self) -> None:
        """Release the store's resources. Safe to call twice."""
        ...
