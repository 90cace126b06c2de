"""Entity types the tests share."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import uuid4

import anyio

from actors import Context, Entity, handler


@dataclass
class CounterState:
    value: int = 0
    seen: list[str] = field(default_factory=list)


class Counter(Entity):
    """A virtual actor: an integer that handlers add to."""

    name = "counter"
    state: CounterState

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        self.state.value += amount
        ctx.set_attributes(parity="even" if self.state.value % 2 == 0 else "odd")
        return self.state.value

    @handler
    async def get(self, ctx: Context) -> int:
        return self.state.value

    @handler
    async def record(self, ctx: Context, token: str) -> None:
        """Remember ``token``: lets tests check each message ran exactly once, in order."""
        self.state.seen.append(token)
        self.state.value += 1

    @handler
    async def slow_record(self, ctx: Context, token: str) -> None:
        await anyio.sleep(0.005)
        self.state.seen.append(token)
        self.state.value += 1

    @handler
    async def seen(self, ctx: Context) -> list[str]:
        return self.state.seen

    @handler
    async def add_then_fail(self, ctx: Context, amount: int) -> int:
        self.state.value += amount
        ctx.set_attributes(parity="broken")
        ctx.tell(ctx.ref(Counter, f"{ctx.key}-peer"), Counter.add, amount)
        raise ValueError(f"refusing to add {amount}")

    @handler
    async def forward(self, ctx: Context, target: str) -> int:
        """Add 1 here and tell ``target`` to add 1, in one turn."""
        self.state.value += 1
        ctx.tell(ctx.ref(Counter, target), Counter.add, 1)
        return self.state.value

    @handler
    async def wrong_reply(self, ctx: Context) -> int:
        return "not an int"  # type: ignore[return-value]  # the runtime must catch this

    @handler
    async def corrupt_state(self, ctx: Context) -> None:
        self.state.value = "not an int"  # type: ignore[assignment]  # caught at commit time


@dataclass
class ChargeRequest:
    amount: int


@dataclass
class Receipt:
    charge_id: str
    amount: int


@dataclass
class PaymentState:
    charges: int = 0


class Payment(Entity):
    """Completes on its start message: one charge per key."""

    name = "payment"
    state: PaymentState

    @handler(start=True)
    async def charge(self, ctx: Context, req: ChargeRequest) -> Receipt:
        if req.amount < 0:
            raise ValueError("negative amount")
        self.state.charges += 1
        receipt = Receipt(charge_id=str(uuid4()), amount=req.amount)
        ctx.complete(receipt)
        return receipt

    @handler
    async def charges(self, ctx: Context) -> int:
        return self.state.charges


class Job(Entity):
    """Stays active after start; completes or fails on a later message."""

    name = "job"
    result: str

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        return f"started {label}"

    @handler
    async def finish(self, ctx: Context, output: str) -> None:
        ctx.complete(output)

    @handler
    async def give_up(self, ctx: Context, reason: str) -> None:
        ctx.fail(reason)

    @handler
    async def finish_twice(self, ctx: Context) -> None:
        ctx.complete("one")
        ctx.complete("two")


class Refund(Entity):
    """Shares keys with Payment to show that entity names scope keys."""

    name = "refund"

    @handler
    async def issue(self, ctx: Context, amount: int) -> str:
        ctx.complete(f"refund {amount} for {ctx.key}")
        return f"refund {amount} for {ctx.key}"
