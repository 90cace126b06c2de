"""One node of a multi-node test: opens a runtime on a shared PostgreSQL schema and works.

Run as ``python -m tests.cluster._node --url URL --node n1 --lease 2 --mode MODE --out FILE
--stop FILE [...]``. The node opens ``Runtime.open(url, node_id=...)``, writes a ``ready``
record, waits for the ``--go`` file if one is named (all modes but ``zombie``, which
uses it differently), runs its mode's workload, writes ``done``, then keeps serving
(running its actors for the other nodes) until the ``--stop`` file exists, and closes
cleanly. Every record is a JSON line in ``--out``, flushed as it is written, so that what a
SIGKILLed node had been told was accepted is known. The runtime's logs go to stderr as JSON lines.

Modes:

- ``asks``: ``--count`` asks of ``Counter.add`` over ``--keys`` keys (chosen from
  ``--seed``), ``--concurrency`` at a time; a ``reply`` record per answered ask.
- ``tells``: tells of ``Counter.add`` with unique tokens, at ``--rate`` per second, until
  the ``--halt`` file exists (or ``--count`` were sent); an ``accepted`` record once each
  tell returned.
- ``starts``: ``--count`` concurrent starts of ``Job`` ``--key``; a ``start`` record per
  start, with ``created`` and the reply.
- ``zombie``: asks ``Counter.owner`` of ``--key``-0, -1, ... until one runs on this node
  (an ``owner`` record names it), then sends that key a slow ``add`` (``--slow`` seconds)
  and writes ``slow_sent``; once the ``--go`` file exists, asks ``add`` of that key and of
  ``--keys`` other counters, a ``reply`` record each.
- ``serve``: no workload.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import anyio
import structlog

from actors import Overloaded, Runtime, RuntimeConfig
from tests.cluster.entities import Add, Counter, Job

T = TypeVar("T")

ASK_TIMEOUT = timedelta(seconds=20)  # an ask takes well under a second: 20 s means lost
POLL = 0.02  # seconds between looks at a control file
BACKOFF = 0.005  # seconds to wait after Overloaded


def key_name(n: int) -> str:
    """The key of counter ``n``; the tests address counters by these names too."""
    return f"k{n:04d}"


class Records:
    """The ``--out`` file: one JSON object per line, flushed as written."""

    def __init__(self, stream: IO[str], node: str) -> None:
        self._stream = stream
        self._node = node

    def write(self, event: str, **fields: Any) -> None:
        fields.update(e=event, node=self._node, at=time.time())
        self._stream.write(json.dumps(fields) + "\n")
        self._stream.flush()


async def wait_for_file(path: Path) -> None:
    """Return once ``path`` exists."""
    target = anyio.Path(path)
    # Another process makes the file: there is no event to wait on, so poll.
    while not await target.exists():  # noqa: ASYNC110
        await anyio.sleep(POLL)


async def retrying(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, tried again after a short pause while the runtime answers Overloaded."""
    while True:
        try:
            return await call()
        except Overloaded:
            await anyio.sleep(BACKOFF)


async def in_parallel(
    jobs: Iterator[T], workers: int, work: Callable[[T], Awaitable[None]]
) -> None:
    """Run ``work(job)`` for every job, ``workers`` at a time (one shared iterator)."""

    async def worker() -> None:
        for job in jobs:  # shared: each job runs once
            await work(job)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)


async def asks(rt: Runtime, args: argparse.Namespace, out: Records) -> None:
    rng = random.Random(args.seed)
    plan = [(key_name(rng.randrange(args.keys)), f"{args.node}-{i}") for i in range(args.count)]

    async def ask(job: tuple[str, str]) -> None:
        key, token = job
        ref = rt.ref(Counter, key)
        try:
            reply = await retrying(lambda: ref.ask(Counter.add, Add(token), timeout=ASK_TIMEOUT))
        except Exception as exc:
            out.write("error", key=key, token=token, error=f"{type(exc).__name__}: {exc}")
        else:
            out.write("reply", key=key, token=token, reply=reply)

    await in_parallel(iter(plan), args.concurrency, ask)


async def tells(rt: Runtime, args: argparse.Namespace, out: Records) -> None:
    rng = random.Random(args.seed)
    halted = False

    async def watch() -> None:
        nonlocal halted
        await wait_for_file(args.halt)
        halted = True

    def jobs() -> Iterator[int]:
        for i in range(args.count):
            if halted:
                return
            yield i

    pause = args.concurrency / args.rate

    async def tell(i: int) -> None:
        key, token = key_name(rng.randrange(args.keys)), f"{args.node}-{i}"
        ref = rt.ref(Counter, key)
        try:
            await retrying(lambda: ref.tell(Counter.add, Add(token)))
        except Exception as exc:
            out.write("error", key=key, token=token, error=f"{type(exc).__name__}: {exc}")
        else:
            out.write("accepted", key=key, token=token)
        await anyio.sleep(pause)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await in_parallel(jobs(), args.concurrency, tell)
        tg.cancel_scope.cancel()


async def starts(rt: Runtime, args: argparse.Namespace, out: Records) -> None:
    async def start(i: int) -> None:
        try:
            handle = await retrying(lambda: rt.start(Job, args.key, "same"))
            reply = await handle.reply(timeout=ASK_TIMEOUT)
        except Exception as exc:
            out.write("error", i=i, error=f"{type(exc).__name__}: {exc}")
        else:
            out.write("start", i=i, created=handle.created, reply=reply)

    async with anyio.create_task_group() as tg:
        for i in range(args.count):
            tg.start_soon(start, i)


async def zombie(rt: Runtime, args: argparse.Namespace, out: Records) -> None:
    # The first key (of --key-0, --key-1, ...) that this node runs: placement is the
    # runtime's business, though a key first addressed from here usually lands here.
    for n in range(20):
        key = f"{args.key}-{n}"
        hot = rt.ref(Counter, key)
        node, epoch = await hot.ask(Counter.owner, timeout=ASK_TIMEOUT)
        if node == args.node:
            break
    out.write("owner", key=key, owner=node, epoch=epoch)

    async def slow() -> None:
        try:
            reply = await hot.ask(Counter.add, Add("z-slow", sleep=args.slow), timeout=ASK_TIMEOUT)
        except Exception as exc:
            out.write("slow_error", error=f"{type(exc).__name__}: {exc}")
        else:
            out.write("slow_reply", reply=reply)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        out.write("slow_sent", key=key)
        await wait_for_file(args.go)
        for n, other in enumerate([key, *(key_name(i) for i in range(args.keys))]):
            token = f"{args.node}-after-{n}"
            try:
                reply = await rt.ref(Counter, other).ask(
                    Counter.add, Add(token), timeout=ASK_TIMEOUT
                )
            except Exception as exc:
                out.write("error", key=other, token=token, error=f"{type(exc).__name__}: {exc}")
            else:
                out.write("reply", key=other, token=token, reply=reply)


async def serve(rt: Runtime, args: argparse.Namespace, out: Records) -> None:
    """No workload: only run this node's share of the actors."""


MODES: dict[str, Callable[[Runtime, argparse.Namespace, Records], Awaitable[None]]] = {
    "asks": asks,
    "tells": tells,
    "starts": starts,
    "zombie": zombie,
    "serve": serve,
}


async def main(args: argparse.Namespace) -> None:
    config = RuntimeConfig(lease=timedelta(seconds=args.lease))
    with args.out.open("a", encoding="utf-8") as stream, anyio.fail_after(args.limit):
        out = Records(stream, args.node)
        async with Runtime.open(
            args.url, entities=[Counter, Job], node_id=args.node, config=config
        ) as rt:
            out.write("ready", pid=os.getpid())
            if args.go is not None and args.mode != "zombie":
                await wait_for_file(args.go)
            started = time.perf_counter()
            try:
                await MODES[args.mode](rt, args, out)
            except Exception:
                out.write("failed", error=traceback.format_exc())
                raise
            out.write("done", seconds=time.perf_counter() - started)
            await wait_for_file(args.stop)
        out.write("closed")


def configure_logging() -> None:
    """The runtime's logs as JSON lines on stderr, INFO and up (tests look for events)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.cluster._node")
    p.add_argument("--url", required=True, help="postgresql://...?schema=S")
    p.add_argument("--node", required=True, help="this node's id")
    p.add_argument("--lease", type=float, default=2.0, help="lease, seconds")
    p.add_argument("--mode", choices=sorted(MODES), required=True)
    p.add_argument("--out", type=Path, required=True, help="JSON lines written here")
    p.add_argument("--stop", type=Path, required=True, help="close once this file exists")
    p.add_argument("--go", type=Path, help="start the workload (zombie: resume) on this file")
    p.add_argument("--halt", type=Path, help="tells: stop sending once this file exists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=100, help="asks, tells (most), starts")
    p.add_argument("--keys", type=int, default=10, help="counters used (zombie: extra keys)")
    p.add_argument("--concurrency", type=int, default=16, help="asks, tells: callers at once")
    p.add_argument("--rate", type=float, default=100.0, help="tells: most per second")
    p.add_argument("--key", default="hot", help="starts, zombie: the key")
    p.add_argument("--slow", type=float, default=4.0, help="zombie: the slow turn, seconds")
    p.add_argument("--limit", type=float, default=300.0, help="exit after this many seconds")
    return p


if __name__ == "__main__":
    arguments = parser().parse_args()
    if arguments.mode == "zombie" and arguments.go is None:
        parser().error(f"--mode {arguments.mode} needs --go")
    if arguments.mode == "tells" and arguments.halt is None:
        parser().error("--mode tells needs --halt")
    configure_logging()
    anyio.run(main, arguments)
