"""An actor's record keeps its last turns for operators (``actors show``), committed with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors import Context, Entity, Runtime, RuntimeConfig, handler
from actors._recent import TurnNote, decode
from persistence import ActorId, open_store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Counter(Entity):
    name = "counter"
    state: int

    @handler
    async def add(self, ctx: Context, n: int) -> int:
        if n < 0:
            raise ValueError(f"cannot add {n}")
        self.state += n
        return self.state

    @handler
    async def stop(self, ctx: Context) -> None:
        ctx.complete(self.state)


async def notes(url: str, key: str) -> list[TurnNote]:
    store = await open_store(url)
    try:
        record = await store.load_actor(ActorId(entity="counter", key=key))
        assert record is not None
        return decode(record.recent_turns)
    finally:
        await store.close()


async def test_each_turn_is_noted_with_its_outcome(tmp_path: Path) -> None:
    """Message, kind, handler and outcome of each turn, oldest first, across a restart."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    async with Runtime.open(url, entities=[Counter]) as rt:
        ref = rt.ref(Counter, "c")
        assert await ref.ask(Counter.add, 2) == 2
        with pytest.raises(Exception, match="cannot add -1"):
            await ref.ask(Counter.add, -1)
    async with Runtime.open(url, entities=[Counter]) as rt:
        await rt.ref(Counter, "c").ask(Counter.stop)
    turns = await notes(url, "c")
    assert [(t.kind, t.handler, t.outcome) for t in turns] == [
        ("request", "add", "ok"),
        ("request", "add", "failed: ValueError: cannot add -1"),
        ("request", "stop", "completed"),
    ]
    assert [t.message for t in turns] == sorted(t.message for t in turns)
    assert all(t.took >= 0 and t.at > 0 for t in turns)


async def test_only_the_configured_number_of_turns_is_kept(tmp_path: Path) -> None:
    """``RuntimeConfig.recent_turns`` bounds the list; 0 keeps none."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    async with Runtime.open(url, entities=[Counter], config=RuntimeConfig(recent_turns=3)) as rt:
        for n in range(1, 8):
            await rt.ref(Counter, "kept").ask(Counter.add, n)
    assert [t.message for t in await notes(url, "kept")] == [5, 6, 7]
    async with Runtime.open(url, entities=[Counter], config=RuntimeConfig(recent_turns=0)) as rt:
        await rt.ref(Counter, "none").ask(Counter.add, 1)
    assert await notes(url, "none") == []


@pytest.mark.parametrize("bad", [-1, 101, True, 2.0])
def test_recent_turns_must_be_a_small_count(bad: object) -> None:
    """A clear error at configuration time."""
    with pytest.raises(ValueError, match="recent_turns must be an int from 0 to 100"):
        RuntimeConfig(recent_turns=bad)  # type: ignore[arg-type]


async def test_a_duplicate_turn_is_noted_as_the_policy_that_ran(tmp_path: Path) -> None:
    """The entity's ``on_duplicate`` handled it: the note says so, with its refusal."""
    from examples.idempotency_policies import RejectDuplicate, first_run
    from persistence import Status

    url = f"sqlite:///{tmp_path / 'app.db'}"
    async with Runtime.open(url, entities=[RejectDuplicate]) as rt:
        await first_run(rt, RejectDuplicate, "k", Status.ACTIVE)
        duplicate = await rt.start(RejectDuplicate, "k", "second")
        with pytest.raises(Exception, match="DuplicateRejected"):
            await duplicate.reply()
    store = await open_store(url)
    try:
        record = await store.load_actor(ActorId(entity=RejectDuplicate.name, key="k"))
    finally:
        await store.close()
    assert record is not None
    last = decode(record.recent_turns)[-1]
    assert (last.kind, last.handler) == ("duplicate", "on_duplicate")
    assert last.outcome.startswith("failed: DuplicateRejected")
