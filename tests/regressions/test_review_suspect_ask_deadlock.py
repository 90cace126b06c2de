"""A suspect turn that asks an actor with an ordinary message ahead of its ask hangs the runtime.

The suspect holds the gate (``Solo.pending``) for its whole turn. The ordinary message at the
head of the asked actor's mailbox waits at ``Solo.enter`` for the suspect to leave; the
suspect's ask (which would pass the gate: it carries a live chain) is queued behind it. Neither
can move: every ordinary turn in the runtime now waits too, until the suspect's handler times
out (then its message fails with ``HandlerTimeout``, a wrong outcome) or forever with
``handler_timeout=None``.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from actors import Context, Entity, RuntimeConfig, handler
from persistence import ActorId, ActorInit, Enqueue, MessageKind, NewMessage, open_store
from tests.conftest import running
from tests.faults import until

DONE: list[str] = []


class Asker(Entity):
    name = "asker"

    @handler
    async def work(self, ctx: Context) -> None:
        await anyio.sleep(0.2)  # meanwhile an ordinary message reaches the other actor
        DONE.append(await ctx.ref(Other, "y").ask(Other.echo, "from the suspect"))


class Other(Entity):
    name = "other"

    @handler
    async def echo(self, ctx: Context, text: str) -> str:
        DONE.append(text)
        return text


async def test_a_suspect_asking_an_actor_with_earlier_ordinary_mail_does_not_hang(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'suspect.db'}"
    store = await open_store(url)
    try:
        [outcome] = await store.write(
            [
                Enqueue(
                    actor=ActorId(entity="asker", key="s"),
                    message=NewMessage(kind=MessageKind.TELL, handler="work", payload=b"null"),
                    init=ActorInit(retention=60.0),
                )
            ],
            now=time.time(),
        )
        # One restart already found it at the head: the next one makes it a suspect.
        await store.record_attempts([outcome.message.id])  # type: ignore[union-attr]
    finally:
        await store.close()
    DONE.clear()
    config = RuntimeConfig(max_attempts=5, handler_timeout=None)
    async with running(url, Asker, Other, config=config, limit=10) as rt:
        await rt.ref(Other, "y").tell(Other.echo, "ordinary")  # while the suspect runs
        # Both should be handled well within a second; with the bug nothing moves.
        await until(lambda: len(DONE) == 3, timeout=3)
        assert DONE == ["ordinary", "from the suspect", "from the suspect"]
