"""Kill the process with SIGKILL while messages are queued; nothing accepted is lost."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from tests.conftest import running
from tests.crash._child import KEYS
from tests.crash._timer_child import ACTORS, TIMERS, Bell, due_order
from tests.entities import Counter

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
TIMER_TOTAL = ACTORS * TIMERS


async def _kill_when(args: list[str], enough: Callable[[list[str]], bool]) -> None:
    """Run ``python -m args``; SIGKILL it once ``enough`` says so of a line's words."""
    async with await anyio.open_process(
        [sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        buffer = b""
        try:
            async for chunk in process.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if any(enough(line.decode().split()) for line in lines):
                    break
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
    assert process.returncode == -signal.SIGKILL


async def _run_child_until_killed(db: Path, round_: str, kill_after: int) -> list[tuple[str, str]]:
    """Start the child, let it accept ``kill_after`` messages, SIGKILL it; return the ledger."""
    ledger: list[tuple[str, str]] = []

    def accepted(words: list[str]) -> bool:
        if words[:1] == ["accepted"]:
            ledger.append((words[1], words[2]))
        return len(ledger) >= kill_after

    await _kill_when(["tests.crash._child", str(db), round_], accepted)
    return ledger


@pytest.mark.slow
async def test_messages_accepted_before_sigkill_are_handled_exactly_once_after_restart(
    tmp_path: Path,
) -> None:
    """G3, G4: after SIGKILL and restart, every accepted message ran exactly once, in order."""
    db = tmp_path / "crash.db"
    accepted: defaultdict[str, list[str]] = defaultdict(list)
    with anyio.fail_after(120):
        for round_ in range(ROUNDS):
            ledger = await _run_child_until_killed(db, f"r{round_}", kill_after=150)
            for key, token in ledger:
                accepted[key].append(token)
            with capture_logs() as logs:
                async with running(f"sqlite:///{db}", Counter) as rt:
                    seen = {
                        f"key-{k}": await rt.ref(Counter, f"key-{k}").ask(Counter.seen)
                        for k in range(KEYS)
                    }
                    values = {key: await rt.ref(Counter, key).ask(Counter.get) for key in seen}
            recovered = [e["count"] for e in logs if e["event"] == "messages_recovered"]
            assert recovered, "the kill must leave accepted work unhandled"
            assert recovered[0] > 0
            for key, tokens in seen.items():
                assert len(tokens) == len(set(tokens)), f"{key}: a message ran twice"
                assert tokens == sorted(tokens), f"{key}: mailbox order broken"
                missing = set(accepted[key]) - set(tokens)
                assert not missing, f"{key}: accepted but never handled: {sorted(missing)[:5]}"
                assert values[key] == len(tokens), f"{key}: state and effects disagree"
    assert sum(len(v) for v in accepted.values()) >= 150 * ROUNDS


@pytest.mark.slow
async def test_timers_fire_exactly_once_in_due_order_across_a_sigkill(tmp_path: Path) -> None:
    """G3: killed while timers fire, a restart fires the rest; none twice, none lost."""
    db = tmp_path / "timers.db"
    with anyio.fail_after(120):
        fired_before_kill = 0

        def firing(words: list[str]) -> bool:
            nonlocal fired_before_kill
            if words[:1] == ["fired"]:
                fired_before_kill = int(words[1])
            return fired_before_kill >= TIMER_TOTAL // 4

        await _kill_when(["tests.crash._timer_child", str(db)], firing)
        assert fired_before_kill < TIMER_TOTAL, "the kill must come while timers fire"
        async with running(f"sqlite:///{db}", Bell) as rt:
            bells = [rt.ref(Bell, f"bell-{i}") for i in range(ACTORS)]
            while await rt._store.next_timer_due() is not None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            await anyio.sleep(0.3)  # time for a timer to fire twice, if one could
            # An ask queues behind the timer messages already in the mailbox.
            for i, bell in enumerate(bells):
                assert await bell.ask(Bell.rings) == due_order(i)
            assert await rt._store.next_timer_due() is None
