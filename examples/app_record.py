"""What the runtime replaces: a hand-rolled idempotency-key table, next to the same as an entity.

APIs that take an ``Idempotency-Key`` usually keep an application record per key, as in
Stripe's "Designing robust and predictable APIs with idempotency" and Brandur Leach's
"Implementing Stripe-like Idempotency Keys in Postgres": a table keyed by the idempotency
key, with the request's parameters, a ``locked_at`` lock, a ``recovery_point`` and the stored
response, read and written in short transactions around the call to the outside world, plus
a cleanup job. ``KeyTable`` below is that pattern, written with the standard ``sqlite3``
module and kept correct: atomic admission, a lock that goes stale, fencing of a slow owner,
resumption from the recovery point, response replay, refusal of a reused key, retention.

``ActorService`` does the same with keyed-actors: a ``Payment`` entity per key, whose
``on_duplicate`` refuses a reused key and replays the response, and a ``Ledger`` actor per
customer that records each charge in the same commit. Both run one scenario: a first
request, a duplicate while it is in flight, a late duplicate, the same key with another
amount, a process that dies after the provider charged and before the response was stored,
the client's retry, lookups by customer, and the cleanup a day later. Each prints what it
did; then the outcomes are compared. Time is an ``actors.testing.VirtualClock``, so that
"two minutes later" and "a day later" pass at once. Run it with::

    python examples/app_record.py
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Protocol

import anyio
import structlog

from actors import Context, Duplicate, Entity, Runtime, Status, handler
from actors.testing import VirtualClock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LOCK_TIMEOUT = timedelta(minutes=1)  # must exceed the longest request (see KeyTable)
RETENTION = timedelta(hours=24)  # how long a key and its response are kept
WAIT = 5.0  # real seconds a duplicate waits for the request that holds its key


# -- What both sides share: the request, the response, the payment provider ---------------


@dataclass(frozen=True)
class ChargeRequest:
    customer: str
    amount: int


@dataclass(frozen=True)
class Response:
    """What the HTTP handler would send back."""

    status: int
    body: str

    def __str__(self) -> str:
        return f"{self.status} {self.body}"


def created(charge_id: str, req: ChargeRequest) -> Response:
    return Response(201, json.dumps({"charge": charge_id, "amount": req.amount}))


# As in the IETF draft "The Idempotency-Key HTTP Header Field": 422 for a reused key.
MISMATCH = Response(422, '{"error": "key reused with another request"}')
IN_PROGRESS = Response(409, '{"error": "a request with this key is in progress"}')


@dataclass
class Gate:
    """Holds the provider's next call after it has charged, until ``opened`` is set."""

    reached: anyio.Event = field(default_factory=anyio.Event)
    opened: anyio.Event = field(default_factory=anyio.Event)


class Provider:
    """A payment provider's API. Idempotent by key as Stripe's is: a key gets one charge."""

    def __init__(self) -> None:
        self.calls = 0
        self.charges: dict[str, str] = {}
        self._gate: Gate | None = None

    def hold_next(self) -> Gate:
        self._gate = Gate()
        return self._gate

    async def charge(self, key: str, req: ChargeRequest) -> str:
        self.calls += 1
        charge_id = self.charges.setdefault(key, f"ch_{len(self.charges) + 1:04d}")
        gate, self._gate = self._gate, None
        if gate is not None:  # charged; the reply is on its way back
            gate.reached.set()
            await gate.opened.wait()
        return charge_id


# -- The hand-rolled application record ------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key            TEXT PRIMARY KEY,  -- real APIs scope it: PRIMARY KEY (account, key)
    customer       TEXT NOT NULL,
    request        TEXT NOT NULL,     -- the parameters, to refuse a key reused for another
    created_at     REAL NOT NULL,
    locked_at      REAL,              -- set while a request owns the key, NULL when done
    attempt        INTEGER NOT NULL,  -- fencing token: grows with each takeover of the lock
    recovery_point TEXT NOT NULL,     -- 'started', 'finished': one per atomic phase
    response_code  INTEGER,
    response_body  TEXT,
    finished_at    REAL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_customer ON idempotency_keys (customer);
CREATE INDEX IF NOT EXISTS idempotency_keys_finished ON idempotency_keys (finished_at);
CREATE TABLE IF NOT EXISTS charges (
    charge_id TEXT PRIMARY KEY,
    customer  TEXT NOT NULL,
    amount    INTEGER NOT NULL
);
"""


@dataclass
class Admission:
    """What the admission transaction decided for one request."""

    note: str
    response: Response | None = None  # answer this at once
    busy: bool = False  # another request holds the key
    attempt: int = 0  # else: we hold the key with this fencing token


class KeyTable:
    """Charges once per idempotency key, with an application record per key in SQLite.

    What it has to get right, each of which the runtime does for the entity below:

    - **Atomic admission.** Looking the key up and inserting it are one transaction that
      takes the write lock first (``BEGIN IMMEDIATE``; on PostgreSQL a SERIALIZABLE
      transaction or ``INSERT ... ON CONFLICT``), or two concurrent first requests both
      run. The runtime: ``start()`` admits in one transaction (guarantee 1).
    - **Locks.** ``locked_at`` keeps a second request out while the first runs, and goes
      stale so that a request that died does not hold its key for ever. A live request that
      runs past ``LOCK_TIMEOUT`` loses the key to a retry, and both run; the ``attempt``
      token makes the slow one's last write fail instead of storing a second response. So
      the timeout must exceed the longest request, and a retry inside it waits or gets 409.
      The runtime: one turn at a time per actor, and on several nodes a lease with a
      fencing epoch (guarantees 2 and 7).
    - **Recovery.** A request that died leaves its key locked at a recovery point; nothing
      finishes it until the client retries after the lock went stale (or a "completer" job,
      which needs the stored parameters, does). The runtime re-runs an uncommitted turn
      when it opens, with no client and no timeout.
    - **Replay.** The response is stored in the transaction that stores the work's local
      effects (the ``charges`` row) and moves the recovery point. The runtime commits a
      turn's state, result, and messages to other actors together (guarantee 3).
    - **Retention.** A cleanup job, run by a scheduler, deletes finished keys after the
      window, never an unfinished one (that would forget a charge that may have happened).
      The runtime purges each record when its window ends (guarantee 6).
    - **Lookup.** Each query needs its column and index (``customer``). The runtime indexes
      every actor's attributes (``rt.find``); SQL, of course, can also join and aggregate.

    Calls to ``sqlite3`` block the event loop; they are short, and a service would run them
    in a worker thread.
    """

    def __init__(self, path: Path, provider: Provider, now: Callable[[], float]) -> None:
        self.provider = provider
        self.waiting = anyio.Event()  # set when a request waits for one that holds its key
        self._path = path
        self._now = now
        with closing(sqlite3.connect(path)) as db:
            db.executescript(SCHEMA)

    @asynccontextmanager
    async def process(self) -> AsyncIterator[None]:
        """One life of the service process: it keeps nothing in memory across them."""
        yield

    async def charge(self, key: str, req: ChargeRequest) -> tuple[Response, str]:
        """Handle ``POST /charges`` with ``Idempotency-Key: key``."""
        notes: list[str] = []
        deadline = anyio.current_time() + WAIT
        while True:
            admission = self._admit(key, req)
            if not notes or notes[-1] != admission.note:
                notes.append(admission.note)
            if admission.response is not None:
                return admission.response, "; ".join(notes)
            if admission.busy:
                # Waiting (polling) is one choice; Stripe answers 409 at once instead.
                if anyio.current_time() > deadline:
                    return IN_PROGRESS, "; ".join(notes)
                self.waiting.set()
                await anyio.sleep(0.01)
                continue
            # The one foreign call. Outside any transaction (never hold one open across the
            # network), and idempotent at the provider by our key: a resumed request calls
            # it again and gets the same charge.
            charge_id = await self.provider.charge(key, req)
            response = created(charge_id, req)
            if self._finish(key, admission.attempt, req, charge_id, response):
                notes.append("charged; stored charge and response, unlocked")
                return response, "; ".join(notes)
            notes.append("lost the lock to a retry meanwhile; its response is the answer")

    def _admit(self, key: str, req: ChargeRequest) -> Admission:
        request = json.dumps(asdict(req), sort_keys=True)
        now = self._now()
        with self._transaction() as db:
            row = db.execute(
                "SELECT request, locked_at, attempt, recovery_point, response_code,"
                " response_body FROM idempotency_keys WHERE key = ?",
                (key,),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO idempotency_keys (key, customer, request, created_at,"
                    " locked_at, attempt, recovery_point) VALUES (?, ?, ?, ?, ?, 1, 'started')",
                    (key, req.customer, request, now, now),
                )
                return Admission("inserted the key, locked", attempt=1)
            stored, locked_at, attempt, point, code, body = row
            if stored != request:
                return Admission("refused: the key's stored request differs", MISMATCH)
            if point == "finished":
                return Admission("replayed the stored response", Response(code, body))
            if locked_at is not None and now - locked_at < LOCK_TIMEOUT.total_seconds():
                return Admission("found the key locked, waited", busy=True)
            db.execute(
                "UPDATE idempotency_keys SET locked_at = ?, attempt = ? WHERE key = ?",
                (now, attempt + 1, key),
            )
            return Admission(f"took over a stale lock at {point!r}", attempt=attempt + 1)

    def _finish(
        self, key: str, attempt: int, req: ChargeRequest, charge_id: str, response: Response
    ) -> bool:
        """The atomic phase after the charge: False if another request took the key."""
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE idempotency_keys SET recovery_point = 'finished', locked_at = NULL,"
                " response_code = ?, response_body = ?, finished_at = ?"
                " WHERE key = ? AND attempt = ?",
                (response.status, response.body, self._now(), key, attempt),
            ).rowcount
            if updated:
                db.execute(
                    "INSERT INTO charges (charge_id, customer, amount) VALUES (?, ?, ?)",
                    (charge_id, req.customer, req.amount),
                )
            return bool(updated)

    async def after_crash(self, key: str) -> str:
        with self._transaction() as db:
            point, locked = db.execute(
                "SELECT recovery_point, locked_at IS NOT NULL FROM idempotency_keys WHERE key = ?",
                (key,),
            ).fetchone()
        return f"{key} stays {'locked' if locked else 'unlocked'} at {point!r}"

    async def after_restart(self, key: str) -> str:
        return f"nothing runs: {key} waits for its client's retry"

    async def keys_of(self, customer: str) -> list[str]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT key FROM idempotency_keys WHERE customer = ? ORDER BY key", (customer,)
            ).fetchall()
        return [key for (key,) in rows]

    async def ledger_of(self, customer: str) -> list[str]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT charge_id, amount FROM charges WHERE customer = ? ORDER BY charge_id",
                (customer,),
            ).fetchall()
        return [f"{charge_id} {amount}" for charge_id, amount in rows]

    async def cleanup(self) -> tuple[int, str]:
        """The cleanup job: a scheduler has to run it."""
        with self._transaction() as db:
            cutoff = self._now() - RETENTION.total_seconds()
            deleted = db.execute(
                "DELETE FROM idempotency_keys WHERE finished_at < ?", (cutoff,)
            ).rowcount
            (left,) = db.execute("SELECT count(*) FROM idempotency_keys").fetchone()
        return left, f"the cleanup job deleted {deleted} finished key(s)"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # A connection per transaction, as separate workers would have. isolation_level=None:
        # the transaction is ours to begin and end, with no implicit BEGIN in between.
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: reads cannot go stale
            yield db
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()


# -- The same with keyed-actors -----------------------------------------------------------


@dataclass
class PaymentState:
    request: ChargeRequest | None = None


class Payment(Entity):
    """One actor per idempotency key: the key's whole record, lock and recovery included."""

    name = "payment"
    state: PaymentState
    result: Response  # stored on completion, for the retention window: the replay
    retention = RETENTION
    attribute_types: ClassVar[dict[str, type]] = {"customer": str}
    provider: ClassVar[Provider]

    @handler
    async def charge(self, ctx: Context, req: ChargeRequest) -> Response:
        self.state.request = req
        # Idempotent at the provider by our key, like the table's call: a crash before the
        # commit re-runs this turn, which calls again and gets the same charge.
        charge_id = await Payment.provider.charge(ctx.key, req)
        # Committed with this turn, or not at all: the ledger hears of each charge once.
        ctx.tell(ctx.ref(Ledger, req.customer), Ledger.record, f"{charge_id} {req.amount}")
        response = created(charge_id, req)
        ctx.complete(response)
        return response

    async def on_duplicate(self, ctx: Context, dup: Duplicate[ChargeRequest]) -> Response:
        # Runs in this actor's mailbox, after the turns before it: a duplicate that arrives
        # while the charge is in flight waits its turn, without a lock or a poll.
        if dup.payload != self.state.request:
            return MISMATCH
        return ctx.reply_on_completion()  # the stored response


@dataclass
class LedgerState:
    charges: list[str] = field(default_factory=list)


class Ledger(Entity):
    """A customer's charges: the local effect, like the table's ``charges`` rows."""

    name = "ledger"
    state: LedgerState

    @handler
    async def record(self, ctx: Context, charge: str) -> None:
        self.state.charges.append(charge)

    @handler
    async def charges(self, ctx: Context) -> list[str]:
        return sorted(self.state.charges)


class ActorService:
    """Charges once per idempotency key, with a Payment actor per key."""

    def __init__(self, path: Path, provider: Provider, clock: VirtualClock) -> None:
        self.provider = provider
        self.waiting = anyio.Event()  # set when a duplicate waits behind a running turn
        Payment.provider = provider
        self._url = f"sqlite:///{path}"
        self._clock = clock
        self._rt: Runtime | None = None

    @asynccontextmanager
    async def process(self) -> AsyncIterator[None]:
        """One life of the service process: the runtime opens on the same file each time."""
        entities = [Payment, Ledger]
        async with Runtime.open(self._url, entities=entities, clock=self._clock) as self._rt:
            # The runtime re-runs uncommitted turns as it opens; advancing no time lets them
            # finish before the scenario goes on, so that every run prints the same.
            await self._clock.advance(timedelta(0))
            yield

    @property
    def rt(self) -> Runtime:
        assert self._rt is not None, "outside process()"
        return self._rt

    async def charge(self, key: str, req: ChargeRequest) -> tuple[Response, str]:
        """Handle ``POST /charges`` with ``Idempotency-Key: key``."""
        attrs = {"customer": req.customer}
        handle = await self.rt.start(Payment, key, req, handler=Payment.charge, attributes=attrs)
        if handle.created:
            return await handle.reply(), f"created payment/{key}; its start turn charged"
        note = "created=False: a duplicate message"
        if await handle.actor.status() is Status.ACTIVE:
            note += ", queued behind the running turn"
            self.waiting.set()
        response = await handle.reply()
        answer = "refused it" if response == MISMATCH else "replayed the stored response"
        return response, f"{note}; on_duplicate {answer}"

    async def after_crash(self, key: str) -> str:
        status = await self.rt.ref(Payment, key).status()
        return f"payment/{key} stays {status}; its turn, uncommitted, runs again at the next open"

    async def after_restart(self, key: str) -> str:
        status = await self.rt.ref(Payment, key).status()
        return f"re-ran payment/{key}'s turn as it opened (same charge): now {status}"

    async def keys_of(self, customer: str) -> list[str]:
        page = await self.rt.find(Payment, where={"customer": customer})
        return [info.key for info in page.items]

    async def ledger_of(self, customer: str) -> list[str]:
        return await self.rt.ref(Ledger, customer).ask(Ledger.charges)

    async def cleanup(self) -> tuple[int, str]:
        # Nothing to run: each record was purged when its retention window ended.
        left = await self.rt.count(Payment)
        return left, f"the runtime purged {self.rt.statistics().purged} record(s) at expiry"


# -- One scenario for both ------------------------------------------------------------------


class Service(Protocol):
    provider: Provider
    waiting: anyio.Event

    def process(self) -> AbstractAsyncContextManager[None]: ...
    async def charge(self, key: str, req: ChargeRequest) -> tuple[Response, str]: ...
    async def after_crash(self, key: str) -> str: ...
    async def after_restart(self, key: str) -> str: ...
    async def keys_of(self, customer: str) -> list[str]: ...
    async def ledger_of(self, customer: str) -> list[str]: ...
    async def cleanup(self) -> tuple[int, str]: ...


Step = tuple[str, str, str]  # what happened, its outcome, what the service did


async def scenario(svc: Service, clock: VirtualClock) -> list[Step]:
    steps: list[Step] = []
    first = ChargeRequest(customer="c-42", amount=1999)
    second = ChargeRequest(customer="c-42", amount=4200)

    async with svc.process():
        answers: dict[str, tuple[Response, str]] = {}

        async def request(step: str) -> None:
            answers[step] = await svc.charge("key-1", first)

        gate = svc.provider.hold_next()
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "first request (key-1)")
            await gate.reached.wait()  # the provider has charged; no response stored yet
            tg.start_soon(request, "duplicate while in flight")
            await svc.waiting.wait()  # it found key-1 taken, and waits
            gate.opened.set()
        for step, (response, note) in answers.items():
            steps.append((step, str(response), note))

        response, note = await svc.charge("key-1", first)
        steps.append(("late duplicate", str(response), note))
        response, note = await svc.charge("key-1", ChargeRequest(customer="c-42", amount=5))
        steps.append(("same key, other amount", str(response), note))

        gate = svc.provider.hold_next()
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.charge, "key-2", second)
            await gate.reached.wait()  # charged at the provider ...
            tg.cancel_scope.cancel()  # ... and the process dies before storing anything
        crashed = await svc.after_crash("key-2")
        steps.append(("key-2: charged, then the process dies", "no response", crashed))
    # Leaving process(): for the runtime, closing cancels the turn in flight uncommitted,
    # which leaves the store as a crash would (tests/crash/ does it with SIGKILL).

    await clock.advance(LOCK_TIMEOUT * 2)
    async with svc.process():
        restarted = await svc.after_restart("key-2")
        steps.append(("two minutes later, the process runs again", "-", restarted))
        response, note = await svc.charge("key-2", second)
        steps.append(("the client retries key-2", str(response), note))
        steps.append(("c-42's keys", ", ".join(await svc.keys_of("c-42")), ""))
        steps.append(("c-42's charges", ", ".join(await svc.ledger_of("c-42")), ""))
        provider = svc.provider
        calls = f"{provider.calls} calls, {len(provider.charges)} charges"
        steps.append(("provider", calls, ""))
        await clock.advance(RETENTION + timedelta(hours=1))
        left, note = await svc.cleanup()
        steps.append(("a day later (retention: 24 h)", f"{left} keys kept", note))
    return steps


async def main() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),  # stdout is for the results
    )
    with tempfile.TemporaryDirectory() as folder:
        table_clock, actors_clock = VirtualClock(T0), VirtualClock(T0)
        table = KeyTable(Path(folder) / "keys.db", Provider(), table_clock.now)
        actors = ActorService(Path(folder) / "actors.db", Provider(), actors_clock)
        by_table = await scenario(table, table_clock)
        by_actors = await scenario(actors, actors_clock)

    for (step, outcome, table_note), (_, actor_outcome, actor_note) in zip(
        by_table, by_actors, strict=True
    ):
        print(step)
        print(f"  table : {outcome}" + (f"  ({table_note})" if table_note else ""))
        print(f"  actors: {actor_outcome}" + (f"  ({actor_note})" if actor_note else ""))
    same = [s[:2] for s in by_table] == [s[:2] for s in by_actors]
    print(f"outcomes agree on all {len(by_table)} steps: {same}")


if __name__ == "__main__":
    anyio.run(main)
