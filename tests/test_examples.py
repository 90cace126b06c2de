"""Every example runs as is and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "quickstart.py": [
        "add(5) -> 5",
        "created=True",
        "created=False",
        "status: completed",
        "after restart, add(1) -> 7",
        "a duplicate gets the stored receipt: True",
    ],
    "entity_counter.py": [f"counter-{i}: 200 (replies 1..200, each once: True)" for i in range(10)],
}


def test_every_example_is_covered() -> None:
    """A new example must be added here, so that it is run."""
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_prints_what_happened(name: str) -> None:
    """The example exits 0 and prints its expected lines."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for line in EXPECTED[name]:
        assert line in done.stdout, f"{name} did not print {line!r}:\n{done.stdout}"
