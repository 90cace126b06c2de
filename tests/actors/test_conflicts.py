"""Conflicts are messages: duplicate policies, supersede, cancel, and idempotency keys."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import pytest

from actors import (
    ActorCompleted,
    ActorNotFound,
    Context,
    Duplicate,
    Entity,
    HandlerFailed,
    IdempotencyConflict,
    RuntimeConfig,
    Status,
    handler,
)
from actors.testing import VirtualClock
from tests.conftest import running
from tests.entities import Counter, Job


@dataclass
class Order:
    amount: int
    note: str = ""


class Charge(Entity):
    """Completes on start; default duplicate policy (adopt). Counts its executions."""

    name = "charge"
    executions = 0

    @handler
    async def charge(self, ctx: Context, order: Order) -> str:
        Charge.executions += 1
        receipt = f"receipt-{ctx.key}-{order.amount}-{ctx.message_id}"
        ctx.complete(receipt)
        return receipt


class PayloadMismatch(Exception):
    pass


@dataclass
class CartState:
    items: list[str] = field(default_factory=list)
    first: Order | None = None


class Cart(Entity):
    """Stays active; its policy rejects, merges or supersedes depending on the duplicate."""

    name = "cart"
    state: CartState
    result: list[str]

    @handler(start=True)
    async def open(self, ctx: Context, order: Order) -> str:
        self.state.first = order
        self.state.items.append(order.note)
        return f"opened generation {ctx.generation}"

    @handler
    async def checkout(self, ctx: Context) -> None:
        ctx.complete(self.state.items)

    async def on_duplicate(self, ctx: Context, dup: Duplicate[Order]) -> Any:
        if dup.payload.note == "replace":
            return ctx.supersede()
        if dup.payload.note.startswith("add:"):
            self.state.items.append(dup.payload.note[4:])  # merge: a signal to the owner
            return len(self.state.items)
        if dup.attributes.get("inspect"):
            return f"{ctx.status}:{len(self.state.items)}"
        if self.state.first is not None and dup.payload.amount != self.state.first.amount:
            raise PayloadMismatch(f"amount {dup.payload.amount} != {self.state.first.amount}")
        return ctx.reply_on_completion()


async def test_a_storm_of_duplicate_starts_runs_each_start_handler_exactly_once(
    store_url: str,
) -> None:
    """G1, G5: 1,000 keys x 5 starts run 1,000 times; late duplicates run and activate nothing.

    All five callers of a key get one reply; a late duplicate per key is answered from the
    store with zero executions and zero activations.
    """
    Charge.executions = 0
    replies: defaultdict[str, list[str]] = defaultdict(list)
    created: defaultdict[str, int] = defaultdict(int)
    async with running(store_url, Charge, limit=120) as rt:
        limiter = anyio.Semaphore(64)

        async def start(key: str) -> None:
            async with limiter:
                h = await rt.start(Charge, key, Order(amount=5))
                created[key] += h.created
                replies[key].append(await h.reply())

        async with anyio.create_task_group() as tg:
            for i in range(1000):
                for _ in range(5):
                    tg.start_soon(start, f"order-{i}")
        assert Charge.executions == 1000
        assert set(created.values()) == {1}
        assert all(len(set(r)) == 1 and len(r) == 5 for r in replies.values())
        before = rt.statistics()
        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(start, f"order-{i}")
        after = rt.statistics()
    assert Charge.executions == 1000
    assert (after.turns, after.activated) == (before.turns, before.activated)
    assert all(len(set(r)) == 1 and len(r) == 6 for r in replies.values())


async def test_a_policy_can_reject_a_duplicate_with_a_domain_error(store_url: str) -> None:
    """A duplicate whose payload differs gets the policy's error; the actor is untouched."""
    async with running(store_url, Cart) as rt:
        first = await rt.start(Cart, "c1", Order(amount=10, note="a"))
        assert await first.reply() == "opened generation 1"
        wrong = await rt.start(Cart, "c1", Order(amount=99))
        assert wrong.created is False
        with pytest.raises(HandlerFailed) as caught:
            await wrong.reply()
        assert caught.value.error_type == "PayloadMismatch"
        assert caught.value.handler == "on_duplicate"
        assert await first.actor.status() == Status.ACTIVE


async def test_a_policy_can_merge_a_duplicate_into_state_and_inspect_its_metadata(
    store_url: str,
) -> None:
    """Signal/merge: the duplicate's payload is folded into the owner's state, serialized."""
    async with running(store_url, Cart) as rt:
        await (await rt.start(Cart, "c2", Order(amount=1, note="a"))).reply()
        async with anyio.create_task_group() as tg:
            for item in ("b", "c", "d"):
                tg.start_soon(rt.start, Cart, "c2", Order(amount=1, note=f"add:{item}"))
        look = await rt.start(Cart, "c2", Order(amount=1), attributes={"inspect": True})
        assert await look.reply() == "active:4"
        await rt.ref(Cart, "c2").ask(Cart.checkout)
        assert sorted(await rt.ref(Cart, "c2").result()) == ["a", "b", "c", "d"]


async def test_supersede_replaces_the_generation_and_answers_with_the_new_start(
    store_url: str,
) -> None:
    """Supersede: generation 1 ends as superseded and generation 2 starts in one turn."""
    async with running(store_url, Cart) as rt:
        first = await rt.start(Cart, "c3", Order(amount=1, note="a"))
        await first.reply()
        adopter = await rt.start(Cart, "c3", Order(amount=1))
        replacing = await rt.start(Cart, "c3", Order(amount=1, note="replace"))
        assert replacing.created is False
        assert await replacing.reply() == "opened generation 2"
        with pytest.raises(ActorCompleted, match="superseded"):
            await adopter.reply()
        with pytest.raises(ActorNotFound):
            await first.actor.status()
        assert await rt.ref(Cart, "c3").status() == Status.ACTIVE
        record = await rt._store.load_actor(first.actor._id)
        assert record is not None
        assert record.generation == 2


async def test_supersede_racing_other_arrivals_leaves_no_gap(store_url: str) -> None:
    """Every concurrent start reaches the old or the new generation, never neither."""
    async with running(store_url, Cart) as rt:
        await (await rt.start(Cart, "c4", Order(amount=1, note="a"))).reply()
        adopters: list[Any] = []
        replacers: list[Any] = []

        async def arrive(note: str) -> None:
            h = await rt.start(Cart, "c4", Order(amount=1, note=note))
            (replacers if note else adopters).append(h)

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(arrive, "replace" if i == 10 else "")
        assert not any(h.created for h in adopters + replacers), "no start found the key free"
        [replacer] = replacers
        assert await replacer.reply() == "opened generation 2"
        await rt.ref(Cart, "c4").ask(Cart.checkout)
        outcomes: list[Any] = []
        for h in adopters:
            try:
                outcomes.append(await h.reply())
            except ActorCompleted as exc:
                outcomes.append(exc.status)
    # Each adopter got the generation it reached: gen 1 (superseded) or gen 2's result.
    assert all(o in ("superseded", ["replace"]) for o in outcomes), outcomes
    assert len(outcomes) == 29


async def test_duplicates_arriving_while_the_owner_completes_all_get_its_result(
    store_url: str,
) -> None:
    """Duplicates admitted before, during and after the completing turn are all answered."""
    async with running(store_url, Job) as rt:
        await (await rt.start(Job, "j", "x")).reply()
        handles: list[Any] = []

        async def duplicate() -> None:
            handles.append(await rt.start(Job, "j", "y"))

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(duplicate)
                if i == 20:
                    tg.start_soon(rt.ref(Job, "j").ask, Job.finish, "out")
        with anyio.fail_after(10):
            replies = [await h.reply() for h in handles]
    assert replies == ["out"] * 40
    assert not any(h.created for h in handles)


async def test_cancel_racing_completion_has_exactly_one_winner(store_url: str) -> None:
    """Cancel and completion are messages: whichever is first in the mailbox wins."""
    async with running(store_url, Job) as rt:
        winners: list[str] = []
        for k in range(20):
            ref = rt.ref(Job, f"race-{k}")
            await (await rt.start(Job, f"race-{k}", "x")).reply()
            outcome: dict[str, Any] = {}

            async def cancel(ref: Any = ref, outcome: dict[str, Any] = outcome) -> None:
                outcome["cancelled"] = await ref.cancel("user asked")

            async def finish(ref: Any = ref, outcome: dict[str, Any] = outcome) -> None:
                try:
                    await ref.ask(Job.finish, "done")
                    outcome["finished"] = True
                except ActorCompleted as exc:
                    outcome["finished"] = exc.status

            async with anyio.create_task_group() as tg:
                if k % 2:
                    tg.start_soon(cancel)
                    tg.start_soon(finish)
                else:
                    tg.start_soon(finish)
                    tg.start_soon(cancel)
            status = await ref.status()
            if outcome["cancelled"]:
                assert (outcome["finished"], status) == ("cancelled", Status.CANCELLED)
                winners.append("cancel")
            else:
                assert (outcome["finished"], status) == (True, Status.COMPLETED)
                winners.append("finish")
        with pytest.raises(ActorCompleted, match="cancelled"):
            await rt.ref(
                Job, next(f"race-{k}" for k in range(20) if winners[k] == "cancel")
            ).result()
    assert set(winners) == {"cancel", "finish"}


async def test_cancel_of_a_missing_actor_is_not_found_and_creates_nothing(store_url: str) -> None:
    """cancel() never creates a virtual actor."""
    async with running(store_url, Job) as rt:
        with pytest.raises(ActorNotFound):
            await rt.ref(Job, "ghost").cancel()
        assert await rt._store.load_actor(rt.ref(Job, "ghost")._id) is None


async def test_a_duplicate_for_a_generation_just_purged_creates_the_next_one(
    store_url: str,
) -> None:
    """G6: once purged, a start creates a larger generation; old refs never reach it."""
    clock = VirtualClock()
    config = RuntimeConfig(purge_interval=timedelta(seconds=1))
    async with running(store_url, Charge, clock=clock, config=config) as rt:
        first = await rt.start(Charge, "p", Order(amount=1))
        await first.reply()
        await clock.advance(timedelta(hours=24, seconds=2))  # returns once purged
        assert await rt._store.load_actor(first.actor._id) is None
        again = await rt.start(Charge, "p", Order(amount=2))
        assert again.created is True
        assert (again.actor.generation or 0) > 1
        assert (await again.reply()).startswith("receipt-p-2")
        with pytest.raises(ActorNotFound):
            await first.actor.result()


async def test_an_idempotency_key_makes_an_ask_once_only(store_url: str) -> None:
    """G5: repeats get the stored reply; the handler ran once; concurrent repeats wait."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "idem")
        replies: list[int] = []

        async def add() -> None:
            replies.append(await ref.ask(Counter.add, 5, idempotency_key="req-1"))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(add)
        assert replies == [5] * 10
        assert await ref.ask(Counter.add, 5, idempotency_key="req-1") == 5
        assert await ref.ask(Counter.get) == 5
        assert await ref.ask(Counter.add, 5, idempotency_key="req-2") == 10
        with pytest.raises(IdempotencyConflict, match="req-1"):
            await ref.ask(Counter.add, 6, idempotency_key="req-1")
        with pytest.raises(IdempotencyConflict, match="handler 'add'"):
            await ref.tell(Counter.record, "x", idempotency_key="req-1")
        await ref.tell(Counter.record, "t", idempotency_key="tell-1")
        await ref.tell(Counter.record, "t", idempotency_key="tell-1")
        assert await ref.ask(Counter.seen) == ["t"]


async def test_a_failed_idempotent_ask_repeats_its_error(store_url: str) -> None:
    """G5: the stored outcome of a failed request is its error, not a second run."""
    async with running(store_url, Counter) as rt:
        ref = rt.ref(Counter, "idem-fail")
        for _ in range(2):
            with pytest.raises(HandlerFailed, match="refusing to add 3"):
                await ref.ask(Counter.add_then_fail, 3, idempotency_key="f")
        assert await ref.ask(Counter.get) == 0


async def test_idempotent_replies_survive_a_restart_and_expire_with_retention(
    file_url: str,
) -> None:
    """G4, G5, G6: the stored reply outlives the process, and not the retention window."""
    clock = VirtualClock()
    async with running(file_url, Counter, clock=clock) as rt:
        assert await rt.ref(Counter, "r").ask(Counter.add, 2, idempotency_key="k") == 2
    async with running(file_url, Counter, clock=clock) as rt:
        assert await rt.ref(Counter, "r").ask(Counter.add, 2, idempotency_key="k") == 2
        assert await rt.ref(Counter, "r").ask(Counter.get) == 2
        await clock.advance(timedelta(hours=24, seconds=1))
        assert await rt.ref(Counter, "r").ask(Counter.add, 2, idempotency_key="k") == 4


async def test_namespaces_keep_tenants_apart_in_one_store(file_url: str) -> None:
    """Keys are scoped by entity name and namespace: two tenants never share an actor."""
    async with running(file_url, Counter, namespace="acme") as acme:
        assert await acme.ref(Counter, "k").ask(Counter.add, 1) == 1
        assert acme.ref(Counter, "k").entity == "acme:counter"
    async with running(file_url, Counter, namespace="globex") as globex:
        assert await globex.ref(Counter, "k").ask(Counter.add, 10) == 10
    async with running(file_url, Counter, namespace="acme") as acme:
        assert await acme.ref(Counter, "k").ask(Counter.get) == 1
    with pytest.raises(ValueError, match="namespace"):
        async with running(file_url, Counter, namespace="no spaces"):
            pass
