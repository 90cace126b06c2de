"""The benchmarks run (small sizes) and print every figure they promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.suite import spawn
from tests.postgres import require_server

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


SUITE_FIGURES = {
    "W1": ["requests_per_s", "late_duplicates_per_s", "peak_rss_mb"],
    "W2": ["messages_per_s", "peak_rss_mb"],
    "W3": ["p50_ms", "p99_ms", "peak_rss_mb"],
    "W4": ["tells_per_s", "accepted_per_s", "peak_rss_mb"],
}
CEILING_FIGURES = {
    "sqlite": ["batched_rows_per_s", "commits_per_s", "commit_p50_ms"],
    "asyncio": ["round_trips_per_s", "round_trip_p50_ms"],
    "floor": ["messages_per_s", "ask_p50_ms", "tells_per_s"],
}
DURABILITIES = ["full", "process"]


def check_verified_series(series: dict[str, Any], figures: list[str]) -> None:  # JSON data
    """``series`` (one workload or ceiling at one durability) has positive ``figures``."""
    for figure in figures:
        assert series["figures"][figure] > 0, (figure, series["figures"])
    assert series["verified"] is True
    [run] = series["runs"]
    assert run["error"] is None
    assert all(check["holds"] for check in run["checks"]), run["checks"]


def test_the_suite_runs_every_workload_at_both_durabilities_and_verifies_them(
    tmp_path: Path,
) -> None:
    """``python -m benchmarks`` at a tiny scale: every figure, ratio and check, in its JSON."""
    results = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--scale", "0.005", "--runs", "1"]
    done = subprocess.run(
        [*command, "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verification: every check of all 13 runs held" in done.stdout
    data = json.loads(results.read_text("utf-8"))
    assert data["verified"] is True
    assert data["settings"]["durabilities"] == DURABILITIES
    for name, figures in SUITE_FIGURES.items():
        for durability in DURABILITIES:
            series = data["workloads"][name][durability]
            check_verified_series(series, figures)
            assert series["runs"][0]["checks"], f"{name} {durability} verified nothing"
            assert all(ratio > 0 for ratio in series["ratios"].values()), series["ratios"]
            assert [t["median"] > 0 for t in series["targets"]] == [True, True]
            counts = series["runs"][0]["counts"]
            # Where the run's time went: the loop's thread did work, within the wall time.
            assert 0 < counts["loop_cpu_ms"] <= counts["wall_ms"] + 5, counts
            assert counts["other_cpu_ms"] >= 0, counts
            assert counts["gc_ms"] >= 0, counts
    assert "where each run's time went" in done.stdout
    for durability in DURABILITIES:
        for ceiling in ("sqlite", "floor"):
            series = data["ceilings"][ceiling][durability]
            check_verified_series(series, CEILING_FIGURES[ceiling])
    # The floor checks serialized replies, in order, and what the store holds at the end.
    assert len(data["ceilings"]["floor"]["full"]["runs"][0]["checks"]) == 4
    check_verified_series(data["ceilings"]["asyncio"], CEILING_FIGURES["asyncio"])


@pytest.mark.parametrize("tracing", ["off", "sdk"])
def test_a_suite_run_with_tracing_off_or_sdk_is_verified(tracing: str) -> None:
    """``--tracing``: ``off`` really has no OpenTelemetry, ``sdk`` really exports spans."""
    run = spawn("W3", "process", 0.005, 120, tracing)
    assert run.verified, run.error or run.log
    assert run.outcome is not None
    # W3 at this scale: 26 asks (one untimed), each an admission, a turn and two commits.
    expected = {"off": None, "sdk": 26 * 4}[tracing]
    assert run.outcome.counts.get("spans_exported") == expected


def test_the_quick_multinode_benchmark_verifies_and_prints_both_layouts(tmp_path: Path) -> None:
    """``python -m benchmarks.multinode --quick``: 1 node and 3, each run checked, and a ratio."""
    require_server()
    report = tmp_path / "multinode.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.multinode", "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1 node, 2,000 asks over 100 actors median of 1: msgs_per_s ")
    assert lines[1].startswith("3 nodes, 2,000 asks over 100 actors median of 1: msgs_per_s ")
    assert lines[2].startswith("3 nodes / 1 node: ")
    figures: dict[str, Any] = json.loads(report.read_text())
    assert figures["all_verified"] is True
    assert set(figures["median_msgs_per_s"]) == {"1", "3"}
