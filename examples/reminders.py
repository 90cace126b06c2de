"""Reminders: an order that must be paid before a deadline, kept by a durable timer.

Placing an order schedules a named timer, ``payment-deadline``, with ``ctx.schedule``. Paying
cancels it with ``ctx.cancel_timer``, in the same turn that records the payment, so a payment
and its deadline can never both win. An unpaid order's timer fires through the mailbox and
expires the order; a late payment then finds it completed. The timer is stored with the turn
that scheduled it, so a deadline that passes while the process is down fires when it starts
again. Real code would use a window of minutes or days; this one is short so that the
example finishes at once. Run it with::

    python examples/reminders.py
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import structlog

from actors import ActorCompleted, Context, Entity, Runtime, handler

PAYMENT_WINDOW = timedelta(milliseconds=300)
DEADLINE = "payment-deadline"  # a timer name: scheduling it again would replace it


@dataclass
class PlaceOrder:
    amount: int


@dataclass
class OrderState:
    amount: int = 0
    paid: bool = False


class Order(Entity):
    name = "order"
    state: OrderState
    result: str  # how the order ended, kept for the retention window
    retention = timedelta(days=7)

    @handler(start=True)
    async def place(self, ctx: Context, order: PlaceOrder) -> str:
        self.state.amount = order.amount
        ctx.schedule(Order.payment_due, after=PAYMENT_WINDOW, name=DEADLINE)
        return f"awaiting payment of {order.amount}"

    @handler
    async def pay(self, ctx: Context, amount: int) -> str:
        self.state.paid = True
        ctx.cancel_timer(DEADLINE)  # committed with the payment: payment_due never runs
        return f"paid {amount}, deadline cancelled"

    @handler
    async def payment_due(self, ctx: Context) -> None:
        ctx.complete("expired: not paid in time")  # ending it drops any other timers too

    @handler
    async def describe(self, ctx: Context) -> str:
        return "paid" if self.state.paid else "unpaid"

    @handler
    async def ship(self, ctx: Context) -> str:
        ctx.complete("shipped")
        return "shipped"


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'orders.db'}"
        async with Runtime.open(url, entities=[Order]) as rt:
            for key, amount in (("order-1", 1999), ("order-2", 500)):
                placed = await rt.start(Order, key, PlaceOrder(amount=amount))
                print(f"{key} placed: {await placed.reply()}")
            order_1, order_2 = rt.ref(Order, "order-1"), rt.ref(Order, "order-2")
            print(f"order-1 pay(1999) -> {await order_1.ask(Order.pay, 1999)}")

            # result() waits until the order ends: here, when its deadline fires.
            print(f"order-2 -> {await order_2.result()}")
            try:
                await order_2.ask(Order.pay, 500)
            except ActorCompleted as exc:
                print(f"order-2 pay(500) -> refused: {type(exc).__name__}")

            # order-1 was placed first, so its deadline has passed too; it was cancelled.
            described = await order_1.ask(Order.describe)
            print(f"order-1 after its deadline -> {await order_1.status()}, {described}")
            print(f"order-1 ship() -> {await order_1.ask(Order.ship)}")
            fired_before = rt.statistics().timers_fired

            await rt.start(Order, "order-3", PlaceOrder(amount=42))
            print("order-3 placed, then the process stops before its deadline")

        await anyio.sleep(PAYMENT_WINDOW.total_seconds() * 2)  # the deadline passes meanwhile
        async with Runtime.open(url, entities=[Order]) as rt:
            print(f"order-3 after restart -> {await rt.ref(Order, 'order-3').result()}")
            fired_after = rt.statistics().timers_fired
        print(f"timers fired: {fired_before} before the restart, {fired_after} after")


if __name__ == "__main__":
    anyio.run(main)
