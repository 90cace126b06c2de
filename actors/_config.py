"""RuntimeConfig: the runtime's tunables, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import final

__all__ = ["RuntimeConfig"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """Options for :meth:`actors.Runtime.open`.

    Attributes:
        max_batch: the most writes (admissions, enqueues, turn commits) one commit takes.
        max_active: the most activations held in memory. To make room, the least recently
            used idle one is dropped (its actor stays in the store and re-activates on its next
            message); while all are busy, messages for further actors wait their turn.
        idle_timeout: how long an activation with no work stays in memory, for entities that
            do not set their own ``idle_timeout``.
        timer_batch: the most due timers one commit fires.
        purge_interval: how often expired completed actors are purged from the store.
        purge_batch: how many expired actors one purge transaction removes.
        ask_timeout: the default ``ask``/``reply`` timeout; ``None`` waits forever.
        close_timeout: how long closing may take to flush committed-but-unacknowledged work.
    """

    max_batch: int = 1000
    max_active: int = 10_000
    idle_timeout: timedelta = timedelta(minutes=10)
    timer_batch: int = 1000
    purge_interval: timedelta = timedelta(seconds=30)
    purge_batch: int = 500
    ask_timeout: timedelta | None = None
    close_timeout: timedelta = timedelta(seconds=10)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_active < 1:
            raise ValueError(f"max_active must be at least 1, got {self.max_active}")
        if self.purge_batch < 1:
            raise ValueError(f"purge_batch must be at least 1, got {self.purge_batch}")
        if self.timer_batch < 1:
            raise ValueError(f"timer_batch must be at least 1, got {self.timer_batch}")
        for name in ("purge_interval", "close_timeout", "idle_timeout"):
            value: timedelta = getattr(self, name)
            if value <= timedelta(0):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.ask_timeout is not None and self.ask_timeout <= timedelta(0):
            raise ValueError(f"ask_timeout must be positive or None, got {self.ask_timeout}")
