"""A child process whose actors have a message that kills the process each time it runs.

``python -m tests.crash._poison_child DB MODE`` opens a runtime on ``DB``, sends what ``MODE``
says, then (if it survives) prints every actor's state and the dead letters as JSON:

- ``send``: ``a``, ``slow``, ``poison``, ``b`` to actor ``v`` (``poison`` kills the process
  when handled; ``slow`` gives the next ones time to be accepted);
- ``crowd``: ``slow`` to each of ``CROWD`` actors, then ``poison`` to actor ``p``: every
  restart kills the process while the crowd's turns are under way;
- ``serve``: nothing; the restart alone recovers what was stored.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import anyio

from actors import Context, Entity, Runtime, RuntimeConfig, handler

MAX_ATTEMPTS = 3
CROWD = [f"c{i}" for i in range(8)]
KEYS = ["v", "p", *CROWD]


class Victim(Entity):
    name = "victim"
    state: list[str]

    @handler
    async def eat(self, ctx: Context, food: str) -> None:
        if food == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        if food == "slow":
            await anyio.sleep(0.3)
        self.state = [*(self.state or []), food]

    @handler
    async def eaten(self, ctx: Context) -> list[str]:
        return self.state or []


async def main(db: str, mode: str) -> None:
    config = RuntimeConfig(max_attempts=MAX_ATTEMPTS)
    async with Runtime.open(f"sqlite:///{db}", entities=[Victim], config=config) as rt:
        if mode == "send":
            for food in ("a", "slow", "poison", "b"):
                await rt.ref(Victim, "v").tell(Victim.eat, food)
        elif mode == "crowd":
            for key in CROWD:
                await rt.ref(Victim, key).tell(Victim.eat, "slow")
            await rt.ref(Victim, "p").tell(Victim.eat, "poison")
        eaten = {key: await rt.ref(Victim, key).ask(Victim.eaten) for key in KEYS}
        dead = [
            {"id": d.id, "key": d.key, "payload": d.payload.decode(), "attempts": d.attempts}
            for d in await rt.dead_letters()
        ]
        print(json.dumps({"eaten": eaten, "dead": dead}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
