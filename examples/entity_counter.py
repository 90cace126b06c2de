"""Entity pattern: one long-lived actor per key, serialized without locks.

Two thousand concurrent increments over ten counters: each counter ends at exactly 200 and
every reply is distinct, because each actor handles one message at a time. Run it with::

    python examples/entity_counter.py
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from actors import Context, Entity, Runtime, handler


@dataclass
class Tally:
    value: int = 0


class Counter(Entity):
    name = "counter"
    state: Tally

    @handler
    async def add(self, ctx: Context, amount: int) -> int:
        self.state.value += amount
        return self.state.value

    @handler
    async def get(self, ctx: Context) -> int:
        return self.state.value


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    replies: defaultdict[str, list[int]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'counters.db'}"
        async with Runtime.open(url, entities=[Counter]) as rt:

            async def increment(key: str) -> None:
                replies[key].append(await rt.ref(Counter, key).ask(Counter.add, 1))

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(2000):
                    tg.start_soon(increment, f"counter-{i % 10}")
            elapsed = time.perf_counter() - started
            for key in sorted(replies):
                final = await rt.ref(Counter, key).ask(Counter.get)
                distinct = sorted(replies[key]) == list(range(1, 201))
                print(f"{key}: {final} (replies 1..200, each once: {distinct})")
            stats = rt.statistics()
            print(
                f"2000 asks in {elapsed:.2f} s; {stats.commits} commits carried "
                f"{stats.committed_items} writes (group commit)"
            )


if __name__ == "__main__":
    anyio.run(main)
