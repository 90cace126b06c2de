"""The entity and the plain-Python model that ``test_stateful.py`` checks the runtime against.

The model is written from the documentation alone (README "What it guarantees", DESIGN.md
"Guarantees" and "Conflicts are messages", docs/idempotency.md, docs/lifecycle.md and
docs/testing.md); it never looks at the store. It predicts, for one ``Account`` actor per key:
the generation a start or a first message creates, ``created`` flags, every reply and error,
the state, the status and the result, idempotency-key repeats and conflicts, timers firing at
their due times, and retention expiring exactly at ``ended_at + retention``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from actors import Context, Entity, Status, handler

RETENTION = timedelta(minutes=5)
IDLE = timedelta(minutes=3)


@dataclass
class Ledger:
    total: int = 0


def opened(key: str, generation: int, amount: int) -> str:
    """The start handler's reply."""
    return f"{key}#{generation}: opened with {amount}"


class Account(Entity):
    """A ledger: opened with an amount, added to, then closed (completed) or given up (failed).

    ``arm`` starts a periodic ``tick`` timer (adds 1 every few minutes), ``set_deadline`` a
    timer that closes the account, ``disarm`` cancels both. Idle accounts leave memory after
    3 minutes, which callers must never notice.
    """

    name = "account"
    retention = RETENTION
    idle_timeout = IDLE
    state: Ledger
    result: int

    @handler(start=True)
    async def open(self, ctx: Context, amount: int) -> str:
        if amount < 0:
            raise ValueError(f"cannot open with {amount}")  # fails the generation
        self.state.total = amount
        return opened(ctx.key, ctx.generation, amount)

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        self.state.total += amount  # changed, then the turn raises: the change must not stay
        if self.state.total < 0:
            raise ValueError(f"overdrawn by {-self.state.total}")
        return self.state.total

    @handler
    async def total(self, ctx: Context) -> int:
        return self.state.total

    @handler
    async def close(self, ctx: Context) -> int:
        ctx.complete(self.state.total)
        return self.state.total

    @handler
    async def give_up(self, ctx: Context, reason: str) -> None:
        ctx.fail(reason)

    @handler
    async def arm(self, ctx: Context, minutes: int) -> None:
        ctx.schedule(Account.tick, minutes, after=timedelta(minutes=minutes), name="tick")

    @handler
    async def tick(self, ctx: Context, minutes: int) -> None:
        self.state.total += 1
        ctx.schedule(Account.tick, minutes, after=timedelta(minutes=minutes), name="tick")

    @handler
    async def set_deadline(self, ctx: Context, minutes: int) -> None:
        ctx.schedule(Account.expire, after=timedelta(minutes=minutes), name="deadline")

    @handler
    async def expire(self, ctx: Context) -> None:
        ctx.complete(self.state.total)

    @handler
    async def disarm(self, ctx: Context) -> None:
        ctx.cancel_timer("tick")
        ctx.cancel_timer("deadline")


# --- the model ---------------------------------------------------------------------------

Outcome = tuple[str, Any]
"""What a call ended with: ``("reply", value)``, or an error's class name and its fields."""

NOT_FOUND: Outcome = ("ActorNotFound", None)
CLOSED: Outcome = ("RuntimeClosed", None)
# Errors a tell raises when it is refused; any other outcome of its turn is nobody's to see.
REFUSALS = frozenset({"ActorNotFound", "ActorCompleted", "IdempotencyConflict"})


def reply(value: Any) -> Outcome:
    return ("reply", value)


@dataclass(frozen=True)
class Call:
    """A message to an account: a handler and its payload (``None``: it takes none)."""

    handler: str
    payload: int | str | None = None

    def __repr__(self) -> str:
        payload = "" if self.payload is None else f", {self.payload!r}"
        return f"Call({self.handler!r}{payload})"


@dataclass
class Timer:
    handler: str  # "tick" or "expire"
    due: float
    order: int  # timers due together fire in the order they were scheduled
    minutes: int


@dataclass
class Kept:
    """The stored outcome of a message sent with an idempotency key."""

    call: Call
    outcome: Outcome
    expires_at: float


@dataclass
class Generation:
    key: str
    number: int
    retention: float
    status: Status = Status.ACTIVE
    total: int = 0
    result: int | None = None
    error: tuple[str, str] | None = None  # (type, message) of a failure or a cancel
    ended_at: float | None = None
    kept: dict[str, Kept] = field(default_factory=dict)
    timers: dict[str, Timer] = field(default_factory=dict)

    def live(self, now: float) -> bool:
        """G6: an ended generation's record is gone at exactly ``ended_at + retention``."""
        return self.ended_at is None or self.ended_at + self.retention > now

    def ending(self) -> Outcome:
        """What ``result()``, a later duplicate start and an adopting duplicate get."""
        if self.status is Status.COMPLETED:
            return reply(self.result)
        if self.status is Status.FAILED:
            assert self.error is not None
            return ("ActorFailed", (*self.error, self.number))
        return ("ActorCompleted", (self.status.value, self.number))


class Model:
    """Every key's latest generation, and the virtual time."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.latest: dict[str, Generation] = {}
        self.highest = 0  # the largest generation number seen, of any key
        self._order = itertools.count()
        self.events: Counter[str] = Counter()  # what the steps reached, for the test's report

    def current(self, key: str) -> Generation | None:
        """The key's live generation, if it has one."""
        gen = self.latest.get(key)
        return gen if gen is not None and gen.live(self.now) else None

    def creates(self, key: str, bound: int | None) -> bool:
        """Whether an ask or tell to ``key`` creates a generation (a virtual actor)."""
        return bound is None and self.current(key) is None

    def live_count(self, status: Status | None = None) -> int:
        return sum(
            1
            for key in self.latest
            if (gen := self.current(key)) is not None and status in (None, gen.status)
        )

    def create(self, key: str, number: int, retention: timedelta) -> Generation:
        """A new generation of ``key`` numbered ``number`` by the runtime.

        The docs promise a larger generation than the key ever had (never reused, so an old
        ref cannot reach it); after a purge the store numbers it past the largest purged
        generation of any key, so the model checks the range, not the exact value.
        """
        previous = self.latest.get(key)
        floor = 0 if previous is None else previous.number
        assert floor < number <= self.highest + 1, (
            f"{key}: new generation {number}, expected one in ({floor}, {self.highest + 1}]"
        )
        self.highest = max(self.highest, number)
        self.events["generation after expiry"] += previous is not None
        gen = Generation(key, number, retention.total_seconds())
        self.latest[key] = gen
        return gen

    def end(
        self,
        gen: Generation,
        status: Status,
        *,
        result: int | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        """End ``gen`` now; its timers are dropped with it."""
        gen.status, gen.result, gen.error, gen.ended_at = status, result, error, self.now
        gen.timers.clear()

    def open(self, gen: Generation, amount: int) -> Outcome:
        """The start handler on a new generation: the creator's reply."""
        if amount < 0:
            message = f"cannot open with {amount}"
            self.end(gen, Status.FAILED, error=("ValueError", message))  # a failed start fails
            return ("HandlerFailed", ("open", "ValueError", message, gen.number))
        gen.total = amount
        return reply(opened(gen.key, gen.number, amount))

    def send(self, key: str, bound: int | None, call: Call, idempotency_key: str | None) -> Outcome:
        """An ask of ``call`` (a tell gets the refusals only); creation already recorded."""
        gen = self.current(key)
        if gen is None or (bound is not None and bound != gen.number):
            return NOT_FOUND  # a ref bound to a generation never reaches another one
        if idempotency_key is not None:
            kept = gen.kept.get(idempotency_key)
            if kept is not None and kept.expires_at > self.now:
                if kept.call != call:
                    return ("IdempotencyConflict", idempotency_key)
                self.events["repeat"] += 1
                return kept.outcome  # G5: the stored reply; nothing runs
            self.events["key expired"] += kept is not None
            gen.kept.pop(idempotency_key, None)  # its window has passed: a new message
        if gen.status is not Status.ACTIVE:
            return ("ActorCompleted", (gen.status.value, gen.number))
        outcome = self._run(gen, call)
        if idempotency_key is not None:
            gen.kept[idempotency_key] = Kept(call, outcome, self.now + gen.retention)
        return outcome

    def _run(self, gen: Generation, call: Call) -> Outcome:
        payload = call.payload
        if call.handler == "add":
            assert isinstance(payload, int)
            if gen.total + payload < 0:  # G3: a turn that raises changes nothing
                message = f"overdrawn by {-(gen.total + payload)}"
                return ("HandlerFailed", ("add", "ValueError", message, gen.number))
            gen.total += payload
            return reply(gen.total)
        if call.handler == "total":
            return reply(gen.total)
        if call.handler == "close":
            self.end(gen, Status.COMPLETED, result=gen.total)
            return reply(gen.total)
        if call.handler == "give_up":
            assert isinstance(payload, str)
            self.end(gen, Status.FAILED, error=("Failure", payload))
            return reply(None)
        if call.handler in ("arm", "set_deadline"):
            assert isinstance(payload, int)
            name, target = ("tick", "tick") if call.handler == "arm" else ("deadline", "expire")
            self._schedule(gen, name, target, payload)  # a pending name is replaced
            return reply(None)
        assert call.handler == "disarm", call
        gen.timers.clear()
        return reply(None)

    def _schedule(self, gen: Generation, name: str, target: str, minutes: int) -> None:
        gen.timers[name] = Timer(target, self.now + minutes * 60, next(self._order), minutes)

    def cancel(self, key: str, bound: int | None, reason: str) -> Outcome:
        """``ref.cancel()``: ends an active generation; ``False`` on an ended one."""
        gen = self.current(key)
        if gen is None or (bound is not None and bound != gen.number):
            return NOT_FOUND
        if gen.status is not Status.ACTIVE:
            return reply(False)
        self.end(gen, Status.CANCELLED, error=("Cancelled", reason))
        return reply(True)

    def advance(self, seconds: int) -> None:
        """Move time; each timer due on the way fires at its own due time, in order."""
        target = self.now + seconds
        self._fire_due(target)
        self.now = target

    def pause(self, seconds: int) -> None:
        """Move time while no runtime is open: nothing fires until one opens."""
        self.now += seconds

    def reopen(self) -> None:
        """A runtime opened: timers that came due while none was open fire now."""
        self._fire_due(self.now)

    def _fire_due(self, until: float) -> None:
        while True:
            due = [
                (timer.due, timer.order, gen, name)
                for gen in self.latest.values()
                if gen.status is Status.ACTIVE
                for name, timer in gen.timers.items()
                if timer.due <= until
            ]
            if not due:
                return
            at, _, gen, name = min(due, key=lambda item: (item[0], item[1]))
            self.now = max(self.now, at)
            timer = gen.timers.pop(name)
            self.events[f"{timer.handler} fired"] += 1
            if timer.handler == "tick":
                gen.total += 1
                self._schedule(gen, "tick", "tick", timer.minutes)
            else:
                self.end(gen, Status.COMPLETED, result=gen.total)
