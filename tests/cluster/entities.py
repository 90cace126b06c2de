"""Entities the multi-node tests run on several nodes at once.

A ``Counter`` turn appends a record of itself (node, lease epoch, token, start and end
times) to its state, so that a test reading the state afterwards can tell which node ran
each turn, on which lease, and whether turns of two nodes ever overlapped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio

from actors import Context, Entity, handler

Turn = tuple[str, int, str, float, float]
"""One turn of a counter: ``(node_id, epoch, token, started, ended)``, times from time.time()."""


@dataclass
class Add:
    """Add one to a counter; ``token`` names this request in the counter's log."""

    token: str
    sleep: float = 0.0  # seconds the turn waits before it adds (a slow turn)


@dataclass
class CounterState:
    count: int = 0
    log: list[Turn] = field(default_factory=list)


class Counter(Entity):
    """A counter that logs every turn it runs: which node, which lease epoch, when."""

    name = "counter"
    state: CounterState

    @handler
    async def add(self, ctx: Context, req: Add) -> int:
        started = time.time()
        if req.sleep > 0:
            await anyio.sleep(req.sleep)
        self.state.count += 1
        node = ctx.node_id if ctx.node_id is not None else "?"
        epoch = ctx.epoch if ctx.epoch is not None else -1
        self.state.log.append((node, epoch, req.token, started, time.time()))
        return self.state.count

    @handler
    async def snapshot(self, ctx: Context) -> CounterState:
        """The whole state, log included (changes nothing)."""
        return self.state

    @handler
    async def owner(self, ctx: Context) -> tuple[str, int]:
        """The node running this turn and its lease epoch: the actor's owner right now."""
        return (ctx.node_id or "?", ctx.epoch if ctx.epoch is not None else -1)


class Job(Entity):
    """Completes on its start, with a result naming its key.

    A duplicate start (the default policy adopts) gets that result: while the start runs, once
    it completes; afterwards, from the store.
    """

    name = "job"
    result: str

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> str:
        ctx.complete(f"{ctx.key}:{label}")
        return f"{ctx.key}:{label}"
