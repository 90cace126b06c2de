"""Type-checked usage of the public API (checked by mypy, never executed).

``assert_type`` lines pin what callers see; lines marked ``type: ignore[...]`` are misuse that
must stay a type error (``warn_unused_ignores`` fails the check if one stops being an error).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, assert_type

from actors import (
    ActorInfo,
    ActorRef,
    Between,
    Context,
    Duplicate,
    Gt,
    In,
    Page,
    Runtime,
    StartHandle,
    Status,
)
from tests.entities import ChargeRequest, Counter, Payment, Receipt


async def usage(rt: Runtime) -> None:
    ref = rt.ref(Counter, "k")
    assert_type(ref, ActorRef[Counter])
    assert_type(await ref.ask(Counter.add, 5), int)
    assert_type(await ref.ask(Counter.get), int)
    assert_type(await ref.ask(Counter.seen), list[str])
    assert_type(await ref.ask("add", 5), Any)
    assert_type(await ref.tell(Counter.add, 1), None)
    assert_type(await ref.status(), Status)

    h = await rt.start(Payment, "o", ChargeRequest(amount=1))
    assert_type(h, StartHandle[Payment, Any])
    assert_type(h.created, bool)
    typed = await rt.start(Payment, "o", ChargeRequest(amount=1), handler=Payment.charge)
    assert_type(await typed.reply(), Receipt)

    await ref.ask(Counter.add, "five")  # type: ignore[arg-type]
    await ref.ask(Payment.charge, ChargeRequest(amount=1))  # type: ignore[arg-type]
    await ref.ask(Counter.get, 1)  # type: ignore[arg-type]


class TypedPolicy(Payment):
    """A duplicate policy with a concrete reply type type-checks under --strict."""

    async def on_duplicate(self, ctx: Context, dup: Duplicate[ChargeRequest]) -> Receipt:
        if dup.payload.amount < 0:
            return ctx.supersede()
        return ctx.reply_on_completion()


def timers(ctx: Context) -> None:
    """``schedule`` checks the payload against the handler, positionally or by keyword."""
    later = timedelta(minutes=5)
    assert_type(ctx.schedule(Counter.add, 5, after=later), str)
    assert_type(ctx.schedule(handler=Counter.add, payload=5, after=later, name="n"), str)
    assert_type(ctx.schedule(Counter.get, at=datetime(2027, 1, 1, tzinfo=UTC)), str)
    ctx.cancel_timer("n")
    ctx.schedule(Counter.add, "five", after=later)  # type: ignore[arg-type]


async def registry(rt: Runtime) -> None:
    """Registry results are typed by entity: their refs address that entity's handlers."""
    page = await rt.find(Counter, where={"parity": "odd", "n": Gt(1)}, order_by="-n", limit=10)
    assert_type(page, Page[Counter])
    assert_type(page.cursor, str | None)
    for info in page.items:
        assert_type(info, ActorInfo[Counter])
        assert_type(await info.ref.ask(Counter.get), int)
    async for found in rt.find_all(Counter, where={"parity": In(["odd", "even"])}):
        assert_type(found.status, Status)
    assert_type(await rt.count(Counter, where={"n": Between(1, 5)}), int)
