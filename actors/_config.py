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
            message); while all are busy, messages for further actors wait their turn. An ask
            from a running handler is let in over the cap, since the asking turn waits on it
            (holding it back could leave every busy actor waiting on another).
        idle_timeout: how long an activation with no work stays in memory, for entities that
            do not set their own ``idle_timeout``.
        timer_batch: the most due timers one commit fires.
        purge_interval: how often expired completed actors are purged from the store.
        purge_batch: how many expired actors one purge transaction removes.
        ask_timeout: the default ``ask``/``reply`` timeout; ``None`` waits forever.
        close_timeout: how long closing may take to flush committed-but-unacknowledged work.
        handler_timeout: how long one handler may run before its turn fails with a
            ``HandlerTimeout`` error (the actor stays usable); ``None`` lets handlers run
            forever. A handler's own ``@handler(timeout=...)`` wins.
        max_attempts: how many attempts a message gets before it is moved to the dead
            letters: crashes it is blamed for (the first restart that finds it at the head of
            its mailbox, then each of its runs alone; see docs/reliability.md) and commits of
            its turn that the store refused for good.
        max_mailbox: the most messages one actor may have waiting for their turn (accepted,
            or on their way in); past it, callers get a retryable ``Overloaded`` error.
        max_in_flight: the most messages and commits the runtime holds in memory at once;
            past it, callers get a retryable ``Overloaded`` error.
        max_payload: the largest encoded payload a message may carry, in bytes.
        recent_results: how many ended actors' results are kept in memory to answer late
            duplicate starts without a commit (entities with the default duplicate policy);
            0 turns this off. Each entry holds the encoded result or error.
        recent_turns: how many of an actor's last turns its record keeps for operators
            (``actors show``: message, handler, when, how long, outcome), written with each
            turn's commit; 0 keeps none. At most 100.
        lease: multi-node only: how long a node's session (and so its hold on its actors)
            lasts unless renewed. The node renews it every third of this; a node silent for
            longer (dead, paused, cut off) loses its actors to the others, which take over
            within about one and a half leases. Longer: fewer false alarms on a slow node;
            shorter: faster failover.
    """

    max_batch: int = 1000
    max_active: int = 10_000
    idle_timeout: timedelta = timedelta(minutes=10)
    timer_batch: int = 1000
    purge_interval: timedelta = timedelta(seconds=30)
    purge_batch: int = 500
    ask_timeout: timedelta | None = None
    close_timeout: timedelta = timedelta(seconds=10)
    handler_timeout: timedelta | None = timedelta(minutes=1)
    max_attempts: int = 10
    max_mailbox: int = 10_000
    max_in_flight: int = 100_000
    max_payload: int = 1024 * 1024
    recent_results: int = 10_000
    recent_turns: int = 10
    lease: timedelta = timedelta(seconds=10)

    def __post_init__(self) -> None:
        for name in (
            "max_batch",
            "max_active",
            "purge_batch",
            "timer_batch",
            "max_attempts",
            "max_mailbox",
            "max_in_flight",
            "max_payload",
        ):
            count = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{name} must be an int of at least 1, got {count!r}")
        for name, most in (("recent_results", None), ("recent_turns", 100)):
            count = getattr(self, name)
            if (
                isinstance(count, bool)
                or not isinstance(count, int)
                or not 0 <= count <= (most or count)
            ):
                within = "of at least 0" if most is None else f"from 0 to {most}"
                raise ValueError(f"{name} must be an int {within}, got {count!r}")
        for name in (
            "purge_interval",
            "close_timeout",
            "idle_timeout",
            "ask_timeout",
            "handler_timeout",
            "lease",
        ):
            value = getattr(self, name)
            if value is None and name in ("ask_timeout", "handler_timeout"):
                continue
            check_duration(value, what=name)


MAX_DURATION = timedelta(days=3650)


def check_duration(value: object, *, what: str) -> timedelta:
    """``value`` if it is a positive ``timedelta`` of at most ten years.

    Raises:
        ValueError: it is not a timedelta, or is zero, negative or over ten years.
    """
    if not isinstance(value, timedelta):
        raise ValueError(f"{what} must be a timedelta, got {type(value).__name__}")
    if not timedelta(0) < value <= MAX_DURATION:
        raise ValueError(f"{what} must be positive and at most 3650 days, got {value}")
    return value


def check_retention(value: object, *, what: str = "retention") -> timedelta:
    """``value`` if it is a retention window: a ``timedelta`` from zero to ten years.

    Raises:
        ValueError: it is not.
    """
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= MAX_DURATION:
        raise ValueError(f"{what} must be a timedelta from 0 to 3650 days, got {value!r}")
    return value
