"""The published benchmark suite: W1-W4 and their ceilings, each run in a fresh subprocess.

``python -m benchmarks`` (or ``python -m benchmarks.suite``) runs, ``--runs`` times, the
ceilings (raw SQLite and the durable floor at each durability, the asyncio actor) and every
selected workload at every selected durability, each in its own subprocess on its own
temporary SQLite file, so peak memory and GC state belong to one workload run. It prints
the medians as a table and writes them, with every run's raw figures and checks, as JSON.
``--one NAME`` is what each subprocess runs: one workload or ceiling, its outcome printed
as JSON, the last line on stdout (any lines before it are log output, kept with the run).

It exits 1 when a run failed or a check did not hold (a target that is missed does not fail
it: targets are what the runtime aims at, checks are what makes a figure worth reading).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import anyio

from benchmarks.ceilings import asyncio_ceiling, sqlite_ceiling
from benchmarks.core import quiet_logging
from benchmarks.floor import durable_floor
from benchmarks.report import ANY, Run, Summary, machine
from benchmarks.table import render
from benchmarks.tracing import TRACING, command, set_up
from benchmarks.workloads import WORKLOADS, Check, Outcome, Sizes
from persistence import DURABILITIES, Durability

__all__ = ["main", "run_one"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = Path(tempfile.gettempdir()) / "keyed-actors-benchmarks.json"
CEILINGS = ("sqlite", "asyncio", "floor")
LOG_TAIL = 4000  # characters of a run's other output (warnings, a traceback) kept


def run_one(name: str, durability: Durability, scale: float, tracing: str = "api") -> Outcome:
    """Run workload or ceiling ``name`` once in this process, on a fresh temporary file.

    Its counts include where the time went over the whole run (opening and closing the
    runtime too): ``wall_ms``, ``loop_cpu_ms`` (this thread, the event loop's),
    ``other_cpu_ms`` (every other thread: SQLite's), and ``gc_ms`` (the garbage collector).
    """
    quiet_logging()
    finish = set_up(tracing)
    sizes = Sizes.scaled(scale)
    with tempfile.TemporaryDirectory() as folder, CpuMeter() as cpu:
        if name == "sqlite":
            outcome = sqlite_ceiling(Path(folder), durability, sizes)
        elif name == "asyncio":
            outcome = anyio.run(asyncio_ceiling, sizes)
        elif name == "floor":
            outcome = anyio.run(durable_floor, Path(folder), durability, sizes)
        else:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            outcome = anyio.run(WORKLOADS[name][1], url, durability, sizes)
    outcome.counts.update(cpu.counts())
    if finish is not None:
        outcome.counts["spans_exported"] = finish()
    # Linux reports ru_maxrss in KiB: the peak of this process, which ran nothing else.
    outcome.figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return outcome


class CpuMeter:
    """Wall time, this thread's CPU time, other threads' CPU time and GC time, in a block."""

    def __init__(self) -> None:
        self._gc_started = 0.0
        self._gc = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc += time.perf_counter() - self._gc_started

    def __enter__(self) -> CpuMeter:
        gc.callbacks.append(self._on_gc)
        self._wall = time.perf_counter()
        self._thread = time.thread_time()
        self._process = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self._wall = time.perf_counter() - self._wall
        self._thread = time.thread_time() - self._thread
        self._process = time.process_time() - self._process
        gc.callbacks.remove(self._on_gc)

    def counts(self) -> dict[str, int]:
        return {
            "wall_ms": round(self._wall * 1000),
            "loop_cpu_ms": round(self._thread * 1000),
            "other_cpu_ms": round((self._process - self._thread) * 1000),
            "gc_ms": round(self._gc * 1000),
        }


def decode(text: str) -> Outcome:
    """The Outcome a subprocess printed as JSON."""
    data = json.loads(text)
    return Outcome(
        figures={k: float(v) for k, v in data["figures"].items()},
        checks=[Check(**check) for check in data["checks"]],
        counts={k: int(v) for k, v in data["counts"].items()},
    )


def spawn(
    name: str, durability: Durability | None, scale: float, timeout: float, tracing: str = "api"
) -> Run:
    """Run ``name`` at ``durability`` in a fresh subprocess; its outcome, or why it failed."""
    argv = [*command(tracing), "--one", name, "--scale", repr(scale), "--tracing", tracing]
    if durability is not None:
        argv += ["--durability", durability]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        return Run(seconds=timeout, error=f"no result within {timeout:g} s")
    seconds = time.perf_counter() - started
    *logged, last = done.stdout.splitlines() or [""]
    log = "\n".join(logged + done.stderr.splitlines())[-LOG_TAIL:]
    if done.returncode != 0:
        return Run(seconds=seconds, error=f"exit status {done.returncode}", log=log)
    try:
        return Run(seconds=seconds, outcome=decode(last), log=log)
    except (ValueError, KeyError, TypeError) as exc:
        return Run(seconds=seconds, error=f"unreadable outcome ({exc!r}): {last[:200]}", log=log)


def plan(
    workloads: Sequence[str], durabilities: Sequence[Durability]
) -> list[tuple[str, Durability | None]]:
    """One run's subprocesses, in order: the ceilings, then each workload at each durability.

    The asyncio ceiling stores nothing: its durability is None.
    """
    steps: list[tuple[str, Durability | None]] = [("sqlite", d) for d in durabilities]
    steps.append(("asyncio", None))
    steps += [("floor", d) for d in durabilities]
    steps += [(w, d) for w in workloads for d in durabilities]
    return steps


def run_suite(args: argparse.Namespace) -> Summary:
    """Every run of every step, with progress on stderr."""
    durabilities: list[Durability] = (
        list(DURABILITIES) if args.durability == "both" else [args.durability]
    )
    summary = Summary(
        runs=args.runs,
        scale=args.scale,
        sizes=Sizes.scaled(args.scale),
        machine=machine(),
        workloads=args.only,
        durabilities=durabilities,
        tracing=args.tracing,
    )
    steps = plan(args.only, durabilities)
    for n in range(1, args.runs + 1):
        for name, durability in steps:
            run = spawn(name, durability, args.scale, args.timeout, args.tracing)
            summary.add(name, durability or ANY, run)
            status = "ok" if run.verified else f"FAILED: {run.error or 'a check did not hold'}"
            print(
                f"run {n}/{args.runs} {name} {durability or ANY}: {run.seconds:.1f} s, {status}",
                file=sys.stderr,
                flush=True,
            )
    return summary


def workload_list(text: str) -> list[str]:
    """``--only``'s comma-separated workload ids, checked."""
    ids = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [i for i in ids if i not in WORKLOADS]
    if unknown or not ids:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(WORKLOADS)}; got {text!r}")
    return ids


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a positive ``kind``."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--runs", type=positive(int), default=5, help="runs per figure (median; 5)")
    p.add_argument("--durability", choices=[*DURABILITIES, "both"], default="both")
    # --one: what each subprocess runs (one workload or ceiling), printing its outcome as JSON
    p.add_argument("--scale", type=positive(float), default=1.0, help="size factor (1.0)")
    p.add_argument("--only", type=workload_list, default=list(WORKLOADS), help="e.g. W2,W3")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"(default {DEFAULT_JSON})")
    p.add_argument("--timeout", type=positive(float), default=1800.0, help="seconds per run")
    p.add_argument(
        "--tracing",
        choices=TRACING,
        default="api",
        help="OpenTelemetry: off (as if not installed), api (no SDK; default), sdk "
        "(spans made and batched, then dropped); see benchmarks/tracing.py",
    )
    p.add_argument("--one", choices=[*WORKLOADS, *CEILINGS], help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite (or, with ``--one``, one subprocess's part of it); the exit status."""
    args = parser().parse_args(argv)
    if args.one:
        durability: Durability = "full" if args.durability == "both" else args.durability
        print(json.dumps(asdict(run_one(args.one, durability, args.scale, args.tracing))))
        return 0
    summary = run_suite(args)
    print(render(summary))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary.to_json(), indent=2) + "\n", "utf-8")
    print(f"\nJSON written to {args.json}")
    return 0 if summary.all_verified else 1


if __name__ == "__main__":
    sys.exit(main())
