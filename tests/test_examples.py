"""Every example runs as is and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEW_RUN = "new run (generation 2 started with 'second')"
REJECTED = "rejected (DuplicateRejected)"
ADOPTED = 'adopted ("first\'s result")'
IGNORED = "ignored (no run, reply None)"
# policy: (while running, after completion, after failure)
POLICIES = {
    "temporal ALLOW_DUPLICATE": (REJECTED, NEW_RUN, NEW_RUN),
    "temporal ALLOW_DUPLICATE_FAILED_ONLY": (REJECTED, REJECTED, NEW_RUN),
    "temporal REJECT_DUPLICATE": (REJECTED, REJECTED, REJECTED),
    "temporal TERMINATE_IF_RUNNING": (NEW_RUN, NEW_RUN, NEW_RUN),
    "temporal FAIL": (REJECTED, NEW_RUN, NEW_RUN),
    "temporal USE_EXISTING": (ADOPTED, NEW_RUN, NEW_RUN),
    "temporal TERMINATE_EXISTING": (NEW_RUN, NEW_RUN, NEW_RUN),
    "inngest idempotency key": (IGNORED, IGNORED, IGNORED),
    "dbos workflow id": (ADOPTED, ADOPTED, "adopted the failure (ActorFailed: first broke)"),
}
POLICY_LINES = [
    f"{policy}, {state}: {outcome}"
    for policy, outcomes in POLICIES.items()
    for state, outcome in zip(
        ("while running", "after completion", "after failure"), outcomes, strict=True
    )
]
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
    "idempotency_policies.py": POLICY_LINES,
    "payments.py": [
        "created   request -> ch_0001 for 1999",
        "duplicate request -> ch_0001 for 1999",
        "late duplicate -> ch_0001 (stored receipt)",
        "same key, other amount -> refused: PayloadMismatch",
        "provider called 1 time(s)",
    ],
    "registry.py": [
        "alice's open orders: order-05 alice us 15000 active, order-08 alice eu 5200 active,"
        " order-01 alice eu 1200 active",
        "order-01 add_item(1000) -> 2200; found by amount: order-01",
        "eu page 1: order-03 alice eu 300 completed, order-06 bob eu 700 completed",
        "order-11 dave eu 100 placed between pages",
        "eu page 2: order-01 alice eu 2200 active, order-07 carol eu 2500 active",
        "eu page 3: order-08 alice eu 5200 active",
        "region ap: 2 orders, 2 open",
        "region eu: 6 orders, 4 open",
        "region us: 3 orders, 2 open",
        "large: order-05 alice us 15000 active -> open",
        "large: order-09 bob us 12000 completed -> shipped 1 item(s) for 12000",
        "refused: where['amount']: attribute 'amount' of 'order' holds number values, got str",
    ],
    "reminders.py": [
        "order-1 placed: awaiting payment of 1999",
        "order-1 pay(1999) -> paid 1999, deadline cancelled",
        "order-2 -> expired: not paid in time",
        "order-2 pay(500) -> refused: ActorCompleted",
        "order-1 after its deadline -> active, paid",
        "order-1 ship() -> shipped",
        "order-3 after restart -> expired: not paid in time",
        "timers fired: 1 before the restart, 1 after",
    ],
}


def test_every_example_is_covered() -> None:
    """A new example must be added here, so that it is run."""
    examples = {p.name for p in (ROOT / "examples").glob("*.py")} - {"__init__.py"}
    assert examples == set(EXPECTED)


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
