"""``RecentResults``: how recently ended actors ended, to answer late duplicate starts.

A start of a key whose actor ended within its retention window is answered with the stored
result without activating anything (DESIGN.md, "Conflicts are messages"). The store can answer
it; this cache answers it without a commit: an ended generation of an entity with the default
duplicate policy never changes until its record expires, so an entry is the store's own answer
until ``expires_at``. Entries go by least recent use beyond ``capacity``.
"""

from __future__ import annotations

from collections import OrderedDict

from actors._activation import Ending
from persistence import ActorId

__all__ = ["RecentResults"]


class RecentResults:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[ActorId, tuple[Ending, float]] = OrderedDict()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, actor: ActorId, ending: Ending, expires_at: float) -> None:
        """Keep how ``actor`` ended until ``expires_at`` (when its stored record expires)."""
        if self._capacity <= 0:
            return
        self._entries[actor] = (ending, expires_at)
        self._entries.move_to_end(actor)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget(self, actor: ActorId) -> None:
        """Drop what is known of ``actor``: it has a new generation."""
        self._entries.pop(actor, None)

    def get(self, actor: ActorId, now: float) -> Ending | None:
        """How ``actor`` ended, if known and its record has not expired at ``now``."""
        entry = self._entries.get(actor)
        if entry is None:
            return None
        ending, expires_at = entry
        if expires_at <= now:  # the store's rule: a record is live while expires_at > now
            del self._entries[actor]
            return None
        self._entries.move_to_end(actor)
        self.hits += 1
        return ending
