"""Recovery of stored mailboxes while drivers of already-recovered actors run and commit.

The state left by a stopped process is written straight into the store: actor "z" has one
pending ``own`` message, the oldest in the store; actor "a" has one pending ``forward("z")``;
actors m000..m019 have one pending ``noop`` each, so recovery takes a while. z's forwarded
handler is slow (50 ms), so the forwarded message is still pending when recovery reaches z.
z must handle its own (older) message first and the forwarded message exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec

from actors import Context, Entity, Runtime, handler
from persistence import ActorId, ActorInit, Enqueue, MessageKind, NewMessage, open_store


@dataclass
class S:
    log: list[str] = field(default_factory=list)


class Node(Entity):
    """Logs the tokens it is sent; ``forward`` sends one to another node."""

    name = "node"
    state: S

    @handler
    async def forward(self, ctx: Context, target: str) -> None:
        ctx.tell(ctx.ref(Node, target), Node.slow, f"from {ctx.key}")

    @handler
    async def slow(self, ctx: Context, token: str) -> None:
        await anyio.sleep(0.05)
        self.state.log.append(token)

    @handler
    async def own(self, ctx: Context, token: str) -> None:
        self.state.log.append(token)

    @handler
    async def noop(self, ctx: Context, token: str) -> None:
        await anyio.sleep(0.01)

    @handler
    async def log(self, ctx: Context) -> list[str]:
        return self.state.log


def enq(key: str, h: str, payload: object) -> Enqueue:
    """A tell of handler ``h`` to node ``key``, creating the node if needed."""
    return Enqueue(
        actor=ActorId(entity="node", key=key),
        message=NewMessage(kind=MessageKind.TELL, handler=h, payload=msgspec.json.encode(payload)),
        init=ActorInit(retention=3600.0),
    )


async def test_recovery_handles_each_stored_message_once_in_mailbox_order(tmp_path: Path) -> None:
    """G2: recovered and newly sent messages are each handled once, in mailbox order."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with anyio.fail_after(10):
        store = await open_store(url)
        items = [enq("z", "own", "z-own"), enq("a", "forward", "z")]
        items += [enq(f"m{i:03d}", "noop", "x") for i in range(20)]
        await store.write(items, now=time.time())
        await store.close()

    with anyio.fail_after(30):
        async with Runtime.open(url, entities=[Node]) as rt:
            await anyio.sleep(1.0)
            log = await rt.ref(Node, "z").ask(Node.log)
    assert log == ["z-own", "from a"]
