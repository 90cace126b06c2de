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
    "app_record.py": [
        "first request (key-1)",
        'table : 201 {"charge": "ch_0001", "amount": 1999}  (inserted the key, locked; charged;'
        " stored charge and response, unlocked)",
        'actors: 201 {"charge": "ch_0001", "amount": 1999}  (created payment/key-1; its start'
        " turn charged)",
        "duplicate while in flight",
        'table : 201 {"charge": "ch_0001", "amount": 1999}  (found the key locked, waited;'
        " replayed the stored response)",
        'actors: 201 {"charge": "ch_0001", "amount": 1999}  (created=False: a duplicate'
        " message, queued behind the running turn; on_duplicate replayed the stored response)",
        "late duplicate",
        'table : 201 {"charge": "ch_0001", "amount": 1999}  (replayed the stored response)',
        'actors: 201 {"charge": "ch_0001", "amount": 1999}  (created=False: a duplicate'
        " message; on_duplicate replayed the stored response)",
        "same key, other amount",
        'table : 422 {"error": "key reused with another request"}  (refused: the key\'s stored'
        " request differs)",
        'actors: 422 {"error": "key reused with another request"}  (created=False: a duplicate'
        " message; on_duplicate refused it)",
        "key-2: charged, then the process dies",
        "table : no response  (key-2 stays locked at 'started')",
        "actors: no response  (payment/key-2 stays active; its turn, uncommitted, runs again at"
        " the next open)",
        "two minutes later, the process runs again",
        "table : -  (nothing runs: key-2 waits for its client's retry)",
        "actors: -  (re-ran payment/key-2's turn as it opened (same charge): now completed)",
        "the client retries key-2",
        'table : 201 {"charge": "ch_0002", "amount": 4200}  (took over a stale lock at'
        " 'started'; charged; stored charge and response, unlocked)",
        'actors: 201 {"charge": "ch_0002", "amount": 4200}  (created=False: a duplicate'
        " message; on_duplicate replayed the stored response)",
        "c-42's keys",
        "table : key-1, key-2",
        "actors: key-1, key-2",
        "c-42's charges",
        "table : ch_0001 1999, ch_0002 4200",
        "actors: ch_0001 1999, ch_0002 4200",
        "provider",
        "table : 3 calls, 2 charges",
        "actors: 3 calls, 2 charges",
        "a day later (retention: 24 h)",
        "table : 0 keys kept  (the cleanup job deleted 2 finished key(s))",
        "actors: 0 keys kept  (the runtime purged 2 record(s) at expiry)",
        "outcomes agree on all 11 steps: True",
    ],
    "entity_counter.py": [f"counter-{i}: 200 (replies 1..200, each once: True)" for i in range(10)],
    "http_idempotency.py": [
        "first request        -> held at the provider",
        "concurrent duplicate -> 409 A request is outstanding for this Idempotency-Key",
        "first request        -> 201 ch_0001 for 1999 (Location /payments/ch_0001)",
        "late duplicate       -> 201 ch_0001, stored response (replayed: true)",
        "different payload    -> 422 Idempotency-Key is already used",
        "missing header       -> 400 Idempotency-Key is missing",
        "malformed header     -> 400 Idempotency-Key is malformed",
        "provider called 1 time(s)",
    ],
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
    "shopping_cart.py": [
        "Mon 09:00 cart-1 opened: alice, 0 item(s), 0.00, shopping",
        "Mon 09:00 cart-1 add 2 tea -> alice, 2 item(s), 9.00, shopping",
        "Mon 09:10 cart-2 add 1 jam -> bob, 1 item(s), 3.50, shopping",
        "Mon 09:20 cart-3 add 1 kettle -> alice, 1 item(s), 45.00, shopping",
        "Mon 09:30 cart-1 add 1 mug -> alice, 3 item(s), 21.00, shopping",
        "Mon 09:30 cart-1 opened again: created=False, alice, 3 item(s), 21.00, shopping",
        "Mon 09:30 bob opens cart-1 -> refused: NotYourCart",
        "Mon 09:40 cart-1 remove 1 tea -> alice, 2 item(s), 16.50, shopping",
        "Mon 09:45 alice's open carts: cart-1 (alice, 2 item(s), 16.50, shopping), cart-3"
        " (alice, 1 item(s), 45.00, shopping)",
        "Mon 09:45 carts over 20.00: cart-3 (alice, 1 item(s), 45.00, shopping)",
        "Mon 09:45 idle since before 09:15: cart-2 (bob, 1 item(s), 3.50, shopping)",
        "Mon 09:45 open carts: 3",
        "Mon 09:50 cart-3 checkout -> checked out 1 item(s) for 45.00",
        "Mon 10:45 an hour of quiet:",
        "mail sent Mon 10:10 to bob: 1 item(s) wait in cart-2",
        "mail sent Mon 10:40 to alice: 2 item(s) wait in cart-1",
        "Mon 10:45 reminded carts: cart-1 (alice, 2 item(s), 16.50, reminded), cart-2 (bob, 1"
        " item(s), 3.50, reminded)",
        "Mon 11:00 cart-1 add 1 tea -> alice, 3 item(s), 21.00, shopping",
        "Mon 11:00 the process stops; cart-1's reminder is due at 12:00",
        "Mon 12:30 the process runs again on the same file; the overdue reminder fires:",
        "mail sent Mon 12:30 to alice: 3 item(s) wait in cart-1",
        "Mon 12:30 cart-1 -> alice, 3 item(s), 21.00, reminded",
        "Mon 12:45 cart-1 checkout -> checked out 3 item(s) for 21.00",
        "Tue 12:00 cart-2 -> completed: abandoned Tue 09:10 with 1 item(s), 3.50",
        "Tue 12:00 cart-2 add 1 jam -> refused: ActorCompleted",
        "Tue 12:00 checked_out: cart-1 (alice, 3 item(s), 21.00, checked_out), cart-3 (alice, 1"
        " item(s), 45.00, checked_out)",
        "Tue 12:00 abandoned: cart-2 (bob, 1 item(s), 3.50, abandoned)",
        "Tue 12:00 timers fired: 2 before the restart, 2 after",
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
