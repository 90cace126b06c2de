"""Quickstart: a counter entity and a payment that charges once per key, on SQLite.

Shows virtual actors (created on first message), asks and tells, an atomic start with its
``created`` flag, a duplicate start that reuses the stored result, and a restart that keeps
everything. Run it with::

    python examples/quickstart.py            # on a database in a temporary folder
    python examples/quickstart.py app.db     # on app.db, kept for `actors ls app.db`
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import anyio
import structlog

from actors import Context, Entity, Runtime, handler


@dataclass
class CounterState:
    value: int = 0


class Counter(Entity):
    name = "counter"
    state: CounterState  # persisted after every turn

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        self.state.value += amount
        ctx.set_attributes(parity="even" if self.state.value % 2 == 0 else "odd")
        return self.state.value


@dataclass
class ChargeRequest:
    amount: int


@dataclass
class Receipt:
    charge_id: str
    amount: int


class Payment(Entity):
    name = "payment"

    @handler
    async def charge(self, ctx: Context, req: ChargeRequest) -> Receipt:
        receipt = Receipt(charge_id=str(uuid4()), amount=req.amount)
        ctx.complete(receipt)  # terminal: result stored, retention window starts
        return receipt


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        await run(f"sqlite:///{path}")
        print(f"the store is in {path}: look into it with `actors ls {path}`")
        return
    with tempfile.TemporaryDirectory() as folder:
        await run(f"sqlite:///{Path(folder) / 'app.db'}")


async def run(url: str) -> None:
    """Everything the quickstart shows, on the store at ``url``."""
    async with Runtime.open(url, entities=[Counter, Payment]) as rt:
        user = rt.ref(Counter, "user-7")
        print("add(5) ->", await user.ask(Counter.add, 5))
        await user.tell(Counter.add, 1)
        print("tell(add, 1) accepted durably")

        first = await rt.start(
            Payment, "order-123", ChargeRequest(amount=42), attributes={"customer": "c1"}
        )
        receipt = await first.reply()
        print(f"start payment/order-123: created={first.created} receipt={receipt}")
        again = await rt.start(Payment, "order-123", ChargeRequest(amount=42))
        print(f"start it again:          created={again.created} receipt={await again.reply()}")
        print("status:", await first.actor.status(), "| result:", await first.actor.result())

    async with Runtime.open(url, entities=[Counter, Payment]) as rt:
        print("after restart, add(1) ->", await rt.ref(Counter, "user-7").ask(Counter.add, 1))
        late = await rt.start(Payment, "order-123", ChargeRequest(amount=42))
        same = (await late.reply()) == receipt
        print(f"after restart, a duplicate gets the stored receipt: {same}")


if __name__ == "__main__":
    anyio.run(main)
