"""The lifecycle benchmark runs (small sizes) and prints every figure it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# line prefix: the figures that line must name (their values are timings, not checked)
EXPECTED = {
    "L1 memory, 500 actors": ["bytes_per_live_activation", "bytes_per_passivated_actor"],
    "L2 purge 2,000 expired": ["seconds", "actors_per_s", "batches", "batch_max_ms"],
    "L2 asks during the purge": ["p50_ms", "p99_ms", "max_ms"],
    "L2 asks, no purge": ["p50_ms", "p99_ms", "max_ms"],
    "L3 1,000 timers on 100 actors": ["timers_per_s"],
}


def test_the_quick_lifecycle_benchmark_prints_each_figure() -> None:
    """``python -m benchmarks.lifecycle --quick`` exits 0 with one line per workload."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.lifecycle", "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(EXPECTED), done.stdout
    for (prefix, figures), line in zip(EXPECTED.items(), lines, strict=True):
        assert line.startswith(prefix), f"expected {prefix!r} first, got {line!r}"
        assert "median of 1:" in line, line
        for figure in figures:
            assert f" {figure} " in line, f"{prefix} does not report {figure}: {line!r}"
