"""Retrying a dead letter of an entity this runtime does not host crashes the runtime.

``Runtime.retry_dead_letter`` takes any id; ``RetryDeadLetter`` (persistence/sqlite.py) stores
the message whatever its entity, and ``Dispatcher.committed`` delivers it: ``deliver`` looks
up ``self._rt._specs[actor.entity]`` inside the writer's callback and raises ``KeyError``,
which takes down the writer and the whole runtime. (Recovery skips mail of unknown entities
on purpose: runtimes hosting different entities, or tenants, may share a store;
``dead_letters()`` lists only this runtime's, but ``retry``/``discard`` do not check.)
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from actors import ActorsError, Context, Entity, MessageDeadLettered, RuntimeConfig, handler
from tests.entities import Counter
from tests.faults import faulty_store, runtime_on


class Mine(Entity):
    name = "mine"

    @handler
    async def echo(self, ctx: Context, text: str) -> str:
        return text


async def test_retrying_another_runtimes_dead_letter_does_not_crash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with faulty_store(url) as faulty:
        faulty.refuse_turns(lambda m: m.payload == b'"poison"')
        async with runtime_on(faulty, Mine, config=RuntimeConfig(max_attempts=1)) as rt:
            with pytest.raises(MessageDeadLettered) as caught:
                await rt.ref(Mine, "k").ask(Mine.echo, "poison")
    dead = caught.value.dead_letter

    async with faulty_store(url) as store, runtime_on(store, Counter, limit=5) as rt:
        assert await rt.dead_letters() == []  # not this runtime's
        with contextlib.suppress(ActorsError):  # a clear refusal is fine
            await rt.retry_dead_letter(dead)
        # The runtime must still serve.
        assert await rt.ref(Counter, "c").ask(Counter.add, 1) == 1
