"""Registry: find orders by what they are about (customer, region, amount), not by key.

Each order is an actor keyed by its order id. Its start carries the ``customer`` and
``region`` attributes (``rt.start(..., attributes=...)``); its turns keep ``amount`` up to date
(``ctx.set_attributes``), committed with the turn. The registry then answers what no single
key can: one customer's open orders, a region's orders page by page (keyset cursors that
stay stable while orders change), counts by region, and large orders across customers. A
shipped order is still found, with its result, for its retention window. Run it with::

    python examples/registry.py
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import anyio
import structlog

from actors import ActorInfo, Context, Entity, Ge, InvalidQuery, Runtime, handler

REGIONS = ("ap", "eu", "us")
# key: (customer, region, amount in cents)
ORDERS = {
    "order-01": ("alice", "eu", 1200),
    "order-02": ("bob", "us", 4500),
    "order-03": ("alice", "eu", 300),
    "order-04": ("carol", "ap", 9900),
    "order-05": ("alice", "us", 15000),
    "order-06": ("bob", "eu", 700),
    "order-07": ("carol", "eu", 2500),
    "order-08": ("alice", "eu", 5200),
    "order-09": ("bob", "us", 12000),
    "order-10": ("carol", "ap", 800),
}


@dataclass
class OrderState:
    amount: int = 0
    items: int = 0


class Order(Entity):
    name = "order"
    state: OrderState
    result: str
    retention = timedelta(days=30)  # a shipped order stays findable for 30 days
    # Declared: a misspelt name or a value of another type is refused, in turns and queries.
    attribute_types: ClassVar[Mapping[str, type]] = {
        "customer": str,
        "region": str,
        "amount": int,
    }

    @handler(start=True)
    async def place(self, ctx: Context, amount: int) -> int:
        return self._add(ctx, amount)

    @handler
    async def add_item(self, ctx: Context, amount: int) -> int:
        return self._add(ctx, amount)

    @handler
    async def ship(self, ctx: Context) -> str:
        ctx.complete(f"shipped {self.state.items} item(s) for {self.state.amount}")
        return "shipped"

    def _add(self, ctx: Context, amount: int) -> int:
        self.state.amount += amount
        self.state.items += 1
        ctx.set_attributes(amount=self.state.amount)  # committed with this turn
        return self.state.amount


def line(info: ActorInfo[Order]) -> str:
    a = info.attributes
    return f"{info.key} {a['customer']} {a['region']} {a['amount']} {info.status}"


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'orders.db'}"
        async with Runtime.open(url, entities=[Order]) as rt:
            for key, (customer, region, amount) in ORDERS.items():
                attributes = {"customer": customer, "region": region}
                await (await rt.start(Order, key, amount, attributes=attributes)).reply()
            for key in ("order-03", "order-06", "order-09"):
                await rt.ref(Order, key).ask(Order.ship)

            # One customer's open orders, largest first.
            page = await rt.find(
                Order, where={"customer": "alice"}, status="active", order_by="-amount"
            )
            print("alice's open orders:", ", ".join(line(i) for i in page.items))

            # A turn's attributes are in the registry once its reply has arrived.
            total = await rt.ref(Order, "order-01").ask(Order.add_item, 1000)
            found = await rt.find(Order, where={"customer": "alice", "amount": total})
            print(f"order-01 add_item(1000) -> {total}; found by amount: {found.items[0].key}")

            # Every order of a region, two per page, by amount. A cursor resumes after the
            # last order it saw: an order placed meanwhile that sorts before it neither
            # shows up nor shifts the pages (keyset pagination, not offsets).
            page = await rt.find(Order, where={"region": "eu"}, order_by="amount", limit=2)
            number = 1
            while True:
                print(f"eu page {number}:", ", ".join(line(i) for i in page.items))
                if page.cursor is None:
                    break
                if number == 1:
                    placed = await rt.start(
                        Order, "order-11", 100, attributes={"customer": "dave", "region": "eu"}
                    )
                    await placed.reply()
                    print("order-11 dave eu 100 placed between pages")
                page = await rt.find(
                    Order, where={"region": "eu"}, order_by="amount", limit=2, after=page.cursor
                )
                number += 1

            for region in REGIONS:
                every = await rt.count(Order, where={"region": region})
                open_ = await rt.count(Order, where={"region": region}, status="active")
                print(f"region {region}: {every} orders, {open_} open")

            # Across customers: find_all pages through every match for you.
            async for info in rt.find_all(Order, where={"amount": Ge(10_000)}, order_by="key"):
                answer = await info.ref.result() if info.status == "completed" else "open"
                print(f"large: {line(info)} -> {answer}")

            try:
                await rt.find(Order, where={"amount": "a lot"})
            except InvalidQuery as exc:
                print(f"refused: {exc}")


if __name__ == "__main__":
    anyio.run(main)
