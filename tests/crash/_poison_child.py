"""A child process whose actor has a message that kills the process each time it runs.

``python -m tests.crash._poison_child DB send`` tells ``a``, ``slow``, ``poison`` and ``b`` to
one actor (``poison`` kills the process when handled); ``... DB serve`` just reopens the
runtime and, if it survives, prints the actor's state and the dead letters as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import anyio

from actors import Context, Entity, Runtime, RuntimeConfig, handler

MAX_ATTEMPTS = 3


class Victim(Entity):
    name = "victim"
    state: list[str]

    @handler
    async def eat(self, ctx: Context, food: str) -> None:
        if food == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        if food == "slow":
            await anyio.sleep(0.5)  # while the next ones are accepted
        self.state = [*(self.state or []), food]

    @handler
    async def eaten(self, ctx: Context) -> list[str]:
        return self.state or []


async def main(db: str, mode: str) -> None:
    config = RuntimeConfig(max_attempts=MAX_ATTEMPTS)
    async with Runtime.open(f"sqlite:///{db}", entities=[Victim], config=config) as rt:
        ref = rt.ref(Victim, "v")
        if mode == "send":
            for food in ("a", "slow", "poison", "b"):
                await ref.tell(Victim.eat, food)
        eaten = await ref.ask(Victim.eaten)
        dead = [
            {"id": d.id, "key": d.key, "payload": d.payload.decode(), "attempts": d.attempts}
            for d in await rt.dead_letters()
        ]
        print(json.dumps({"eaten": eaten, "dead": dead}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
