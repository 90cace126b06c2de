"""Shopping carts: the entity pattern, one long-lived actor per cart, with abandonment timers.

Each cart is an actor keyed by its cart id. Its handlers add and remove items and check out;
its state (the customer and the lines) is stored with every turn, and so are the attributes
that let carts be found by what they are about: ``customer``, ``items``, ``total`` (cents),
``last_activity`` (a datetime) and ``stage`` (``shopping``, ``reminded``, ``checked_out``,
``abandoned``). ``rt.find`` and ``rt.count`` then answer what no single key can: a
customer's open carts, carts over an amount, carts idle since a given time.

Every activity re-arms one named timer, ``idle``: an hour later the customer gets a
reminder, and if the cart is still idle a day after its last activity it is abandoned and
completes with a result. Checking out completes the cart, which drops its pending timer.
Halfway through, the process stops and starts again on the same SQLite file: the cart, and
the timer that came due while it was down, survive. A cart that waits for days costs a row,
not memory: idle actors leave memory and come back with their next message.

Time here is a ``VirtualClock`` (``actors.testing``), so that hours pass at once and every
run prints the same lines; an application opens the runtime without ``clock=``. Run it
with::

    python examples/shopping_cart.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import anyio
import structlog

from actors import (
    ActorCompleted,
    ActorInfo,
    Context,
    Duplicate,
    Entity,
    Gt,
    HandlerFailed,
    Lt,
    Runtime,
    handler,
)
from actors.testing import VirtualClock

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REMIND_AFTER = timedelta(hours=1)  # of inactivity
ABANDON_AFTER = timedelta(hours=23)  # after the reminder: a day of inactivity in all
IDLE = "idle"  # the cart's one idle timer: scheduling the name again replaces it


@dataclass
class AddItem:
    sku: str
    quantity: int
    unit_price: int  # cents


@dataclass
class RemoveItem:
    sku: str
    quantity: int


@dataclass
class Line:
    quantity: int
    unit_price: int


@dataclass
class CartState:
    customer: str = ""
    lines: dict[str, Line] = field(default_factory=dict)
    stage: str = "shopping"


@dataclass
class CartView:
    """What a cart's handlers answer: the cart as it is after the turn."""

    customer: str
    items: int
    total: int
    stage: str

    def __str__(self) -> str:
        return f"{self.customer}, {self.items} item(s), {money(self.total)}, {self.stage}"


class EmptyCart(Exception):
    """A checkout of a cart with nothing in it."""


class NotYourCart(Exception):
    """An open of an existing cart id by another customer."""


class Mailer:
    """Stands in for an e-mail service.

    A call from a handler is at-least-once: a crash between the call and the turn's commit
    would send the reminder again.
    """

    sent: ClassVar[list[str]] = []

    @classmethod
    async def send(cls, when: datetime, to: str, text: str) -> None:
        cls.sent.append(f"{when:%a %H:%M} to {to}: {text}")


class Cart(Entity):
    name = "cart"
    state: CartState  # stored with every turn
    result: str  # how the cart ended, kept for the retention window
    retention = timedelta(days=30)  # ended carts stay findable (and their results) a month
    attribute_types: ClassVar[Mapping[str, type]] = {
        "customer": str,
        "items": int,
        "total": int,
        "last_activity": datetime,
        "stage": str,
    }

    @handler(start=True)
    async def open(self, ctx: Context, customer: str) -> CartView:
        self.state.customer = customer
        return self._activity(ctx)

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> CartView:
        # Opening a cart id that exists (a retried request, a second tab) is a message to
        # the cart, handled in its mailbox: it answers with the cart as it is.
        if dup.payload != self.state.customer:
            raise NotYourCart(f"{ctx.key} is not {dup.payload}'s")
        return self._view()

    @handler
    async def add(self, ctx: Context, item: AddItem) -> CartView:
        line = self.state.lines.setdefault(item.sku, Line(0, item.unit_price))
        line.quantity += item.quantity
        return self._activity(ctx)

    @handler
    async def remove(self, ctx: Context, item: RemoveItem) -> CartView:
        line = self.state.lines.get(item.sku)
        if line is not None:
            line.quantity -= item.quantity
            if line.quantity <= 0:
                del self.state.lines[item.sku]
        return self._activity(ctx)

    @handler
    async def view(self, ctx: Context) -> CartView:
        return self._view()  # looking is no activity: the timer stays as it is

    @handler
    async def checkout(self, ctx: Context) -> str:
        view = self._view()
        if not view.items:
            raise EmptyCart(f"{ctx.key} is empty")
        receipt = f"checked out {view.items} item(s) for {money(view.total)}"
        self._stage(ctx, "checked_out")
        ctx.set_attributes(last_activity=ctx.now())
        # Completing ends the cart: its pending idle timer is dropped in this same commit,
        # so a checkout and an abandonment can never both happen.
        ctx.complete(receipt)
        return receipt

    @handler
    async def remind(self, ctx: Context) -> None:
        view = self._view()
        await Mailer.send(ctx.now(), view.customer, f"{view.items} item(s) wait in {ctx.key}")
        self._stage(ctx, "reminded")
        ctx.schedule(Cart.abandon, after=ABANDON_AFTER, name=IDLE)

    @handler
    async def abandon(self, ctx: Context) -> None:
        view = self._view()
        self._stage(ctx, "abandoned")
        ctx.complete(
            f"abandoned {ctx.now():%a %H:%M} with {view.items} item(s), {money(view.total)}"
        )

    def _activity(self, ctx: Context) -> CartView:
        """Re-arm the idle timer and bring the attributes up to date, with this turn."""
        ctx.schedule(Cart.remind, after=REMIND_AFTER, name=IDLE)  # replaces the pending one
        self._stage(ctx, "shopping")
        view = self._view()
        ctx.set_attributes(
            customer=view.customer, items=view.items, total=view.total, last_activity=ctx.now()
        )
        return view

    def _stage(self, ctx: Context, stage: str) -> None:
        self.state.stage = stage
        ctx.set_attributes(stage=stage)

    def _view(self) -> CartView:
        lines = self.state.lines.values()
        return CartView(
            customer=self.state.customer,
            items=sum(line.quantity for line in lines),
            total=sum(line.quantity * line.unit_price for line in lines),
            stage=self.state.stage,
        )


def money(cents: object) -> str:
    assert isinstance(cents, int)
    return f"{cents / 100:.2f}"


def line(info: ActorInfo[Cart]) -> str:
    a = info.attributes
    return f"{info.key} ({a['customer']}, {a['items']} item(s), {money(a['total'])}, {a['stage']})"


async def main() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),  # stdout is for the story
    )
    clock = VirtualClock(MONDAY)

    def now() -> datetime:
        return datetime.fromtimestamp(clock.now(), UTC)

    async def wait_until(hour: int, minute: int, *, days: int = 0) -> None:
        """Let virtual time pass: every timer due meanwhile fires, in order."""
        target = MONDAY.replace(hour=hour, minute=minute) + timedelta(days=days)
        await clock.advance(target - now())

    def say(text: str) -> None:
        print(f"{now():%a %H:%M} {text}")

    def mail() -> None:
        for sent in Mailer.sent:
            print(f"  mail sent {sent}")
        Mailer.sent.clear()

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'carts.db'}"
        async with Runtime.open(url, entities=[Cart], clock=clock) as rt:
            opened = await rt.start(Cart, "cart-1", "alice")
            say(f"cart-1 opened: {await opened.reply()}")
            cart_1 = rt.ref(Cart, "cart-1")
            tea = AddItem(sku="tea", quantity=2, unit_price=450)
            say(f"cart-1 add 2 tea -> {await cart_1.ask(Cart.add, tea)}")

            await wait_until(9, 10)
            await (await rt.start(Cart, "cart-2", "bob")).reply()
            jam = AddItem(sku="jam", quantity=1, unit_price=350)
            say(f"cart-2 add 1 jam -> {await rt.ref(Cart, 'cart-2').ask(Cart.add, jam)}")

            await wait_until(9, 20)
            await (await rt.start(Cart, "cart-3", "alice")).reply()
            kettle = AddItem(sku="kettle", quantity=1, unit_price=4500)
            say(f"cart-3 add 1 kettle -> {await rt.ref(Cart, 'cart-3').ask(Cart.add, kettle)}")

            await wait_until(9, 30)
            mug = AddItem(sku="mug", quantity=1, unit_price=1200)
            say(f"cart-1 add 1 mug -> {await cart_1.ask(Cart.add, mug)}")
            again = await rt.start(Cart, "cart-1", "alice")  # a second tab opens it again
            say(f"cart-1 opened again: created={again.created}, {await again.reply()}")
            try:
                await (await rt.start(Cart, "cart-1", "bob")).reply()
            except HandlerFailed as exc:
                say(f"bob opens cart-1 -> refused: {exc.error_type}")

            await wait_until(9, 40)
            one_tea = RemoveItem(sku="tea", quantity=1)
            say(f"cart-1 remove 1 tea -> {await cart_1.ask(Cart.remove, one_tea)}")

            await wait_until(9, 45)
            # A turn's attributes are in the registry once its reply has arrived.
            page = await rt.find(Cart, where={"customer": "alice"}, status="active")
            say("alice's open carts: " + ", ".join(line(i) for i in page.items))
            page = await rt.find(Cart, where={"total": Gt(2000)}, order_by="-total")
            say("carts over 20.00: " + ", ".join(line(i) for i in page.items))
            quiet = MONDAY.replace(minute=15)
            page = await rt.find(Cart, where={"last_activity": Lt(quiet)}, status="active")
            say("idle since before 09:15: " + ", ".join(line(i) for i in page.items))
            say(f"open carts: {await rt.count(Cart, status='active')}")

            await wait_until(9, 50)
            receipt = await rt.ref(Cart, "cart-3").ask(Cart.checkout)
            say(f"cart-3 checkout -> {receipt}")

            # An hour after each cart's last activity, its timer fires through its mailbox.
            await wait_until(10, 45)
            say("an hour of quiet:")
            mail()
            page = await rt.find(Cart, where={"stage": "reminded"})
            say("reminded carts: " + ", ".join(line(i) for i in page.items))

            await wait_until(11, 0)
            another = AddItem(sku="tea", quantity=1, unit_price=450)
            say(f"cart-1 add 1 tea -> {await cart_1.ask(Cart.add, another)}")
            fired_before = rt.statistics().timers_fired
            say("the process stops; cart-1's reminder is due at 12:00")

        await wait_until(12, 30)  # no runtime is open meanwhile
        async with Runtime.open(url, entities=[Cart], clock=clock) as rt:
            # The overdue timer fires as the runtime opens; advance(0) lets its turn run.
            await clock.advance(timedelta(0))
            say("the process runs again on the same file; the overdue reminder fires:")
            mail()
            cart_1 = rt.ref(Cart, "cart-1")
            say(f"cart-1 -> {await cart_1.ask(Cart.view)}")

            await wait_until(12, 45)
            say(f"cart-1 checkout -> {await cart_1.ask(Cart.checkout)}")

            # Bob never came back: a day after his last activity, his cart is abandoned.
            await wait_until(12, 0, days=1)
            cart_2 = rt.ref(Cart, "cart-2")
            say(f"cart-2 -> {await cart_2.status()}: {await cart_2.result()}")
            try:
                await cart_2.ask(Cart.add, jam)
            except ActorCompleted as exc:
                say(f"cart-2 add 1 jam -> refused: {type(exc).__name__}")
            for name in ("checked_out", "abandoned"):
                page = await rt.find(Cart, where={"stage": name}, status="completed")
                say(f"{name}: " + ", ".join(line(i) for i in page.items))
            # cart-2's reminder and abandonment, cart-1's reminder twice; cart-1's last
            # timer (abandonment, due Tue 11:30) was dropped by its checkout.
            fired_after = rt.statistics().timers_fired
            say(f"timers fired: {fired_before} before the restart, {fired_after} after")


if __name__ == "__main__":
    anyio.run(main)
