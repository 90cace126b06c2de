"""``Store.statistics``: per-entity counts from the grouped rows each backend reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from persistence.records import EntityStatistics, Status


def entity_statistics(
    *,
    actors: Iterable[tuple[str, str, int, int]],
    messages: Iterable[tuple[str, int, int, float | None]],
    timers: Iterable[tuple[str, int, float | None]],
    dead_letters: Iterable[tuple[str, int]],
) -> list[EntityStatistics]:
    """One record per entity name found in any table, in name order.

    Args:
        actors: (entity, status, live actors, expired actors) per entity and status.
        messages: (entity, unhandled messages, kept replies, oldest unhandled's time).
        timers: (entity, timers, soonest due time).
        dead_letters: (entity, dead letters).
    """
    found: dict[str, dict[str, Any]] = {}

    def of(entity: str) -> dict[str, Any]:
        return found.setdefault(
            entity,
            {
                "entity": entity,
                "actors": {},
                "expired": 0,
                "messages": 0,
                "kept_replies": 0,
                "timers": 0,
                "dead_letters": 0,
                "oldest_message_at": None,
                "next_timer_at": None,
            },
        )

    for entity, status, live, expired in actors:
        fields = of(entity)
        if live:
            fields["actors"][Status(status)] = int(live)
        fields["expired"] += int(expired)
    for entity, unhandled, kept, oldest in messages:
        fields = of(entity)
        fields.update(messages=int(unhandled), kept_replies=int(kept), oldest_message_at=oldest)
    for entity, count, due in timers:
        of(entity).update(timers=int(count), next_timer_at=due)
    for entity, count in dead_letters:
        of(entity)["dead_letters"] = int(count)
    return [EntityStatistics(**found[name]) for name in sorted(found)]
