"""ForwardingStore: a Store that hands every call to another one.

Subclass it to instrument a store or to change some of its calls (tests inject faults this
way, benchmarks time purges) and override only what differs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

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
from persistence.store import Store

__all__ = ["ForwardingStore"]


class ForwardingStore:
    """A :class:`persistence.Store` whose every method calls the same one of ``inner``.

    Attributes:
        inner: the store calls go to.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def write(self, items: Sequence[WriteItem], *, now: float) -> list[WriteOutcome]:
        return await self.inner.write(items, now=now)

    async def record_attempts(self, messages: Sequence[int]) -> None:
        await self.inner.record_attempts(messages)

    async def dead_letters(
        self, *, entities: Collection[str] | None, after: int | None, limit: int
    ) -> list[DeadLetterRecord]:
        return await self.inner.dead_letters(entities=entities, after=after, limit=limit)

    async def discard_dead_letter(
        self, dead_letter: int, *, entities: Collection[str] | None = None
    ) -> bool:
        return await self.inner.discard_dead_letter(dead_letter, entities=entities)

    async def next_timer_due(self, entities: Collection[str] | None = None) -> float | None:
        return await self.inner.next_timer_due(entities)

    async def next_expiry(self) -> float | None:
        return await self.inner.next_expiry()

    async def load_actor(self, actor: ActorId) -> ActorRecord | None:
        return await self.inner.load_actor(actor)

    async def load_mailbox(self, actor: ActorId) -> list[MessageRecord]:
        return await self.inner.load_mailbox(actor)

    async def load_timers(self, actor: ActorId) -> list[TimerRecord]:
        return await self.inner.load_timers(actor)

    async def entity_names(self) -> list[str]:
        return await self.inner.entity_names()

    async def statistics(self, *, now: float) -> list[EntityStatistics]:
        return await self.inner.statistics(now=now)

    async def actors_with_mail(self, *, after: ActorId | None, limit: int) -> list[ActorId]:
        return await self.inner.actors_with_mail(after=after, limit=limit)

    async def find(self, query: Query) -> list[ActorSummary]:
        return await self.inner.find(query)

    async def count(self, query: Query) -> int:
        return await self.inner.count(query)

    async def purge_expired(self, *, now: float, limit: int) -> int:
        return await self.inner.purge_expired(now=now, limit=limit)

    async def close(self) -> None:
        await self.inner.close()


def _is_store(store: ForwardingStore) -> Store:
    return store  # mypy checks here that ForwardingStore meets the Store protocol


# Each method does what the protocol says, through ``inner``: it documents them once.
for _name, _method in vars(ForwardingStore).items():
    if callable(_method) and not _name.startswith("_"):
        _method.__doc__ = getattr(Store, _name).__doc__
