"""Crash-test child: sends slow messages and prints each one once it is accepted.

Run as ``python -m tests.crash._child DB_PATH ROUND``; the parent kills it with SIGKILL.
A line ``accepted KEY TOKEN`` is printed only after ``tell`` returned (durably accepted).
"""

from __future__ import annotations

import sys

import anyio

from actors import Runtime
from tests.entities import Counter

KEYS = 5
PER_KEY = 100


async def main(path: str, round_: str) -> None:
    async with Runtime.open(f"sqlite:///{path}", entities=[Counter]) as rt:

        async def send(key: str) -> None:
            ref = rt.ref(Counter, key)
            for i in range(PER_KEY):
                token = f"{round_}-{i:04d}"
                await ref.tell(Counter.slow_record, token)
                print(f"accepted {key} {token}", flush=True)

        async with anyio.create_task_group() as tg:
            for k in range(KEYS):
                tg.start_soon(send, f"key-{k}")
        print("all-accepted", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
