"""The entities the published workloads (``python -m benchmarks``) run.

Their handlers count their own runs in ``COUNTS``, so a workload checks exactly how many turns
ran without asking the runtime. Those counts belong to one benchmark process: every workload
run is its own subprocess. Nothing here may touch the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from actors import Context, Entity, handler

__all__ = ["COUNTS", "Charge", "Checkout", "Inbox", "Receipt", "Tally", "reset_counts"]


@dataclass
class Counts:
    """Handler runs in this process."""

    checkouts: int = 0  # Checkout.charge runs
    delivered: int = 0  # Inbox.deliver runs
    deliveries: bytearray = field(default_factory=bytearray)  # Inbox.deliver runs, by message
    all_delivered: anyio.Event | None = None  # set when every message has been handled


COUNTS = Counts()


def reset_counts(actors: int) -> None:
    """Zero the counts, with room for ``actors`` W4 deliveries (call it in the event loop)."""
    COUNTS.checkouts = 0
    COUNTS.delivered = 0
    COUNTS.deliveries = bytearray(actors)
    COUNTS.all_delivered = anyio.Event()


@dataclass
class Charge:
    """W1's start payload."""

    amount: int


@dataclass
class Receipt:
    """W1's reply: ``number`` is unique per start handler run, so equal receipts share a run."""

    number: int
    amount: int


@dataclass
class CheckoutState:
    charged: int = 0


class Checkout(Entity):
    """W1: completes on its start message (default policy: a duplicate adopts its result)."""

    name = "bench_checkout"
    state: CheckoutState

    @handler(start=True)
    async def charge(self, ctx: Context, req: Charge) -> Receipt:
        COUNTS.checkouts += 1
        self.state.charged += req.amount
        receipt = Receipt(number=COUNTS.checkouts, amount=req.amount)
        ctx.complete(receipt)
        return receipt


@dataclass
class TallyState:
    value: int = 0


class Tally(Entity):
    """W2 and W3: an integer that ``add`` adds to and returns (no attributes, no effects)."""

    name = "bench_tally"
    state: TallyState

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        self.state.value += amount
        return self.state.value

    @handler
    async def get(self, ctx: Context) -> int:
        return self.state.value


@dataclass
class InboxState:
    received: int = 0


class Inbox(Entity):
    """W4: each actor is told one message, ``n``; its runs are counted in ``deliveries[n]``."""

    name = "bench_inbox"
    state: InboxState

    @handler
    async def deliver(self, ctx: Context, n: int) -> None:
        self.state.received += 1
        COUNTS.delivered += 1
        COUNTS.deliveries[n] = min(COUNTS.deliveries[n] + 1, 255)
        if COUNTS.delivered == len(COUNTS.deliveries) and COUNTS.all_delivered:
            COUNTS.all_delivered.set()

    @handler
    async def received(self, ctx: Context) -> int:
        return self.state.received
