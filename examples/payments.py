"""Payments: a service function that charges once per idempotency key.

``charge()`` is what an HTTP handler would call with the request's Idempotency-Key. The key
is a Payment actor: the first request creates it and calls the provider; a request that
arrives while the charge is in flight is a duplicate message to that actor and waits for the
same receipt; a request after completion gets the stored receipt without touching the
provider; a reused key with a different amount is refused. Run it with::

    python examples/payments.py
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog

from actors import Context, Duplicate, Entity, HandlerFailed, Runtime, handler


@dataclass
class ChargeRequest:
    customer: str
    amount: int


@dataclass
class Receipt:
    charge_id: str
    amount: int


@dataclass
class PaymentState:
    request: ChargeRequest | None = None


class FakeProvider:
    """Stands in for a payment provider's API: slow, and it must be called once per charge."""

    calls = 0

    @classmethod
    async def charge(cls, req: ChargeRequest) -> str:
        cls.calls += 1
        await anyio.sleep(0.2)
        return f"ch_{cls.calls:04d}"


class PayloadMismatch(Exception):
    """The idempotency key was reused for a different request (HTTP 422)."""


class Payment(Entity):
    name = "payment"
    state: PaymentState

    @handler
    async def charge(self, ctx: Context, req: ChargeRequest) -> Receipt:
        self.state.request = req
        receipt = Receipt(charge_id=await FakeProvider.charge(req), amount=req.amount)
        ctx.complete(receipt)  # stored for the retention window (24 h by default)
        return receipt

    async def on_duplicate(self, ctx: Context, dup: Duplicate[ChargeRequest]) -> Any:
        if self.state.request is not None and dup.payload != self.state.request:
            raise PayloadMismatch(f"key reused: {dup.payload} != {self.state.request}")
        return ctx.reply_on_completion()  # the same receipt as the first request


async def charge(rt: Runtime, idempotency_key: str, req: ChargeRequest) -> tuple[str, Receipt]:
    """The service function: charge once per key; say which path the request took."""
    handle = await rt.start(Payment, idempotency_key, req, handler=Payment.charge)
    receipt = await handle.reply()
    return ("created" if handle.created else "duplicate"), receipt


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'payments.db'}"
        async with Runtime.open(url, entities=[Payment]) as rt:
            req = ChargeRequest(customer="c-42", amount=1999)
            results: list[tuple[str, Receipt]] = []

            async def request() -> None:
                results.append(await charge(rt, "key-123", req))

            async with anyio.create_task_group() as tg:  # two requests, one in flight
                tg.start_soon(request)
                await anyio.sleep(0.05)
                tg.start_soon(request)
            for path, receipt in sorted(results, key=lambda r: r[0]):
                print(f"{path:<9} request -> {receipt.charge_id} for {receipt.amount}")
            path, late = await charge(rt, "key-123", req)
            print(f"late {path} -> {late.charge_id} (stored receipt)")
            try:
                await charge(rt, "key-123", ChargeRequest(customer="c-42", amount=5))
            except HandlerFailed as exc:
                print(f"same key, other amount -> refused: {exc.error_type}")
            print(f"provider called {FakeProvider.calls} time(s)")


if __name__ == "__main__":
    anyio.run(main)
