"""The suite's results: medians, ratios to the ceilings, targets, the table and the JSON.

A figure's median is taken over the runs that finished; a ratio is taken per run (a workload
run over the same run's ceiling, measured minutes apart on the same machine) and its median
printed. Targets are what issue 7 asks of the runtime; checks are what each run verified.
This module only computes and formats: it runs nothing.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.workloads import WORKLOADS, Outcome, Sizes
from persistence import Durability

__all__ = [
    "ANY",
    "CEILING_FIGURES",
    "RATIOS",
    "SHOWN",
    "TARGETS",
    "Ratio",
    "Run",
    "Summary",
    "Target",
    "machine",
]

ANY = "-"
"""The durability a ceiling that stores nothing (asyncio) is filed under."""
DURABLE_CEILINGS = ("sqlite", "floor")
"""The ceilings that store, each run at every durability the workloads run at."""

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One subprocess: its outcome, or why it has none."""

    seconds: float
    outcome: Outcome | None = None
    error: str | None = None
    log: str = ""  # what else it printed: the runtime's warnings, a traceback

    @property
    def verified(self) -> bool:
        """It finished, and every check it made held."""
        return self.outcome is not None and all(c.holds for c in self.outcome.checks)


OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda value, bound: value >= bound,
    "<=": lambda value, bound: value <= bound,
    "<": lambda value, bound: value < bound,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A bound one figure (or ratio) of a workload should meet."""

    figure: str
    op: str  # a key of OPERATORS
    bound: float

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the bound."""
        return OPERATORS[self.op](value, self.bound)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ratio:
    """A workload figure read against a ceiling figure of the same run."""

    figure: str
    ceiling: str  # "sqlite" or "floor" (at the workload's durability), or "asyncio"
    of: str

    @property
    def name(self) -> str:
        """The ratio's name in the results: ``<figure>/<ceiling>.<of>``."""
        return f"{self.figure}/{self.ceiling}.{self.of}"


RATIOS: dict[str, list[Ratio]] = {
    "W1": [
        Ratio(figure="requests_per_s", ceiling="sqlite", of="batched_rows_per_s"),
        Ratio(figure="late_duplicates_per_s", ceiling="sqlite", of="batched_rows_per_s"),
    ],
    "W2": [
        Ratio(figure="messages_per_s", ceiling="asyncio", of="round_trips_per_s"),
        Ratio(figure="messages_per_s", ceiling="floor", of="messages_per_s"),
    ],
    "W3": [
        Ratio(figure="p50_ms", ceiling="sqlite", of="commit_p50_ms"),
        Ratio(figure="p50_ms", ceiling="floor", of="ask_p50_ms"),
    ],
    "W4": [
        Ratio(figure="tells_per_s", ceiling="sqlite", of="batched_rows_per_s"),
        Ratio(figure="tells_per_s", ceiling="floor", of="tells_per_s"),
    ],
}
TARGETS: dict[str, list[Target]] = {
    "W1": [
        Target(figure="requests_per_s", op=">=", bound=30_000),
        Target(figure="late_duplicates_per_s", op=">=", bound=100_000),
    ],
    "W2": [
        Target(figure="messages_per_s", op=">=", bound=25_000),
        Target(figure=RATIOS["W2"][0].name, op=">=", bound=0.15),
    ],
    "W3": [Target(figure="p50_ms", op="<=", bound=0.5), Target(figure="p99_ms", op="<=", bound=3)],
    "W4": [
        Target(figure="tells_per_s", op=">=", bound=20_000),
        Target(figure="peak_rss_mb", op="<", bound=300),
    ],
}
SHOWN: dict[str, list[str]] = {  # the figures (and ratios) the table prints, in order
    "W1": ["requests_per_s", "late_duplicates_per_s"],
    "W2": ["messages_per_s", RATIOS["W2"][0].name],
    "W3": ["p50_ms", "p99_ms"],
    "W4": ["tells_per_s", "accepted_per_s", "peak_rss_mb"],
}
CEILING_FIGURES: dict[str, list[str]] = {  # the figures the table prints of each ceiling
    "sqlite": ["batched_rows_per_s", "commits_per_s", "commit_p50_ms"],
    "asyncio": ["round_trips_per_s", "round_trip_p50_ms"],
    "floor": ["messages_per_s", "ask_p50_ms", "tells_per_s"],
}


def git(*args: str) -> str | None:
    """The output of a read-only git command in the repository, or None if it failed."""
    try:
        return subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
            timeout=10,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # never write the index
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, str | int | bool | None]:
    """Where the suite ran: CPUs, platform, Python, SQLite, and the code it measured."""
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": None if changes is None else bool(changes),
    }


def median_of(values: Sequence[float]) -> float | None:
    """The median of ``values``, or None when there are none."""
    return statistics.median(values) if values else None


@dataclass(slots=True, kw_only=True)
class Summary:
    """Every run of a suite invocation, by (workload or ceiling, durability)."""

    runs: int
    scale: float
    sizes: Sizes
    machine: dict[str, str | int | bool | None]
    workloads: list[str]
    durabilities: list[Durability]
    tracing: str = "api"  # benchmarks.tracing: off, api or sdk
    series: dict[tuple[str, str], list[Run]] = field(default_factory=dict)

    def add(self, name: str, durability: str, run: Run) -> None:
        """File ``run`` under its workload or ceiling and durability, in run order."""
        self.series.setdefault((name, durability), []).append(run)

    def figures(self, name: str, durability: str) -> dict[str, float]:
        """The median of each figure over the runs that finished."""
        outcomes = [r.outcome for r in self.series.get((name, durability), []) if r.outcome]
        names = {figure for outcome in outcomes for figure in outcome.figures}
        return {
            figure: statistics.median(o.figures[figure] for o in outcomes if figure in o.figures)
            for figure in sorted(names)
        }

    def ratios(self, name: str, durability: str) -> dict[str, float | None]:
        """The median over runs of each of the workload's ratios to its ceilings."""
        runs = self.series.get((name, durability), [])
        medians: dict[str, float | None] = {}
        for ratio in RATIOS[name]:
            ceiling_runs = self.series.get(
                (ratio.ceiling, durability if ratio.ceiling in DURABLE_CEILINGS else ANY), []
            )
            values = [
                run.outcome.figures[ratio.figure] / ceiling.outcome.figures[ratio.of]
                for run, ceiling in zip(runs, ceiling_runs, strict=False)
                if run.outcome and ceiling.outcome
            ]
            medians[ratio.name] = median_of(values)
        return medians

    def verified(self, name: str, durability: str) -> bool:
        """Whether every run of ``name`` at ``durability`` finished with its checks held."""
        runs = self.series.get((name, durability), [])
        return bool(runs) and all(run.verified for run in runs)

    def values(self, name: str, durability: str) -> dict[str, float | None]:
        """The workload's figures and ratios to its ceilings, by name: their medians."""
        return {**self.figures(name, durability), **self.ratios(name, durability)}

    def targets(self, name: str, durability: str) -> list[tuple[Target, float | None]]:
        """Each of the workload's targets with the median it is held against."""
        values = self.values(name, durability)
        return [(target, values.get(target.figure)) for target in TARGETS[name]]

    @property
    def all_verified(self) -> bool:
        """Whether every run of every workload and ceiling finished with its checks held."""
        return all(run.verified for runs in self.series.values() for run in runs)

    def to_json(self) -> dict[str, object]:
        """The results as JSON-ready data: medians, ratios, targets and every run."""
        return {
            "machine": self.machine,
            "settings": {
                "runs": self.runs,
                "scale": self.scale,
                "sizes": asdict(self.sizes),
                "workloads": self.workloads,
                "durabilities": self.durabilities,
                "tracing": self.tracing,
            },
            "workloads": {
                name: {"title": WORKLOADS[name][0]}
                | {d: self.workload_json(name, d) for d in self.durabilities}
                for name in self.workloads
            },
            "ceilings": {
                **{
                    name: {d: self.series_json(name, d) for d in self.durabilities}
                    for name in DURABLE_CEILINGS
                },
                "asyncio": self.series_json("asyncio", ANY),
            },
            "verified": self.all_verified,
        }

    def workload_json(self, name: str, durability: str) -> dict[str, object]:
        """One workload at one durability, as JSON-ready data."""
        return self.series_json(name, durability) | {
            "ratios": self.ratios(name, durability),
            "targets": [
                asdict(target)
                | {"median": value, "holds": value is not None and target.holds(value)}
                for target, value in self.targets(name, durability)
            ],
        }

    def series_json(self, name: str, durability: str) -> dict[str, object]:
        """The medians, verification and runs of one workload or ceiling at one durability."""
        return {
            "figures": self.figures(name, durability),
            "verified": self.verified(name, durability),
            "runs": [run_json(run) for run in self.series.get((name, durability), [])],
        }


def run_json(run: Run) -> dict[str, object]:
    """One run as JSON-ready data, each check with whether it held."""
    data: dict[str, object] = {"seconds": run.seconds, "error": run.error, "log": run.log}
    if run.outcome is not None:
        data |= {
            "figures": run.outcome.figures,
            "checks": [asdict(check) | {"holds": check.holds} for check in run.outcome.checks],
            "counts": run.outcome.counts,
        }
    return data
