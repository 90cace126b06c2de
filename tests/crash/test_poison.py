"""A message whose turn crashes the process goes to the dead letters after max_attempts runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio

from tests.conftest import running
from tests.crash._poison_child import MAX_ATTEMPTS, Victim

ROOT = Path(__file__).resolve().parents[2]


async def _child(db: Path, mode: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        [sys.executable, "-m", "tests.crash._poison_child", str(db), mode],
        cwd=ROOT,
        check=False,
        stderr=subprocess.DEVNULL,
    )


async def test_a_message_that_kills_the_process_is_dead_lettered(tmp_path: Path) -> None:
    db = tmp_path / "poison.db"
    with anyio.fail_after(60):
        runs = [await _child(db, "send")]
        while runs[-1].returncode == -signal.SIGKILL and len(runs) < 10:
            runs.append(await _child(db, "serve"))
    # The first crash counts against "slow": its commit was in flight (pipelined) when the
    # poison's turn killed the process. From then on a counted message runs alone, so the
    # poison's own MAX_ATTEMPTS runs are counted against it; the next restart buries it
    # without running it and goes on with the actor's next message.
    assert [run.returncode for run in runs] == [-signal.SIGKILL] * (MAX_ATTEMPTS + 1) + [0]
    [line] = [line for line in runs[-1].stdout.splitlines() if line.startswith(b'{"eaten"')]
    report = json.loads(line)
    assert report["eaten"] == ["a", "slow", "b"]
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
