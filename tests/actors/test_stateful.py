"""Random operations against a model: the runtime does what the docs say, step after step.

A Hypothesis ``RuleBasedStateMachine`` drives a runtime on a SQLite file with random steps:
start (of a new key, or a duplicate of an existing one, sometimes with its own retention),
ask and tell (with and without idempotency keys, through ``rt.ref`` or through a ref bound to
a generation by an earlier start), complete, fail, cancel, timers (a periodic tick and a
deadline), moving the ``VirtualClock``, and restarting (closing the runtime and opening another
on the same file and the same clock, sometimes after time passed while it was down). After
every step the outcome is compared with ``tests/actors/stateful_model.py``, a plain-Python
model of the documented behaviour: created flags, generations, replies, errors, state,
statuses, results, duplicates adopting the result, and retention expiring exactly on time.

How the async runtime is driven: each example gets its own event loop in a thread (an anyio
blocking portal, ``anyio.from_thread.start_blocking_portal``). The runtime is opened in that
loop through ``portal.wrap_async_context_manager`` and stays open across steps, so that its
task groups, its VirtualClock and the duplicate starts still waiting for their replies live
from one step to the next; each step runs as one ``portal.call``, bounded by ``fail_after``.
Hypothesis stays in the test's thread and shrinks a failure to a short list of steps.

Steps that leave work behind (start, tell) end with ``clock.advance(timedelta(0))``, so that
each step is over before the next begins and the model can stay sequential.

The default run is 100 examples of up to 40 steps (about 20 s). For a longer run, set the
number of examples:
``KEYED_ACTORS_STATEFUL_EXAMPLES=1000 .venv/bin/pytest tests/actors/test_stateful.py``.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import anyio
from anyio.from_thread import start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from actors import (
    ActorCompleted,
    ActorFailed,
    ActorNotFound,
    ActorRef,
    HandlerFailed,
    IdempotencyConflict,
    Runtime,
    RuntimeClosed,
    StartHandle,
    Status,
)
from actors.testing import VirtualClock
from tests.actors.stateful_model import (
    CLOSED,
    NOT_FOUND,
    REFUSALS,
    Account,
    Call,
    Model,
    Outcome,
    reply,
)

EXAMPLES = int(os.environ.get("KEYED_ACTORS_STATEFUL_EXAMPLES", "100"))
STEPS = 40
STEP_LIMIT = 30.0  # real seconds one step may take
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

KEYS = st.sampled_from(("k0", "k1", "k2"))
AMOUNTS = st.sampled_from((1, 0, 2, -1))
CALLS = st.sampled_from(
    (
        Call("add", 1),
        Call("total"),
        Call("close"),
        Call("add", 2),
        Call("add", -3),  # raises when the total would go below zero
        Call("give_up", "r0"),
        Call("give_up", "r1"),
        Call("arm", 1),
        Call("arm", 2),
        Call("set_deadline", 1),
        Call("set_deadline", 3),
        Call("disarm"),
    )
)
IDEMPOTENCY_KEYS = st.sampled_from((None, "i0", "i1"))
# Retention of the generation a start creates: the entity's 5 minutes, or its own.
RETENTIONS = st.sampled_from((None, timedelta(minutes=2), timedelta(0), timedelta(minutes=10)))
# rt.ref(...) (no generation), or the ref of the first or of the last start of the key.
VIA = st.sampled_from(("ref", "first start", "last start"))
# Whole seconds, so that steps land exactly on expiries and due times (and floats stay exact).
SECONDS = st.sampled_from((0, 60, 1, 59, 120, 299, 300, 600))
DOWNTIME = st.sampled_from((0, 60, 300))

RUN: Counter[str] = Counter()
_DATABASES = itertools.count()


async def outcome(call: Awaitable[Any]) -> Outcome:
    """What ``call`` ended with, in the model's terms."""
    try:
        return reply(await call)
    except HandlerFailed as exc:
        return ("HandlerFailed", (exc.handler, exc.error_type, exc.error_message, exc.generation))
    except ActorFailed as exc:
        return ("ActorFailed", (exc.error_type, exc.error_message, exc.generation))
    except ActorCompleted as exc:
        return ("ActorCompleted", (exc.status, exc.generation))
    except ActorNotFound:
        return NOT_FOUND
    except IdempotencyConflict as exc:
        return ("IdempotencyConflict", exc.idempotency_key)
    except RuntimeClosed:
        return CLOSED


def ask(ref: ActorRef[Account], call: Call, idempotency_key: str | None) -> Awaitable[Any]:
    if call.payload is None:
        return ref.ask(call.handler, idempotency_key=idempotency_key)
    return ref.ask(call.handler, call.payload, idempotency_key=idempotency_key)


def tell(ref: ActorRef[Account], call: Call, idempotency_key: str | None) -> Awaitable[None]:
    if call.payload is None:
        return ref.tell(call.handler, idempotency_key=idempotency_key)
    return ref.tell(call.handler, call.payload, idempotency_key=idempotency_key)


class Accounts(RuleBasedStateMachine):
    """Accounts k0, k1 and k2 on one SQLite file in ``folder``, against :class:`Model`."""

    folder: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        self.path = self.folder / f"stateful-{next(_DATABASES)}.db"
        self.clock = VirtualClock(T0)
        self.model = Model(self.clock.now())
        # Refs bound to a generation, from starts, per key (dropped by a restart).
        self.bound: dict[str, list[ActorRef[Account]]] = {}
        # Duplicate starts of an active generation: adopting its result, per key.
        self.adopters: dict[str, list[StartHandle[Account, Any]]] = {}
        self._stack = ExitStack()
        self.portal = self._stack.enter_context(start_blocking_portal("asyncio"))
        self._runtime: AbstractContextManager[Runtime] | None = None
        self.rt = self._open()
        RUN["examples"] += 1

    # -- driving the runtime ------------------------------------------------------------

    def _open(self) -> Runtime:
        runtime = self.portal.wrap_async_context_manager(
            Runtime.open(f"sqlite:///{self.path}", entities=[Account], clock=self.clock)
        )
        rt = runtime.__enter__()
        self._runtime = runtime
        return rt

    def _close(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.__exit__(None, None, None)

    def run(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` in the runtime's event loop, then check the adopters it answered."""

        async def bounded() -> None:
            with anyio.fail_after(STEP_LIMIT):
                await step()
                await self._answer_adopters()

        self.portal.call(bounded)
        RUN["steps"] += 1

    async def _answer_adopters(self) -> None:
        """Duplicates of a generation that has ended get its ending (adopt, the default)."""
        for key, handles in self.adopters.items():
            gen = self.model.latest[key]
            if handles and gen.status is not Status.ACTIVE:
                for handle in handles:
                    assert await outcome(handle.reply()) == gen.ending(), f"adopter of {key}"
                    RUN["adopted"] += 1
                handles.clear()

    async def settle(self) -> None:
        """Let the turns a step left behind run, without moving time."""
        await self.clock.advance(timedelta(0))

    def ref(self, key: str, via: str) -> ActorRef[Account]:
        bound = self.bound.get(key)
        if via == "ref" or not bound:
            return self.rt.ref(Account, key)
        return bound[0] if via == "first start" else bound[-1]

    async def generation_of(self, key: str) -> int:
        """The generation of ``key`` in the registry (learned after a message created it)."""
        page = await self.rt.find(Account, limit=10)
        numbers = [item.generation for item in page.items if item.key == key]
        assert numbers, f"{key} was created by a message but find() does not list it"
        return numbers[0]

    def seen(self, result: Outcome) -> None:
        RUN[result[0]] += 1

    # -- the rules ----------------------------------------------------------------------

    @rule(key=KEYS, amount=AMOUNTS, retention=RETENTIONS)
    def start(self, key: str, amount: int, retention: timedelta | None) -> None:
        """G1 and 'conflicts are messages': created once; a duplicate adopts the result."""

        async def step() -> None:
            gen = self.model.current(key)
            handle = await self.rt.start(Account, key, amount, retention=retention)
            self.bound.setdefault(key, []).append(handle.actor)
            number = handle.actor.generation
            assert number is not None
            if gen is None:
                assert handle.created, f"start of {key} (no live generation) must create one"
                keep = Account.retention if retention is None else retention
                new = self.model.create(key, number, keep)
                got, want = await outcome(handle.reply()), self.model.open(new, amount)
                assert got == want, f"start reply: {got} != model {want}"
                RUN["created"] += 1
            else:
                assert not handle.created, f"duplicate start of {key} must not create"
                assert number == gen.number, f"duplicate reached {number}, live is {gen.number}"
                if gen.status is Status.ACTIVE:
                    self.adopters.setdefault(key, []).append(handle)
                else:
                    got = await outcome(handle.reply())
                    assert got == gen.ending(), f"duplicate of ended {key}: {got}"
                    RUN["stored result"] += 1
            await self.settle()

        self.run(step)

    @rule(key=KEYS, call=CALLS, idempotency_key=IDEMPOTENCY_KEYS, via=VIA)
    def ask(self, key: str, call: Call, idempotency_key: str | None, via: str) -> None:
        """G2, G3, G5: replies, errors and stored replies as the model predicts."""

        async def step() -> None:
            ref = self.ref(key, via)
            creates = self.model.creates(key, ref.generation)
            got = await outcome(ask(ref, call, idempotency_key))
            if creates:
                self.model.create(key, await self.generation_of(key), Account.retention)
            want = self.model.send(key, ref.generation, call, idempotency_key)
            assert got == want, f"ask {call} of {ref}: {got} != model {want}"
            self.seen(got)

        self.run(step)

    @rule(key=KEYS, call=CALLS, idempotency_key=IDEMPOTENCY_KEYS, via=VIA)
    def tell(self, key: str, call: Call, idempotency_key: str | None, via: str) -> None:
        """G4, G5: a tell is refused, or accepted and handled once."""

        async def step() -> None:
            ref = self.ref(key, via)
            creates = self.model.creates(key, ref.generation)
            got = await outcome(tell(ref, call, idempotency_key))
            await self.settle()
            if creates:
                self.model.create(key, await self.generation_of(key), Account.retention)
            want = self.model.send(key, ref.generation, call, idempotency_key)
            want = want if want[0] in REFUSALS else reply(None)
            assert got == want, f"tell {call} to {ref}: {got} != model {want}"

        self.run(step)

    @rule(key=KEYS, via=VIA, reason=st.sampled_from(("c0", "c1")))
    def cancel(self, key: str, via: str, reason: str) -> None:
        """ref.cancel(): True when it ended the actor, False if it had ended already."""

        async def step() -> None:
            ref = self.ref(key, via)
            got = await outcome(ref.cancel(reason))
            want = self.model.cancel(key, ref.generation, reason)
            assert got == want, f"cancel of {ref}: {got} != model {want}"

        self.run(step)

    @rule(seconds=SECONDS)
    def advance(self, seconds: int) -> None:
        """G6 and timers: time moves; timers fire on time, records expire on time."""

        async def step() -> None:
            await self.clock.advance(timedelta(seconds=seconds))
            self.model.advance(seconds)

        self.run(step)

    @rule(downtime=DOWNTIME)
    def restart(self, downtime: int) -> None:
        """G4: everything accepted survives a restart; waiting callers are told it closed."""
        old = next((refs[-1] for refs in self.bound.values() if refs), None)
        self._close()

        async def while_down() -> None:
            for handles in self.adopters.values():
                for handle in handles:
                    assert await outcome(handle.reply()) == CLOSED
                handles.clear()
            if old is not None:
                assert await outcome(old.status()) == CLOSED
            await self.clock.advance(timedelta(seconds=downtime))
            self.model.pause(downtime)

        self.run(while_down)
        self.bound.clear()
        self.rt = self._open()

        async def reopened() -> None:
            await self.settle()  # timers that came due while it was down fire now
            self.model.reopen()

        self.run(reopened)
        RUN["restarts"] += 1

    @rule(key=KEYS, via=VIA)
    def check(self, key: str, via: str) -> None:
        """The store agrees with the model: status, state or result, and the registry."""

        async def step() -> None:
            gen = self.model.current(key)
            status = await outcome(self.rt.ref(Account, key).status())
            assert status == (NOT_FOUND if gen is None else reply(gen.status)), f"{key}: {status}"
            ref = self.ref(key, via)
            if ref.generation is not None:
                want = reply(gen.status) if gen and gen.number == ref.generation else NOT_FOUND
                assert await outcome(ref.status()) == want, f"status of {ref}"
            if gen is not None and gen.status is Status.ACTIVE:
                total = await outcome(self.rt.ref(Account, key).ask(Account.total))
                assert total == reply(gen.total), f"{key}: total {total}, model {gen.total}"
            elif gen is not None:
                got = await outcome(self.rt.ref(Account, key).result())
                assert got == gen.ending(), f"{key}: result {got}, model {gen.ending()}"
            assert await self.rt.count(Account) == self.model.live_count()
            active = await self.rt.count(Account, status=Status.ACTIVE)
            assert active == self.model.live_count(Status.ACTIVE)

        self.run(step)

    @invariant()
    def time_agrees(self) -> None:
        assert self.clock.now() == self.model.now

    def teardown(self) -> None:
        RUN.update(self.model.events)
        try:
            self._close()
        finally:
            self._stack.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def test_random_operations_agree_with_a_model_of_the_documented_behaviour(
    tmp_path: Path,
) -> None:
    """G1-G6 and 'conflicts are messages': every step's outcome is the model's."""

    class AccountsInTmpPath(Accounts):
        folder = tmp_path

    RUN.clear()
    run_state_machine_as_test(
        AccountsInTmpPath,
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None),
    )
    # The machine really ran, and reached the interesting cases.
    assert RUN["examples"] >= EXAMPLES, RUN
    reached = ("stored result", "adopted", "generation after expiry", "repeat", "tick fired")
    for seen in ("created", "ActorCompleted", "HandlerFailed", *reached):
        assert RUN[seen] > 0, (seen, RUN)
