"""``python -m benchmarks.multinode``: asks per second on one node, then spread over three.

The same work, ``--messages`` asks of ``Tally.add`` over ``--keys`` actors, is sent by one
node process, then by ``--nodes`` node processes (each sending its share, ask ``i`` going
to actor ``i % keys``, so most asks of a node go to actors another node runs). All nodes
share one PostgreSQL schema, created for the run and dropped after it. Each node is a
subprocess (``--node NAME`` is what it runs): it opens its runtime, says it is ready, waits
for the go file, runs its share from ``CALLERS`` tasks, and writes its outcome as JSON;
the rate is the asks of all nodes over the time from the first node's start to the last
node's end. A run counts only if its checks hold: no ask failed, and every actor's count,
read afterwards through one more node, is exactly the asks sent to it.

It prints the median of ``--runs`` runs (default 3) of each layout and their ratio, writes
every run's figures and checks as JSON (``--json``), and exits 1 when a run failed or a
check did not hold. The server is ``$KEYED_ACTORS_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``) or ``--url``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from actors import Overloaded, Runtime
from benchmarks.core import CALLERS, quiet_logging, report, run_callers
from benchmarks.entities import Tally
from benchmarks.report import machine
from benchmarks.workloads import Check, Outcome

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "KEYED_ACTORS_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_JSON = Path(tempfile.gettempdir()) / "keyed-actors-multinode.json"
POLL = 0.02  # seconds between looks at the control and outcome files
BACKOFF = 0.001  # seconds a caller waits after Overloaded
LOG_TAIL = 4000  # characters of a failed node's output kept in the JSON


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` as its ``schema`` query parameter."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


async def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def key_name(n: int) -> str:
    return f"t{n:05d}"


# -- one node (a subprocess) --------------------------------------------------------------


async def wait_for_file(path: Path) -> None:
    target = anyio.Path(path)
    # Another process makes the file: there is no event to wait on, so poll.
    while not await target.exists():  # noqa: ASYNC110
        await anyio.sleep(POLL)


async def node(args: argparse.Namespace) -> None:
    """Open a runtime as node ``args.node``, run asks ``index, index + nodes, ...``, report."""
    jobs = range(args.index, args.messages, args.nodes)
    errors: list[str] = []
    overloaded = 0
    async with Runtime.open(args.url, entities=[Tally], node_id=args.node) as rt:
        await anyio.Path(args.ready).touch()

        async def ask(i: int) -> None:
            nonlocal overloaded
            ref = rt.ref(Tally, key_name(i % args.keys))
            while True:
                try:
                    await ref.ask(Tally.add, 1)
                except Overloaded:
                    overloaded += 1
                    await anyio.sleep(BACKOFF)
                    continue
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return

        await wait_for_file(args.go)
        started = time.time()
        await run_callers(len(jobs), lambda n: ask(jobs[n]))
        ended = time.time()
        outcome = {
            "node": args.node,
            "sent": len(jobs),
            "started": started,
            "ended": ended,
            "errors": errors[:10],
            "error_count": len(errors),
            "overloaded_retries": overloaded,
        }
        await anyio.Path(args.outcome).write_text(json.dumps(outcome), "utf-8")
        await wait_for_file(args.stop)


# -- the parent: runs, checks, figures ----------------------------------------------------


async def read_counts(url: str, keys: int) -> list[int]:
    """Every actor's count, read through one more node."""
    counts = [0] * keys
    limiter = anyio.CapacityLimiter(CALLERS)
    async with Runtime.open(url, entities=[Tally], node_id="bench-check") as rt:

        async def read(k: int) -> None:
            async with limiter:
                counts[k] = await rt.ref(Tally, key_name(k)).ask(Tally.get)

        async with anyio.create_task_group() as tg:
            for k in range(keys):
                tg.start_soon(read, k)
    return counts


def expected_counts(messages: int, keys: int) -> list[int]:
    return [len(range(k, messages, keys)) for k in range(keys)]


def wait_files(
    paths: Sequence[Path], processes: Sequence[subprocess.Popen[bytes]], limit: float
) -> None:
    """Wait until every path exists; raise if a process ends first or time runs out."""
    deadline = time.monotonic() + limit
    while not all(path.exists() for path in paths):
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a node exited early with status {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes not done within {limit:g} s")
        time.sleep(POLL)


def run_layout(args: argparse.Namespace, nodes: int, folder: Path) -> dict[str, Any]:
    """One run of ``nodes`` node processes on a fresh schema: its outcome, or why it failed."""
    schema = f"bench_multinode_{uuid.uuid4().hex[:12]}"
    url = with_schema(args.url, schema)
    go, stop = folder / "go", folder / "stop"
    names = [f"bench-n{i + 1}" for i in range(nodes)]
    processes: list[subprocess.Popen[bytes]] = []
    logs = [folder / f"{name}.log" for name in names]
    outcome = Outcome()
    started = time.perf_counter()
    try:
        for index, (name, log) in enumerate(zip(names, logs, strict=True)):
            command = [sys.executable, "-m", "benchmarks.multinode", "--node", name]
            command += ["--url", url, "--index", str(index), "--nodes", str(nodes)]
            command += ["--messages", str(args.messages), "--keys", str(args.keys)]
            command += ["--folder", str(folder)]
            with log.open("wb") as stream:
                processes.append(
                    subprocess.Popen(command, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT)
                )
        wait_files([folder / f"{name}.ready" for name in names], processes, 120)
        go.touch()
        reports = [folder / f"{name}.json" for name in names]
        wait_files(reports, processes, args.timeout)
        outcomes = [json.loads(path.read_text("utf-8")) for path in reports]
        counts = anyio.run(read_counts, url, args.keys)
        stop.touch()
        for process in processes:
            process.wait(timeout=60)
        first = min(o["started"] for o in outcomes)
        last = max(o["ended"] for o in outcomes)
        outcome.figures.update(msgs_per_s=args.messages / (last - first), seconds=last - first)
        expected = expected_counts(args.messages, args.keys)
        outcome.checks += [
            Check(
                what="asks answered",
                expected=args.messages,
                observed=sum(o["sent"] - o["error_count"] for o in outcomes),
            ),
            Check(
                what="actors with the exact count",
                expected=args.keys,
                observed=sum(c == e for c, e in zip(counts, expected, strict=True)),
            ),
            Check(what="handler runs", expected=args.messages, observed=sum(counts)),
            Check(
                what="nodes closed cleanly",
                expected=nodes,
                observed=sum(p.returncode == 0 for p in processes),
            ),
        ]
        outcome.counts["overloaded_retries"] = sum(o["overloaded_retries"] for o in outcomes)
        errors = [e for o in outcomes for e in o["errors"]]
        return {
            "seconds": time.perf_counter() - started,
            "outcome": asdict(outcome),
            "errors": errors,
        }
    except Exception as exc:
        tail = "\n".join(
            log.read_text("utf-8", "replace")[-LOG_TAIL:] for log in logs if log.exists()
        )
        return {
            "seconds": time.perf_counter() - started,
            "error": f"{type(exc).__name__}: {exc}",
            "log": tail,
        }
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        anyio.run(drop_schema, args.url, schema)


def verified(run: dict[str, Any]) -> bool:
    return "outcome" in run and all(
        check["expected"] == check["observed"] for check in run["outcome"]["checks"]
    )


def label(nodes: int, args: argparse.Namespace) -> str:
    return f"{nodes} node{'s' if nodes > 1 else ''}, {args.messages:,} asks"


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every run of each layout, with progress on stderr; the summary for the JSON."""
    layouts = [1, args.nodes]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in layouts}
    for r in range(1, args.runs + 1):
        for nodes in layouts:
            with tempfile.TemporaryDirectory() as folder:
                run = run_layout(args, nodes, Path(folder))
            runs[nodes].append(run)
            status = (
                "ok" if verified(run) else f"FAILED: {run.get('error', 'a check did not hold')}"
            )
            print(
                f"run {r}/{args.runs} {label(nodes, args)}: {run['seconds']:.1f} s, {status}",
                file=sys.stderr,
                flush=True,
            )
    medians: dict[int, float] = {}
    counted: dict[int, int] = {}
    for nodes in layouts:
        # Only runs whose checks held count: a figure is worth reading only then.
        rates = [run["outcome"]["figures"]["msgs_per_s"] for run in runs[nodes] if verified(run)]
        counted[nodes] = len(rates)
        if rates:
            medians[nodes] = statistics.median(rates)
    return {
        "machine": machine(),
        "messages": args.messages,
        "keys": args.keys,
        "callers_per_node": CALLERS,
        "runs": {str(nodes): results for nodes, results in runs.items()},
        "median_msgs_per_s": {str(nodes): rate for nodes, rate in medians.items()},
        "verified_runs": {str(nodes): n for nodes, n in counted.items()},
        "ratio": medians[args.nodes] / medians[1] if len(medians) == len(layouts) else None,
        "all_verified": all(verified(run) for results in runs.values() for run in results),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.multinode",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--runs", type=int, default=3, help="runs of each layout (median; 3)")
    p.add_argument("--messages", type=int, default=20_000, help="asks per run (20,000)")
    p.add_argument("--keys", type=int, default=1000, help="actors the asks go to (1,000)")
    p.add_argument("--nodes", type=int, default=3, help="nodes of the spread layout (3)")
    p.add_argument("--url", default=os.environ.get(ENV_VAR) or DEFAULT_URL, help="PostgreSQL")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"(default {DEFAULT_JSON})")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    p.add_argument("--quick", action="store_true", help="2,000 asks over 100 actors, 1 run")
    # What each node subprocess runs:
    p.add_argument("--node", help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--node``, one node of a run); the exit status."""
    args = parser().parse_args(argv)
    quiet_logging()
    if args.node:
        folder: Path = args.folder
        args.ready, args.outcome = folder / f"{args.node}.ready", folder / f"{args.node}.json"
        args.go, args.stop = folder / "go", folder / "stop"
        anyio.run(node, args)
        return 0
    if args.quick:
        args.messages, args.keys, args.runs = 2000, 100, 1
    if min(args.runs, args.messages, args.keys) < 1 or args.nodes < 2:
        parser().error("--runs, --messages and --keys must be positive, --nodes at least 2")
    summary = run_all(args)
    for nodes in (1, args.nodes):
        rate = summary["median_msgs_per_s"].get(str(nodes))
        counted = summary["verified_runs"][str(nodes)]
        name = f"{label(nodes, args)} over {args.keys:,} actors"
        if rate is None:
            print(f"{name}: no verified run of {args.runs}")
            continue
        report(name, counted, {"msgs_per_s": rate})
        if counted < args.runs:
            print(f"  ({args.runs - counted} of {args.runs} runs failed a check: see the JSON)")
    if summary["ratio"] is not None:
        print(f"{args.nodes} nodes / 1 node: {summary['ratio']:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(f"\nJSON written to {args.json}")
    return 0 if summary["all_verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
