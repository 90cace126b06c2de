"""The benchmarks run (small sizes) and print every figure they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# line prefix: the figures that line must name (their values are timings, not checked)
LIFECYCLE = {
    "L1 memory, 500 actors": ["bytes_per_live_activation", "bytes_per_passivated_actor"],
    "L2 purge 2,000 expired": ["seconds", "actors_per_s", "batches", "batch_max_ms"],
    "L2 asks during the purge": ["p50_ms", "p99_ms", "max_ms"],
    "L2 asks, no purge": ["p50_ms", "p99_ms", "max_ms"],
    "L3 1,000 timers on 100 actors": ["timers_per_s"],
}
LATENCY = ["p50_ms", "p99_ms"]
REGISTRY = {
    "R0 build 20,000 actors": ["seconds", "actors_per_s"],
    "R1 customer =, 40 queries": LATENCY,
    "R2 amount range by amount": LATENCY,
    "R3 amount range by key": LATENCY,
    "R4 count customer =": LATENCY,
    "R5 count region =": LATENCY,
    "R6 second page (R2)": LATENCY,
    "R7 page 90% into a range": LATENCY,
    "R8 turns, attributes": [
        "turns_per_s_no_attributes",
        "turns_per_s_3_attributes",
        "cost_ratio",
    ],
}


def check_quick_run(module: str, expected: dict[str, list[str]]) -> None:
    """``python -m <module> --quick`` exits 0 and prints ``expected``'s lines, in order."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(expected), done.stdout
    for (prefix, figures), line in zip(expected.items(), lines, strict=True):
        assert line.startswith(prefix), f"expected {prefix!r} first, got {line!r}"
        assert "median of 1:" in line, line
        for figure in figures:
            assert f" {figure} " in line, f"{prefix} does not report {figure}: {line!r}"


def test_the_quick_lifecycle_benchmark_prints_each_figure() -> None:
    """``python -m benchmarks.lifecycle --quick`` exits 0 with one line per workload."""
    check_quick_run("benchmarks.lifecycle", LIFECYCLE)


def test_the_quick_registry_benchmark_prints_each_figure() -> None:
    """``python -m benchmarks.registry --quick`` exits 0 with one line per workload."""
    check_quick_run("benchmarks.registry", REGISTRY)
