"""Crash-campaign child: a mixed workload that writes a ledger of what the runtime accepted.

Run as ``python -m tests.crash._campaign_child DB_PATH LEDGER_DIR ROUND SEED``; the parent
(``test_campaign.py``) kills it with SIGKILL at a random moment and starts it again.

Workers start orders (several starts of one key at once: one creates, the others are
duplicates), tell and ask deposits (some with idempotency keys), relay messages from account
to sink actors (``ctx.tell``), arm and disarm timers (``ctx.schedule``,
``ctx.cancel_timer``); an order completes from its own timer (``ctx.complete``) and tells the
archive its result. At start the child asks and tells again some keyed messages of earlier
rounds. Every call gets a message id unique across rounds, which actors record in their state.

The ledger (``LEDGER_DIR/round-N.jsonl``) holds one JSON line per fact: an ``Intent`` before
a call, an ``Accepted`` only once the call returned (with its reply), then a ``StartReply``
for a start's ``reply()``. Each line is written with one ``write`` and fsync'd; a kill can
cut off the last line, which readers skip.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import anyio
import msgspec
import structlog

from actors import Context, Entity, Runtime, RuntimeConfig, StartHandle, handler

ACCOUNTS = 8
SINKS = 3
ORDERS = 12
SHORT_LIVED = 6  # orders order-0 .. order-5 keep their record for under a second
WORKERS = 8
REPEATS = 24  # keyed messages of earlier rounds sent again at the start of a round
MAX_DELAY_MS = 300  # the longest timer (order hold, account alarm)
# A short round can be killed while it recovers, many times over: an ordinary message at the
# head of its mailbox must not be counted as a poison message and dead-lettered.
CONFIG = RuntimeConfig(max_attempts=1000)


class Deposit(msgspec.Struct, frozen=True, tag=True):
    acct: str
    id: str
    amount: int
    ask: bool
    idem: str | None = None


class Relay(msgspec.Struct, frozen=True, tag=True):
    acct: str
    id: str
    sink: str


class Arm(msgspec.Struct, frozen=True, tag=True):
    acct: str
    id: str
    delay_ms: int


class Disarm(msgspec.Struct, frozen=True, tag=True):
    acct: str
    id: str
    arm: str  # the id of the Arm whose timer this cancels


class Open(msgspec.Struct, frozen=True, tag=True):
    key: str
    id: str
    hold_ms: int
    retention_ms: int | None


Call = Deposit | Relay | Arm | Disarm | Open


class Opened(msgspec.Struct, frozen=True):
    id: str
    generation: int


class OrderResult(msgspec.Struct, frozen=True):
    key: str
    generation: int
    opened: list[str]
    fired: list[str]


class Intent(msgspec.Struct, frozen=True, tag=True):
    round: int
    call: Call


class Accepted(msgspec.Struct, frozen=True, tag=True):
    round: int
    call: Call
    repeat: bool = False  # sent again by idempotency key
    reply: int | None = None  # an ask's reply
    created: bool | None = None  # a start's
    generation: int | None = None  # a start's


class StartReply(msgspec.Struct, frozen=True, tag=True):
    round: int
    call: Open
    generation: int
    opened: Opened | None = None  # the creator's reply
    result: OrderResult | None = None  # a duplicate's reply: the adopted result


class Ready(msgspec.Struct, frozen=True, tag=True):
    round: int


Line = Intent | Accepted | StartReply | Ready


@dataclass
class Book:
    handled: list[str] = field(default_factory=list)  # every message id, in handling order
    totals: list[int] = field(default_factory=list)  # the balance after each of them
    balance: int = 0
    pending: list[str] = field(default_factory=list)  # armed, neither rung nor cancelled
    rung: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)  # rings of timers not pending: a bug


class Account(Entity):
    """A virtual actor recording every message it handles, with its timers' fate."""

    name = "account"
    state: Book

    def _handled(self, message_id: str) -> None:
        self.state.handled.append(message_id)
        self.state.totals.append(self.state.balance)

    @handler
    async def deposit(self, ctx: Context, d: Deposit) -> int:
        self.state.balance += d.amount
        self._handled(d.id)
        return self.state.balance

    @handler
    async def relay(self, ctx: Context, r: Relay) -> None:
        self._handled(r.id)
        ctx.tell(ctx.ref(Sink, r.sink), Sink.receive, r.id)

    @handler
    async def arm(self, ctx: Context, a: Arm) -> None:
        self._handled(a.id)
        self.state.pending.append(a.id)
        ctx.schedule(Account.ring, a.id, after=timedelta(milliseconds=a.delay_ms), name=a.id)

    @handler
    async def disarm(self, ctx: Context, d: Disarm) -> None:
        self._handled(d.id)
        if d.arm in self.state.pending:
            self.state.pending.remove(d.arm)
            self.state.cancelled.append(d.arm)
            ctx.cancel_timer(d.arm)

    @handler
    async def ring(self, ctx: Context, arm: str) -> None:
        if arm in self.state.pending:
            self.state.pending.remove(arm)
            self.state.rung.append(arm)
        else:
            self.state.stray.append(arm)

    @handler
    async def book(self, ctx: Context) -> Book:
        return self.state


@dataclass
class Received:
    ids: list[str] = field(default_factory=list)


class Sink(Entity):
    """Receives the messages accounts relay to it."""

    name = "sink"
    state: Received

    @handler
    async def receive(self, ctx: Context, message_id: str) -> None:
        self.state.ids.append(message_id)

    @handler
    async def received(self, ctx: Context) -> list[str]:
        return self.state.ids


@dataclass
class OrderState:
    opened: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)


class Order(Entity):
    """Opened by a start, completed by its own timer; the archive keeps every generation."""

    name = "order"
    state: OrderState
    result: OrderResult

    @handler(start=True)
    async def open(self, ctx: Context, o: Open) -> Opened:
        self.state.opened.append(o.id)
        ctx.schedule(Order.expire, o.id, after=timedelta(milliseconds=o.hold_ms))
        return Opened(id=o.id, generation=ctx.generation)

    @handler
    async def expire(self, ctx: Context, opened: str) -> None:
        self.state.fired.append(opened)
        s = self.state
        result = OrderResult(ctx.key, ctx.generation, list(s.opened), list(s.fired))
        ctx.tell(ctx.ref(Archive, ctx.key), Archive.keep, result)
        ctx.complete(result)


@dataclass
class Results:
    results: list[OrderResult] = field(default_factory=list)


class Archive(Entity):
    """Keeps the result of every generation of one order key (the order's own expires)."""

    name = "archive"
    state: Results

    @handler
    async def keep(self, ctx: Context, result: OrderResult) -> None:
        self.state.results.append(result)

    @handler
    async def results(self, ctx: Context) -> list[OrderResult]:
        return self.state.results


ENTITIES: list[type[Entity]] = [Account, Sink, Order, Archive]


def account(n: int) -> str:
    return f"acct-{n}"


def read_ledger(folder: Path, round_: int | None = None) -> list[Line]:
    """Every complete line of every round's ledger in ``folder`` (or of one), round by round."""
    decoder = msgspec.json.Decoder(Line)
    lines: list[Line] = []
    paths = folder.glob("round-*.jsonl" if round_ is None else f"round-{round_}.jsonl")
    for path in sorted(paths, key=lambda p: int(p.stem.split("-")[1])):
        for raw in path.read_bytes().split(b"\n"):
            try:
                lines.append(decoder.decode(raw))
            except msgspec.DecodeError:
                continue  # empty, or the line a kill cut off
    return lines


class LedgerFile:
    """An append-only file of ledger lines; each one is on disk before the next call."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._encoder = msgspec.json.Encoder()

    def write(self, line: Line, *, sync: bool = True) -> None:
        os.write(self._fd, self._encoder.encode(line) + b"\n")
        if sync:
            os.fsync(self._fd)


class Workload:
    """The child's calls: each one written as an intent, made, then ledgered as accepted."""

    def __init__(self, rt: Runtime, ledger: LedgerFile, round_: int, rng: random.Random) -> None:
        self.rt = rt
        self.ledger = ledger
        self.round = round_
        self.rng = rng
        self.serial = 0
        self.armed: list[Arm] = []

    def next_id(self) -> str:
        self.serial += 1
        return f"{self.round}.{self.serial}"

    async def send(self, call: Deposit | Relay | Arm | Disarm, *, repeat: bool = False) -> None:
        if not repeat:
            self.ledger.write(Intent(self.round, call), sync=False)
        ref = self.rt.ref(Account, call.acct)
        reply: int | None = None
        if isinstance(call, Deposit) and call.ask:
            reply = await ref.ask(Account.deposit, call, idempotency_key=call.idem)
        elif isinstance(call, Deposit):
            await ref.tell(Account.deposit, call, idempotency_key=call.idem)
        elif isinstance(call, Relay):
            await ref.tell(Account.relay, call)
        elif isinstance(call, Arm):
            await ref.tell(Account.arm, call)
            self.armed.append(call)
        else:
            await ref.tell(Account.disarm, call)
        self.ledger.write(Accepted(self.round, call, repeat=repeat, reply=reply))

    async def open_order(self, call: Open) -> None:
        self.ledger.write(Intent(self.round, call), sync=False)
        retention = None if call.retention_ms is None else timedelta(milliseconds=call.retention_ms)
        h: StartHandle[Order, Opened] = await self.rt.start(
            Order, call.key, call, handler=Order.open, retention=retention
        )
        generation = h.actor.generation
        assert generation is not None
        self.ledger.write(
            Accepted(self.round, call, created=h.created, generation=generation),
        )
        # A creator's reply is its start handler's; a duplicate adopts the order's result.
        reply: object = await h.reply()
        if isinstance(reply, Opened):
            self.ledger.write(StartReply(self.round, call, generation, opened=reply))
        else:
            assert isinstance(reply, OrderResult), reply
            self.ledger.write(StartReply(self.round, call, generation, result=reply))

    async def step(self) -> None:
        rng = self.rng
        acct = account(rng.randrange(ACCOUNTS))
        kind = rng.choices(["tell", "ask", "keyed", "relay", "arm", "disarm", "open"])[0]
        if kind == "open":
            n = rng.randrange(ORDERS)
            retention = rng.randint(100, 800) if n < SHORT_LIVED else None
            hold = rng.randint(20, MAX_DELAY_MS)
            async with anyio.create_task_group() as tg:
                for _ in range(rng.choice([1, 1, 2, 3])):  # the extra starts are duplicates
                    call = Open(f"order-{n}", self.next_id(), hold, retention)
                    tg.start_soon(self.open_order, call)
        elif kind == "relay":
            sink = f"sink-{rng.randrange(SINKS)}"
            await self.send(Relay(acct, self.next_id(), sink))
        elif kind == "arm":
            await self.send(Arm(acct, self.next_id(), rng.randint(10, MAX_DELAY_MS)))
        elif kind == "disarm" and self.armed:
            target = rng.choice(self.armed)
            await self.send(Disarm(target.acct, self.next_id(), target.id))
        else:
            message_id = self.next_id()
            idem = f"k{message_id}" if kind == "keyed" else None
            ask = kind == "ask" or (kind == "keyed" and rng.random() < 0.7)
            await self.send(Deposit(acct, message_id, rng.randint(1, 100), ask, idem))

    async def repeat_earlier(self, earlier: list[Line]) -> None:
        """Ask and tell again, by idempotency key, keyed messages of earlier rounds."""
        keyed = [
            line.call
            for line in earlier
            if isinstance(line, Intent) and isinstance(line.call, Deposit) and line.call.idem
        ]
        for call in self.rng.sample(keyed, min(REPEATS, len(keyed))):
            await self.send(call, repeat=True)

    async def work(self) -> None:
        while True:
            await self.step()


async def main(db: str, folder: str, round_: int, seed: int) -> None:
    # The runtime's logs go to this round's log file, through stderr; only warnings.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    earlier = read_ledger(Path(folder))
    ledger = LedgerFile(Path(folder) / f"round-{round_}.jsonl")
    async with Runtime.open(f"sqlite:///{db}", entities=ENTITIES, config=CONFIG) as rt:
        ledger.write(Ready(round_))
        load = Workload(rt, ledger, round_, random.Random(seed))
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.repeat_earlier, earlier)
            for _ in range(WORKERS):
                tg.start_soon(load.work)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
