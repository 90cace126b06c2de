"""Registry figures: queries over a million actors, and what attributes add to a turn.

The store is built once per invocation, straight through the store API: ``--actors`` orders
(1,000,000 by default) with three attributes each (``customer``, about ten orders per
customer; ``amount``, uniform; ``region``, one of eight), every fifth one completed, the rest
active. Each run copies that file and opens a runtime on the copy.

- R1: ``find`` of one customer's orders (an indexed equality; about ten rows).
- R2: ``find`` of an amount range matching about 1,000 orders, ``order_by="amount"``,
  ``limit=50``; R3 is the same range ordered by key (every match is read, then sorted).
- R4: ``count`` of one customer's orders; R5: ``count`` of one region's (an eighth of all).
- R6: the second page of R2, through the first page's cursor (only the second is timed).
- R7: a page 90-95% of the way through a range that holds every order, by amount (as
  ``find_all`` reaches it; a tenth as many queries).
- R8: turns per second of one entity whose turn sets three attributes and of the same turn
  setting none, in the same runtime on the same store (64 callers on 100 actors, alternating
  phases), and their ratio: how much a turn's attributes add to its commit.

Each query kind runs ``--queries`` times per run (R7 a tenth as many), after a few untimed
warm-ups, with varying values; each run takes the p50 and p99 of its latencies, and the lines
print their medians over ``--runs`` runs (3). The default run takes about five minutes on a
2-core machine, a minute and a half of it building the store. ``--quick`` runs small sizes
once (the test suite uses it). Run it with::

    python -m benchmarks.registry            # or: --runs 5, --actors 100000, --quick
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import anyio

from actors import Between, Context, Entity, Ge, Page, Runtime, handler
from benchmarks.core import medians, percentiles, quiet_logging, report, run_callers
from benchmarks.lifecycle import _part
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    AdmitOutcome,
    Completion,
    MessageKind,
    NewMessage,
    Status,
    TurnCommit,
    WriteItem,
    open_store,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    actors: int  # orders in the built store
    queries: int  # timed queries of each kind per run
    turns: int  # R8: turns of each handler per run


FULL = Sizes(actors=1_000_000, queries=200, turns=4000)
QUICK = Sizes(actors=20_000, queries=40, turns=400)

WRITE_BATCH = 5000  # actors per store transaction while building
PER_CUSTOMER = 10  # orders per customer, on average
REGIONS = (
    "ap-east",
    "ap-south",
    "eu-central",
    "eu-north",
    "eu-west",
    "sa-east",
    "us-east",
    "us-west",
)
AMOUNT_SPAN = 10_000_000  # amounts are uniform in [0, AMOUNT_SPAN): cents up to 100,000.00
RANGE_MATCHES = 1000  # orders an R2/R3 range holds, on average
COMPLETED_EVERY = 5  # every fifth order is completed
RETENTION = timedelta(days=30)
WARM_UPS = 10  # untimed queries of each kind before the timed ones
CALLERS_KEYS = 100  # R8: actors the turns are spread over (64 callers, as in benchmarks.core)


@dataclass
class OrderState:
    paid: bool = False


class Order(Entity):
    """The orders the store is built with; the queries read them, no turn runs."""

    name = "order"
    state: OrderState
    retention = RETENTION
    attribute_types: ClassVar[Mapping[str, type]] = {"customer": str, "amount": int, "region": str}

    @handler(start=True)
    async def place(self, ctx: Context, amount: int) -> None:
        ctx.set_attributes(amount=amount)


@dataclass
class TallyState:
    n: int = 0


class Tally(Entity):
    """R8: two handlers that differ only in the attributes their turn sets."""

    name = "tally"
    state: TallyState
    attribute_types: ClassVar[Mapping[str, type]] = Order.attribute_types

    @handler
    async def plain(self, ctx: Context, n: int) -> None:
        self.state.n = n

    @handler
    async def tagged(self, ctx: Context, n: int) -> None:
        self.state.n = n
        # New values every turn: each one replaces an entry of the attribute index.
        ctx.set_attributes(customer=f"t{n:07d}", amount=n, region=REGIONS[n % len(REGIONS)])


# -- the store -------------------------------------------------------------------------


def customer(number: int) -> str:
    return f"c{number:07d}"


def order_attributes(rng: random.Random, customers: int) -> dict[str, Any]:
    return {
        "customer": customer(rng.randrange(customers)),
        "amount": rng.randrange(AMOUNT_SPAN),
        "region": rng.choice(REGIONS),
    }


async def build(path: Path, count: int) -> None:
    """Write ``count`` orders with three attributes each to ``path``; every fifth completed."""
    rng = random.Random(7)
    customers = max(count // PER_CUSTOMER, 1)
    store = await open_store(f"sqlite:///{path}")
    now = time.time()
    start = NewMessage(kind=MessageKind.START, handler="place", payload=b"0")
    init = partial(ActorInit, retention=RETENTION.total_seconds())
    try:
        for first in range(0, count, WRITE_BATCH):
            numbers = range(first, min(first + WRITE_BATCH, count))
            ids = [ActorId(entity=Order.name, key=f"order-{i:07d}") for i in numbers]
            admitted = await store.write(
                [
                    Admit(
                        actor=a,
                        message=start,
                        init=init(attributes=order_attributes(rng, customers)),
                    )
                    for a in ids
                ],
                now=now,
            )
            # Each start message is consumed, so that the runtime finds no mail to recover.
            turns: list[WriteItem] = []
            for number, actor, outcome in zip(numbers, ids, admitted, strict=True):
                assert isinstance(outcome, AdmitOutcome)
                assert outcome.message is not None
                done = number % COMPLETED_EVERY == 0
                turns.append(
                    TurnCommit(
                        actor=actor,
                        generation=outcome.generation,
                        consumed=outcome.message.id,
                        state=b'{"paid":true}' if done else b'{"paid":false}',
                        completion=Completion(status=Status.COMPLETED) if done else None,
                    )
                )
            await store.write(turns, now=now)
    finally:
        await store.close()


# -- one run ---------------------------------------------------------------------------


async def _timed(samples: list[float], query: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    answer = await query()
    samples.append((time.perf_counter() - started) * 1000)
    return answer


async def queries(rt: Runtime, sizes: Sizes, rng: random.Random) -> dict[str, float]:
    """R1-R7 on ``rt``: the p50 and p99 of each kind, prefixed by its name."""
    customers = max(sizes.actors // PER_CUSTOMER, 1)
    width = AMOUNT_SPAN * RANGE_MATCHES // sizes.actors

    def amounts() -> Between:
        low = rng.randrange(AMOUNT_SPAN - width)
        return Between(low, low + width)

    def by_customer() -> Awaitable[Page[Order]]:
        return rt.find(Order, where={"customer": customer(rng.randrange(customers))})

    def by_amount(order_by: str) -> Awaitable[Page[Order]]:
        return rt.find(Order, where={"amount": amounts()}, order_by=order_by, limit=50)

    def count_customer() -> Awaitable[int]:
        return rt.count(Order, where={"customer": customer(rng.randrange(customers))})

    def count_region() -> Awaitable[int]:
        return rt.count(Order, where={"region": rng.choice(REGIONS)})

    kinds: dict[str, Callable[[], Awaitable[Any]]] = {
        "customer": by_customer,
        "range_by_amount": partial(by_amount, "amount"),
        "range_by_key": partial(by_amount, "key"),
        "count_customer": count_customer,
        "count_region": count_region,
    }
    samples: dict[str, list[float]] = {kind: [] for kind in (*kinds, "second_page")}
    for kind, query in kinds.items():
        for _ in range(WARM_UPS):
            await query()
        for _ in range(sizes.queries):
            answer = await _timed(samples[kind], query)
            if isinstance(answer, Page):
                assert len(answer.items) <= 50, kind
    for _ in range(WARM_UPS + sizes.queries):
        where = {"amount": amounts()}
        first = await rt.find(Order, where=where, order_by="amount", limit=50)
        assert first.cursor is not None, "a range of about 1,000 orders has a second page"
        second = await _timed(
            samples["second_page"],
            partial(rt.find, Order, where=where, order_by="amount", limit=50, after=first.cursor),
        )
        last = first.items[-1].attributes["amount"]
        assert all(item.attributes["amount"] >= last for item in second.items)
    samples["deep_page"] = await deep_pages(rt, max(sizes.queries // 10, 1), rng)
    figures: dict[str, float] = {}
    for kind, latencies in samples.items():
        for metric, value in percentiles(latencies[-sizes.queries :]).items():
            figures[f"{kind}_{metric}"] = value
    return figures


async def deep_pages(rt: Runtime, count: int, rng: random.Random) -> list[float]:
    """R7: ``count`` pages 90-95% of the way through ``amount >= 0`` by amount (one untimed).

    Each cursor comes from a one-row page of a narrower range with the same order (a cursor
    names a position in an order, not a query), which is where ``find_all`` walking every
    order by amount would be after nine tenths of its pages.
    """
    samples: list[float] = []
    for _ in range(1 + count):
        start = rng.randrange(AMOUNT_SPAN * 90 // 100, AMOUNT_SPAN * 95 // 100)
        near = await rt.find(Order, where={"amount": Ge(start)}, order_by="amount", limit=1)
        assert near.cursor is not None
        page = await _timed(
            samples,
            partial(rt.find, Order, where={"amount": Ge(0)}, order_by="amount", after=near.cursor),
        )
        assert all(item.attributes["amount"] >= start for item in page.items)
    return samples[1:]


async def amplification(rt: Runtime, sizes: Sizes) -> dict[str, float]:
    """R8: turns/s of ``Tally.plain`` and ``Tally.tagged``, alternating, and their ratio."""
    refs = [rt.ref(Tally, f"tally-{i}") for i in range(CALLERS_KEYS)]
    await run_callers(len(refs), lambda i: refs[i].ask(Tally.plain, 0))  # create them
    elapsed = {"plain": 0.0, "tagged": 0.0}
    phases = 4  # plain, tagged, plain, tagged: drift in the machine hits both alike
    per_phase = sizes.turns // 2
    for phase in range(phases):
        name = "plain" if phase % 2 == 0 else "tagged"
        turn = Tally.plain if name == "plain" else Tally.tagged

        async def one(n: int, turn: Callable[..., Awaitable[None]] = turn) -> None:
            await refs[n % CALLERS_KEYS].ask(turn, n + 1)

        elapsed[name] += await run_callers(per_phase, one)
    plain, tagged = sizes.turns / elapsed["plain"], sizes.turns / elapsed["tagged"]
    return {
        "turns_per_s_no_attributes": plain,
        "turns_per_s_3_attributes": tagged,
        "cost_ratio": plain / tagged,
    }


async def run(template: Path, sizes: Sizes, url: str) -> dict[str, float]:
    """One run: a copy of ``template``, a runtime on it, R1-R7 then R8."""
    shutil.copyfile(template, Path(url.removeprefix("sqlite:///")))
    rng = random.Random()  # other values each run
    async with Runtime.open(url, entities=[Order, Tally]) as rt:
        figures = await queries(rt, sizes, rng)
        figures |= {f"turns_{k}": v for k, v in (await amplification(rt, sizes)).items()}
    return figures


# -- main ------------------------------------------------------------------------------


async def main(runs: int, sizes: Sizes) -> None:
    quiet_logging()
    with tempfile.TemporaryDirectory() as folder:
        template = Path(folder) / "registry.db"
        started = time.perf_counter()
        await build(template, sizes.actors)
        built = time.perf_counter() - started
        report(
            f"R0 build {sizes.actors:,} actors",
            1,
            {"seconds": built, "actors_per_s": sizes.actors / built},
        )
        figures = await medians(partial(run, template, sizes), runs)
    n = f"{sizes.queries} queries"
    report(f"R1 customer =, {n}", runs, _part(figures, "customer_"))
    report("R2 amount range by amount", runs, _part(figures, "range_by_amount_"))
    report("R3 amount range by key", runs, _part(figures, "range_by_key_"))
    report("R4 count customer =", runs, _part(figures, "count_customer_"))
    report("R5 count region =", runs, _part(figures, "count_region_"))
    report("R6 second page (R2)", runs, _part(figures, "second_page_"))
    report("R7 page 90% into a range", runs, _part(figures, "deep_page_"))
    report("R8 turns, attributes", runs, _part(figures, "turns_"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs on copies of the store (default 3; 1 quick)")
    parser.add_argument("--actors", type=int, help="actors in the store (default 1,000,000)")
    parser.add_argument("--queries", type=int, help="timed queries of each kind per run (200)")
    parser.add_argument("--quick", action="store_true", help="small sizes (the tests use it)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.actors:
        sizes = replace(sizes, actors=args.actors)
    if args.queries:
        sizes = replace(sizes, queries=args.queries)
    anyio.run(main, args.runs or (1 if args.quick else 3), sizes)
