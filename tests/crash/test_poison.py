"""A message whose turn crashes the process goes to the dead letters; its neighbours do not."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

from tests.conftest import running
from tests.crash._poison_child import CROWD, MAX_ATTEMPTS, Victim

ROOT = Path(__file__).resolve().parents[2]
KILLED = -signal.SIGKILL


async def _restarts(db: Path, mode: str) -> tuple[list[int], dict[str, Any]]:
    """Run the child in ``mode``, then restart it until it survives; exit codes and report."""
    codes: list[int] = []
    while not codes or (codes[-1] == KILLED and len(codes) < 12):
        done = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "tests.crash._poison_child",
                str(db),
                mode if not codes else "serve",
            ],
            cwd=ROOT,
            check=False,
            stderr=subprocess.DEVNULL,
        )
        codes.append(done.returncode)
    [line] = [line for line in done.stdout.splitlines() if line.startswith(b'{"eaten"')]
    return codes, json.loads(line)


async def test_a_message_that_kills_the_process_is_dead_lettered(tmp_path: Path) -> None:
    db = tmp_path / "poison.db"
    with anyio.fail_after(60):
        codes, report = await _restarts(db, "send")
    # The poison is blamed for MAX_ATTEMPTS crashes: the first restart finds it at the head
    # of its mailbox, then each run of it (alone, recorded just before) counts. Two crashes
    # go unblamed: the first one ("slow", whose commit was in flight, was at the head), and
    # the one right after the poison's first count (it ran among others). The next restart
    # buries it without running it and goes on with the actor's next message.
    assert codes == [KILLED] * (MAX_ATTEMPTS + 2) + [0]
    assert report["eaten"]["v"] == ["a", "slow", "b"]
    [dead] = report["dead"]
    assert dead["key"] == "v"
    assert dead["payload"] == '"poison"'
    assert dead["attempts"] == MAX_ATTEMPTS

    async with running(f"sqlite:///{db}", Victim) as rt:
        [letter] = await rt.dead_letters(Victim)
        assert letter.id == dead["id"]
        assert letter.kind == "tell"
        assert letter.handler == "eat"
        assert "process stopped" in letter.error
        assert await rt.discard_dead_letter(letter.id) is True
        assert await rt.dead_letters() == []
        assert await rt.discard_dead_letter(letter.id) is False
        assert await rt.ref(Victim, "v").ask(Victim.eaten) == ["a", "slow", "b"]


async def test_messages_running_beside_a_poison_are_not_blamed_for_its_crashes(
    tmp_path: Path,
) -> None:
    """A crash loop kills the crowd's turns mid-way at every restart; only the poison dies."""
    db = tmp_path / "crowd.db"
    with anyio.fail_after(60):
        codes, report = await _restarts(db, "crowd")
    assert codes[-1] == 0
    assert len(codes) <= MAX_ATTEMPTS + 3
    assert [dead["key"] for dead in report["dead"]] == ["p"]
    for key in CROWD:
        assert report["eaten"][key] == ["slow"], key  # each ran to its commit exactly once
