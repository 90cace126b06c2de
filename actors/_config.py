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
        max_active: activations kept in memory; past it, least recently used idle ones are
            dropped (their actors stay in the store and re-activate on the next message).
        purge_interval: how often expired completed actors are purged from the store.
        purge_batch: how many expired actors one purge transaction removes.
        ask_timeout: the default ``ask``/``reply`` timeout; ``None`` waits forever.
        close_timeout: how long closing may take to flush committed-but-unacknowledged work.
    """

    max_batch: int = 1000
    max_active: int = 10_000
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
        for name in ("purge_interval", "close_timeout"):
            value: timedelta = getattr(self, name)
            if value <= timedelta(0):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.ask_timeout is not None and self.ask_timeout <= timedelta(0):
            raise ValueError(f"ask_timeout must be positive or None, got {self.ask_timeout}")
