"""Crash campaign: a mixed workload killed with SIGKILL round after round, then checked whole.

Each round starts ``tests.crash._campaign_child`` on the same database and kills it at a
random moment (sometimes while it is still recovering). A final round opens the store in
this process, asks again every keyed request of every round, lets every timer fire, and
checks the store's state, read through the public API, against the children's ledger:

- every accepted message ran exactly once, in mailbox order (one accepted before another
  was sent runs first), and asks' replies match the state they left;
- a repeat by idempotency key, also after a restart, gets the first reply;
- every relayed (actor-to-actor) message reached its sink exactly once;
- every timer fired exactly once or was cancelled, and none fired after its cancel;
- each (key, generation) was created by at most one start, which alone ran the start
  handler; duplicates adopted that generation's result; nothing was dead-lettered.

``KEYED_ACTORS_CAMPAIGN_ROUNDS`` sets the number of rounds (default 5) and
``KEYED_ACTORS_CAMPAIGN_SEED`` the seed (default: a random one, printed).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from actors import ActorNotFound, Runtime, Status
from tests.conftest import running
from tests.crash._campaign_child import (
    ACCOUNTS,
    CONFIG,
    ENTITIES,
    MAX_DELAY_MS,
    ORDERS,
    SHORT_LIVED,
    SINKS,
    Accepted,
    Account,
    Archive,
    Arm,
    Book,
    Deposit,
    Intent,
    Line,
    Open,
    Opened,
    Order,
    OrderResult,
    Ready,
    Relay,
    Sink,
    StartReply,
    account,
    read_ledger,
)

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("KEYED_ACTORS_CAMPAIGN_ROUNDS", "5"))
SEED = int(os.environ.get("KEYED_ACTORS_CAMPAIGN_SEED", random.randrange(2**32)))
KILL_AFTER = (0.15, 2.5)  # seconds after spawning; before about 0.3 s the child is recovering
DRAIN_LIMIT = 60.0  # for every timer to fire, once the final round has repeated its asks
FINAL_LIMIT = DRAIN_LIMIT + 30 + 2 * ROUNDS


@dataclass
class Ledger:
    """What the children wrote, indexed for the checks."""

    lines: list[Line]
    intents: dict[str, Intent] = field(default_factory=dict)
    accepted: list[Accepted] = field(default_factory=list)
    replies: list[StartReply] = field(default_factory=list)
    ready: set[int] = field(default_factory=set)
    sent_at: dict[str, int] = field(default_factory=dict)  # a message id's Intent line
    accepted_at: dict[str, int] = field(default_factory=dict)  # its first Accepted line

    def __post_init__(self) -> None:
        for n, line in enumerate(self.lines):
            if isinstance(line, Intent):
                assert line.call.id not in self.intents, f"the child reused id {line.call.id}"
                self.intents[line.call.id] = line
                self.sent_at[line.call.id] = n
            elif isinstance(line, Accepted):
                self.accepted.append(line)
                self.accepted_at.setdefault(line.call.id, n)
            elif isinstance(line, StartReply):
                self.replies.append(line)
            else:
                self.ready.add(line.round)

    def keyed(self) -> list[Deposit]:
        """Every deposit sent with an idempotency key, accepted or not."""
        return [
            i.call for i in self.intents.values() if isinstance(i.call, Deposit) and i.call.idem
        ]


@dataclass
class FinalState:
    """The final state, read through the public API."""

    books: dict[str, Book]
    sinks: dict[str, list[str]]
    archives: dict[str, list[OrderResult]]
    repeated: dict[str, int]  # keyed asks' replies in the final round, by message id


async def _round(db: Path, folder: Path, round_: int, seed: int, after: float) -> None:
    """Run the child of ``round_`` and SIGKILL it ``after`` seconds after spawning it."""
    log = folder / f"round-{round_}.log"
    args = ["-m", "tests.crash._campaign_child", str(db), str(folder), str(round_), str(seed)]
    with log.open("wb") as out:
        async with await anyio.open_process(
            [sys.executable, *args], cwd=ROOT, stdout=out, stderr=out
        ) as process:
            with anyio.move_on_after(after):
                await process.wait()
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            await process.wait()
    text = log.read_text(errors="replace")
    assert process.returncode == -signal.SIGKILL, f"round {round_} exited early:\n{text[-3000:]}"
    errors = [line for line in text.splitlines() if "[error" in line or "[critical" in line]
    assert not errors, f"round {round_} logged errors: {errors[:5]}"


async def _repeat_keyed(rt: Runtime, ledger: Ledger) -> dict[str, int]:
    """Send every keyed deposit again; return the keyed asks' replies."""
    replies: dict[str, int] = {}
    by_account: defaultdict[str, list[Deposit]] = defaultdict(list)
    for call in ledger.keyed():
        by_account[call.acct].append(call)

    async def repeat(calls: list[Deposit]) -> None:
        for call in calls:
            ref = rt.ref(Account, call.acct)
            if call.ask:
                replies[call.id] = await ref.ask(Account.deposit, call, idempotency_key=call.idem)
            else:
                await ref.tell(Account.deposit, call, idempotency_key=call.idem)

    async with anyio.create_task_group() as tg:
        for calls in by_account.values():
            tg.start_soon(repeat, calls)
    return replies


async def _poll(done: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``done()``: the public API has no event for "every timer has fired"."""
    while True:
        if await done():
            return
        await anyio.sleep(0.05)


async def _drain(rt: Runtime, ledger: Ledger) -> FinalState:
    """Repeat keyed requests, wait for every timer and message, then read the state."""
    repeated = await _repeat_keyed(rt, ledger)
    accounts = [rt.ref(Account, account(n)) for n in range(ACCOUNTS)]

    async def orders_done() -> bool:
        return await rt.count(Order, status=Status.ACTIVE) == 0

    async def timers_done() -> bool:
        return not any([(await a.ask(Account.book)).pending for a in accounts])

    with anyio.fail_after(DRAIN_LIMIT):
        await _poll(orders_done)
        await _poll(timers_done)
    await anyio.sleep(2 * MAX_DELAY_MS / 1000)  # time for a cancelled timer to ring, if one could
    # Accounts before sinks, orders before archives: a relay or a result is enqueued to its
    # target when the sender's turn commits, so it is ahead of the ask that reads the target.
    books = {a.key: await a.ask(Account.book) for a in accounts}
    sinks = {f"sink-{n}": await rt.ref(Sink, f"sink-{n}").ask(Sink.received) for n in range(SINKS)}
    archives = {
        f"order-{n}": await rt.ref(Archive, f"order-{n}").ask(Archive.results)
        for n in range(ORDERS)
    }
    return FinalState(books, sinks, archives, repeated)


def _check_accounts(ledger: Ledger, store: FinalState) -> None:
    """Every accepted message ran exactly once; replies match; timers fired or were cancelled."""
    for key, book in store.books.items():
        twice = [i for i, n in Counter(book.handled).items() if n > 1]
        assert not twice, f"{key}: messages ran more than once: {twice[:5]}"
        balance = 0
        latest_sent = -1  # the last-sent of the messages handled so far
        for message_id, total in zip(book.handled, book.totals, strict=True):
            # G2: a message accepted before another was sent is ahead of it in the mailbox.
            accepted = ledger.accepted_at.get(message_id, len(ledger.lines))
            assert accepted > latest_sent, f"{key}: {message_id} ran out of mailbox order"
            latest_sent = max(latest_sent, ledger.sent_at.get(message_id, -1))
            intent = ledger.intents.get(message_id)
            assert intent is not None, f"{key}: ran {message_id}, which was never sent"
            assert not isinstance(intent.call, Open), f"{key}: ran the start {message_id}"
            assert intent.call.acct == key, f"{key}: ran {message_id}, sent to another account"
            if isinstance(intent.call, Deposit):
                balance += intent.call.amount
            assert total == balance, f"{key}: balance after {message_id} is {total}, not {balance}"
        assert book.balance == balance, f"{key}: balance {book.balance}, deposits {balance}"
        arms = {i for i in book.handled if isinstance(ledger.intents[i].call, Arm)}
        assert not book.pending, f"{key}: timers never fired: {book.pending[:5]}"
        assert not book.stray, f"{key}: timers fired twice or after their cancel: {book.stray[:5]}"
        fates = Counter(book.rung + book.cancelled)
        assert set(fates) == arms, f"{key}: timers lost: {sorted(arms - set(fates))[:5]}"
        assert max(fates.values(), default=1) == 1, f"{key}: a timer both fired and was cancelled"
    handled = {i: n for n, book in store.books.items() for i in book.handled}
    index = {i: n for book in store.books.values() for n, i in enumerate(book.handled)}
    for line in ledger.accepted:
        call = line.call
        if isinstance(call, Open):
            continue
        assert handled.get(call.id) == call.acct, f"{call.acct}: accepted {call.id}, never ran"
        if line.reply is not None:
            total = store.books[call.acct].totals[index[call.id]]
            what = "a repeat by idempotency key" if line.repeat else "the reply"
            assert line.reply == total, f"{call.acct}: {what} to {call.id} is {line.reply}"
    for call in ledger.keyed():
        assert handled.get(call.id) == call.acct, f"{call.acct}: keyed {call.id} never ran"
    for message_id, reply in store.repeated.items():
        book = store.books[handled[message_id]]
        total = book.totals[index[message_id]]
        assert reply == total, f"final repeat of {message_id}: {reply}, not the first {total}"


def _check_relays(ledger: Ledger, store: FinalState) -> None:
    """Every relay an account handled reached its sink exactly once, and nothing else did."""
    sent = {
        i: call.sink
        for book in store.books.values()
        for i in book.handled
        if isinstance(call := ledger.intents[i].call, Relay)
    }
    got = [(i, sink) for sink, ids in store.sinks.items() for i in ids]
    twice = [i for i, n in Counter(i for i, _ in got).items() if n > 1]
    assert not twice, f"relayed messages delivered more than once: {twice[:5]}"
    assert dict(got) == sent, "relayed messages lost or misdelivered"


async def _check_orders(rt: Runtime, ledger: Ledger, store: FinalState) -> None:
    """Each generation created once, its start handler and timer ran once; replies agree."""
    generations: dict[tuple[str, int], OrderResult] = {}
    opened: Counter[str] = Counter()
    for key, results in store.archives.items():
        numbers = [r.generation for r in results]
        assert numbers == sorted(set(numbers)), f"{key}: generations out of order: {numbers}"
        for r in results:
            assert r.key == key
            assert len(r.opened) == 1, f"{key}/{r.generation}: start handler ran {r.opened}"
            assert r.fired == r.opened, f"{key}/{r.generation}: timer fired {r.fired}"
            intent = ledger.intents.get(r.opened[0])
            assert intent is not None, f"{key}/{r.generation}: opened by unsent {r.opened}"
            assert isinstance(intent.call, Open)
            assert intent.call.key == key
            generations[key, r.generation] = r
            opened[r.opened[0]] += 1
    assert max(opened.values(), default=1) == 1, "a start ran the start handler twice"
    creators: Counter[tuple[str, int]] = Counter()
    created = {line.call.id for line in ledger.accepted if line.created}
    for line in ledger.accepted:
        call = line.call
        if not isinstance(call, Open):
            continue
        assert line.generation is not None
        where = f"{call.key}/{line.generation}"
        assert (call.key, line.generation) in generations, f"{where} reached by {call.id} lost"
        if line.created:
            creators[call.key, line.generation] += 1
            assert generations[call.key, line.generation].opened == [call.id], where
        else:
            assert call.id not in opened, f"{where}: duplicate start {call.id} ran the handler"
    assert max(creators.values(), default=1) == 1, "a generation was created twice"
    for reply in ledger.replies:
        result = generations[reply.call.key, reply.generation]
        if reply.opened is not None:
            assert reply.call.id in created, f"{reply.call.id}: a duplicate ran the handler"
            assert reply.opened == Opened(reply.call.id, reply.generation)
        else:
            assert reply.result == result, f"{reply.call.id}: adopted another result"
    assert await rt.count(Order, status=Status.ACTIVE) == 0
    async for info in rt.find_all(Order):
        try:
            assert await info.ref.status() == Status.COMPLETED
            assert await info.ref.result() == generations[info.key, info.generation]
        except ActorNotFound:
            # Found, then its retention window ended: only short-lived orders may do that.
            assert int(info.key.removeprefix("order-")) < SHORT_LIVED, info.key


@pytest.mark.slow
async def test_a_campaign_of_sigkills_loses_and_repeats_nothing_accepted(tmp_path: Path) -> None:
    """G1-G5: SIGKILL at random moments, round after round; then all checks."""
    print(f"\ncampaign: seed={SEED} rounds={ROUNDS}", flush=True)
    rng = random.Random(SEED)
    db = tmp_path / "campaign.db"
    began = time.monotonic()
    with anyio.fail_after(FINAL_LIMIT + 10 * ROUNDS):
        for round_ in range(ROUNDS):
            after = rng.uniform(*KILL_AFTER)
            await _round(db, tmp_path, round_, rng.randrange(2**32), after)
            lines = read_ledger(tmp_path, round_)
            ready = "" if any(isinstance(line, Ready) for line in lines) else " (recovering)"
            accepted = sum(isinstance(line, Accepted) for line in lines)
            print(f"round {round_}: killed after {after:.2f} s{ready}, {accepted} calls accepted")
        ledger = Ledger(read_ledger(tmp_path))
        final = time.monotonic()
        # Captured, so that the runtime's logs do not bury the figures under pytest -s.
        with capture_logs() as logs:
            url = f"sqlite:///{db}"
            async with running(url, *ENTITIES, config=CONFIG, limit=FINAL_LIMIT) as rt:
                store = await _drain(rt, ledger)
                _check_accounts(ledger, store)
                _check_relays(ledger, store)
                await _check_orders(rt, ledger, store)
                dead = await rt.dead_letters()
                assert not dead, f"messages dead-lettered: {dead[:3]}"
        errors = [e for e in logs if e["log_level"] in ("error", "critical")]
        assert not errors, f"the final round logged errors: {errors[:5]}"
    fresh = [line for line in ledger.accepted if not line.repeat]
    starts = [line for line in fresh if isinstance(line.call, Open)]
    books = store.books.values()
    print(
        f"campaign: seed={SEED} rounds survived={ROUNDS} kills={ROUNDS} "
        f"(during recovery: {ROUNDS - len(ledger.ready)}) "
        f"in {time.monotonic() - began:.1f} s (final round {time.monotonic() - final:.1f} s)\n"
        f"campaign: calls accepted={len(fresh)} (intended {len(ledger.intents)}), "
        f"repeated by idempotency key={len(ledger.accepted) - len(fresh)} "
        f"+ {len(ledger.keyed())} in the final round\n"
        f"campaign: messages handled={sum(len(b.handled) for b in books)}, "
        f"relayed={sum(len(s) for s in store.sinks.values())}, "
        f"timers fired={sum(len(b.rung) for b in books)}, "
        f"cancelled={sum(len(b.cancelled) for b in books)}\n"
        f"campaign: starts accepted={len(starts)} "
        f"(created={sum(1 for s in starts if s.created)}), "
        f"generations completed={sum(len(a) for a in store.archives.values())}, "
        f"start replies checked={len(ledger.replies)}",
        flush=True,
    )
    assert len(fresh) > 0
