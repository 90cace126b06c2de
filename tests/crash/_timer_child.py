"""Crash-test child for timers: schedules timers, reports firing, and waits to be killed.

Run as ``python -m tests.crash._timer_child DB_PATH``. Prints ``scheduled`` once every
timer is committed, then ``fired N`` as timers fire; the parent kills it with SIGKILL.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import timedelta

import anyio

from actors import Context, Entity, Runtime, handler

ACTORS = 100
TIMERS = 20
STEP = 0.015  # seconds between one actor's timers


def due_order(actor: int) -> list[str]:
    """The labels of ``actor``'s timers, in the order they are due."""
    return [f"{actor}-{j:02d}" for j in range(TIMERS)]


@dataclass
class Rings:
    labels: list[str] = field(default_factory=list)


class Bell(Entity):
    name = "bell"
    state: Rings

    @handler(start=True)
    async def arm(self, ctx: Context, actor: int) -> None:
        # Scheduled in reverse, so that firing order comes from due times, not from ids.
        for j in reversed(range(TIMERS)):
            after = timedelta(seconds=0.2 + j * STEP + actor * 0.0001)
            ctx.schedule(Bell.ring, f"{actor}-{j:02d}", after=after)

    @handler
    async def ring(self, ctx: Context, label: str) -> None:
        self.state.labels.append(label)

    @handler
    async def rings(self, ctx: Context) -> list[str]:
        return self.state.labels


async def main(path: str) -> None:
    async with Runtime.open(f"sqlite:///{path}", entities=[Bell]) as rt:
        async with anyio.create_task_group() as tg:
            for i in range(ACTORS):

                async def arm(i: int = i) -> None:
                    await (await rt.start(Bell, f"bell-{i}", i)).reply()

                tg.start_soon(arm)
        print("scheduled", flush=True)
        while True:
            print(f"fired {rt.statistics().timers_fired}", flush=True)
            await anyio.sleep(0.01)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
