"""The suite's printed report: the workloads against their targets, the ceilings, the ratios.

Formatting only: every number comes from a ``Summary``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from benchmarks.ceilings import BATCH
from benchmarks.report import (
    ANY,
    CEILING_FIGURES,
    DURABLE_CEILINGS,
    RATIOS,
    SHOWN,
    TARGETS,
    Summary,
    Target,
)
from benchmarks.workloads import DUPLICATES, TALLY_KEYS, WORKLOADS

__all__ = ["render"]

LABELS = {
    "requests_per_s": "requests/s",
    "late_duplicates_per_s": "late duplicates/s",
    "messages_per_s": "messages/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "tells_per_s": "tells/s (all handled)",
    "accepted_per_s": "tells/s (accepted)",
    "peak_rss_mb": "peak RSS MB",
    "batched_rows_per_s": f"rows/s ({BATCH} per commit)",
    "commits_per_s": "commits/s (1 row each)",
    "commit_p50_ms": "commit p50 ms",
    "round_trips_per_s": "round trips/s",
    "round_trip_p50_ms": "round trip p50 ms",
    "ask_p50_ms": "ask p50 ms",
}
CEILINGS = {"sqlite": "raw SQLite", "asyncio": "asyncio actor", "floor": "durable floor"}


def number(value: float | None) -> str:
    """``value`` with as many digits as it deserves; n/a for None."""
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def label(figure: str) -> str:
    """How the table names ``figure`` (a figure's or a ratio's name)."""
    for ratios in RATIOS.values():
        for ratio in ratios:
            if ratio.name == figure:
                return f"{LABELS[ratio.figure]} / {CEILINGS[ratio.ceiling]} {LABELS[ratio.of]}"
    return LABELS.get(figure, figure)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``header`` in left-aligned columns (numbers right-aligned)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(width) if cell[:1].isdigit() else cell.ljust(width)
            for cell, width in zip(row, widths, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def heading(summary: Summary) -> str:
    """What ran, how often, and where."""
    s, m = summary.sizes, summary.machine
    return (
        f"keyed-actors benchmarks: median of {summary.runs} run(s), scale {summary.scale:g}, "
        f"tracing {summary.tracing}\n"
        f"sizes: W1 {s.storm_keys:,} keys x {DUPLICATES} starts, then 1 late each; "
        f"W2 {TALLY_KEYS} keys x {s.asks_per_key:,} asks; W3 {s.hot_asks:,} asks; "
        f"W4 {s.fanout:,} tells, max_active {s.max_active:,}\n"
        f"machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}, commit {m['commit']}"
        + (" with uncommitted changes" if m["uncommitted_changes"] else "")
    )


def target_cells(target: Target | None, value: float | None) -> list[str]:
    """The target and holds cells of a figure's row (empty when it has no target)."""
    if target is None:
        return ["", ""]
    holds = "n/a" if value is None else "yes" if target.holds(value) else "NO"
    return [f"{target.op} {number(target.bound)}", holds]


def workload_rows(summary: Summary) -> list[list[str]]:
    """One row per figure of each workload at each durability, against its target."""
    rows: list[list[str]] = []
    for name in summary.workloads:
        targets = {target.figure: target for target in TARGETS[name]}
        for durability in summary.durabilities:
            values = summary.values(name, durability)
            first = [f"{name} {WORKLOADS[name][0]}", durability]
            checks = "verified" if summary.verified(name, durability) else "FAILED"
            for figure in SHOWN[name]:
                value = values.get(figure)
                cells = target_cells(targets.get(figure), value)
                rows.append([*first, label(figure), number(value), *cells, checks])
                first, checks = ["", ""], ""
    return rows


def ceiling_rows(summary: Summary) -> list[list[str]]:
    """One row per figure of each ceiling."""
    rows: list[list[str]] = []
    runs = [(c, d) for c in DURABLE_CEILINGS for d in summary.durabilities] + [("asyncio", ANY)]
    for name, durability in runs:
        figures = summary.figures(name, durability)
        for figure in CEILING_FIGURES[name]:
            rows.append([CEILINGS[name], durability, LABELS[figure], number(figures.get(figure))])
    return rows


def ratio_rows(summary: Summary) -> list[list[str]]:
    """One row per ratio of each workload at each durability to its ceiling."""
    rows: list[list[str]] = []
    for name in summary.workloads:
        for durability in summary.durabilities:
            medians = summary.ratios(name, durability)
            for ratio in RATIOS[name]:
                rows.append(
                    [
                        name,
                        durability,
                        LABELS[ratio.figure],
                        f"{CEILINGS[ratio.ceiling]} {LABELS[ratio.of]}",
                        number(medians[ratio.name]),
                    ]
                )
    return rows


def time_rows(summary: Summary) -> list[list[str]]:
    """Per workload run, where its time went: the medians of its runs' CPU counts.

    The event loop's thread and SQLite's thread share one interpreter lock, so their CPU
    shares show whether the runtime is bound by Python (they add up to the wall time) or
    waits on the disk (they leave it idle).
    """
    rows: list[list[str]] = []
    for name in summary.workloads:
        for durability in summary.durabilities:
            counts = [
                run.outcome.counts
                for run in summary.series.get((name, durability), [])
                if run.outcome is not None and "wall_ms" in run.outcome.counts
            ]
            if not counts:
                continue

            def median(field: str, counts: list[dict[str, int]] = counts) -> float:
                return statistics.median(c[field] for c in counts)

            wall = median("wall_ms") or 1
            rows.append(
                [
                    name,
                    durability,
                    number(wall / 1000),
                    f"{median('loop_cpu_ms') / wall:.0%}",
                    f"{median('other_cpu_ms') / wall:.0%}",
                    f"{median('gc_ms') / wall:.0%}",
                ]
            )
    return rows


def failures(summary: Summary) -> list[str]:
    """A line per failed run or check that did not hold."""
    lines: list[str] = []
    for (name, durability), runs in summary.series.items():
        for n, run in enumerate(runs, start=1):
            where = f"{name} {durability} run {n}"
            if run.outcome is None:
                lines.append(f"{where}: {run.error}")
                lines += [f"    {line}" for line in run.log.splitlines()[-5:]]
                continue
            lines += [
                f"{where}: {check.what}: expected {check.expected:,}, observed {check.observed:,}"
                for check in run.outcome.checks
                if not check.holds
            ]
    return lines


def render(summary: Summary) -> str:
    """The whole printed report."""
    header = ["workload", "durability", "figure", "median", "target", "holds", "checks"]
    parts = [heading(summary), "", table(header, workload_rows(summary)), ""]
    parts += [table(["ceiling", "durability", "figure", "median"], ceiling_rows(summary)), ""]
    ratio_header = ["workload", "durability", "figure", "ceiling (same durability)", "ratio"]
    parts += [table(ratio_header, ratio_rows(summary)), ""]
    time_header = ["workload", "durability", "run s", "loop CPU", "other CPU", "GC"]
    if times := time_rows(summary):
        parts += ["where each run's time went (medians, whole run):", table(time_header, times), ""]
    failed = failures(summary)
    checked = sum(len(runs) for runs in summary.series.values())
    if failed:
        parts += [f"VERIFICATION FAILED in {len(failed)} place(s):", *failed]
    else:
        parts.append(f"verification: every check of all {checked} runs held")
    return "\n".join(parts)
