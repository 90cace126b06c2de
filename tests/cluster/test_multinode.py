"""Several node processes on one PostgreSQL schema: one activation per actor, failover, fencing.

Each test starts node processes (``tests.cluster._node``) on a fresh schema, lets them work,
and reads every counter's log of turns afterwards from a runtime of its own (one more node,
``checker``). A log entry says which node ran the turn, on which lease epoch, and when; the
tests check that no two nodes ever ran one actor at once (epochs never go back, each epoch
belongs to one node, turns of different nodes never overlap), that every accepted message
ran exactly once, that a dead node's actors move to the others, and that a paused node that
comes back cannot commit on the lease it lost. Needs PostgreSQL (see ``tests/postgres.py``):
skipped when it is unreachable, unless ``CI=true``.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from anyio.abc import Process

from actors import Runtime, RuntimeConfig
from tests.cluster._node import key_name
from tests.cluster.entities import Add, Counter, CounterState, Job, Turn
from tests.postgres import fresh_schema_url

pytestmark = pytest.mark.slow  # subprocesses; each test also needs PostgreSQL (skips without)

ROOT = Path(__file__).resolve().parents[2]
POLL = 0.05  # seconds between looks at the nodes' record files
STOP_LIMIT = 20.0  # seconds a node may take to close once told to stop
ASK_TIMEOUT = timedelta(seconds=30)


def _open_for_writing(path: Path) -> IO[bytes]:
    return path.open("wb")


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return path.read_text("utf-8").splitlines()


class Node:
    """A node process, its record file (JSON lines) and its log (stderr)."""

    def __init__(self, name: str, process: Process, out: Path, log: Path) -> None:
        self.name = name
        self.process = process
        self.out = out
        self.log = log

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        """The records written so far (a last line cut short by a kill is left out)."""
        found = []
        for line in _read_lines(self.out):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if event is None or record["e"] == event:
                found.append(record)
        return found

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The runtime's log entries named ``event``."""
        found = []
        for line in _read_lines(self.log):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == event:
                found.append(entry)
        return found

    def tail(self, lines: int = 30) -> str:
        return "\n".join(_read_lines(self.log)[-lines:])


class Nodes:
    """The node processes of one test, on one schema, with their control files."""

    def __init__(self, folder: Path, url: str, lease: float) -> None:
        self.folder = folder
        self.url = url
        self.lease = lease
        self.stop_file = folder / "stop"
        self.go_file = folder / "go"
        self.halt_file = folder / "halt"
        self.nodes: dict[str, Node] = {}
        self._logs: list[IO[bytes]] = []

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    async def spawn(self, name: str, mode: str, *options: str) -> Node:
        out, log = self.folder / f"{name}.jsonl", self.folder / f"{name}.log"
        stream = _open_for_writing(log)
        self._logs.append(stream)
        command = [
            sys.executable,
            "-m",
            "tests.cluster._node",
            *("--url", self.url, "--node", name, "--lease", repr(self.lease)),
            *("--mode", mode, "--out", str(out), "--stop", str(self.stop_file)),
            *("--go", str(self.go_file), "--halt", str(self.halt_file), "--limit", "240"),
            *options,
        ]
        process = await anyio.open_process(
            command, cwd=ROOT, stdin=None, stdout=stream, stderr=stream
        )
        node = self.nodes[name] = Node(name, process, out, log)
        return node

    async def wait_for(
        self, names: Iterable[str], event: str, *, count: int = 1, limit: float = 30.0
    ) -> None:
        """Wait until each node in ``names`` wrote ``count`` records ``event``."""
        deadline = time.monotonic() + limit
        for name in names:
            node = self.nodes[name]
            while len(node.records(event)) < count:
                failed = node.records("failed")
                if failed or node.process.returncode is not None:
                    detail = failed[0]["error"] if failed else node.tail()
                    raise AssertionError(
                        f"node {name} ended ({node.process.returncode}) before {event!r}:\n{detail}"
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"node {name}: no {count} {event!r} records within {limit:g} s "
                        f"(has {len(node.records(event))}); its log ends:\n{node.tail()}"
                    )
                await anyio.sleep(POLL)

    async def wait_logged(self, name: str, event: str, *, limit: float) -> dict[str, Any]:
        """Wait until node ``name``'s runtime logged ``event``; the first such entry."""
        node = self.nodes[name]
        with anyio.move_on_after(limit):
            while not node.logged(event):  # noqa: ASYNC110  # another process writes it
                await anyio.sleep(POLL)
            return node.logged(event)[0]
        raise AssertionError(f"node {name} did not log {event!r} in {limit:g} s:\n{node.tail()}")

    async def signal(self, name: str) -> None:
        """Touch the control file ``name`` (go, halt, stop)."""
        await anyio.Path(self.folder / name).touch()

    async def stop(self) -> dict[str, int | None]:
        """Tell every node still running to close; their exit statuses."""
        await self.signal("stop")
        with anyio.move_on_after(STOP_LIMIT):
            for node in self.nodes.values():
                await node.process.wait()
        return {name: node.process.returncode for name, node in self.nodes.items()}

    async def kill_all(self) -> None:
        """SIGKILL every node still running (a stopped one too) and reap it."""
        with anyio.move_on_after(10, shield=True):
            for node in self.nodes.values():
                if node.process.returncode is None:
                    node.process.kill()
                await node.process.wait()
        for stream in self._logs:
            stream.close()


@asynccontextmanager
async def cluster(folder: Path, url: str, *, lease: float) -> AsyncIterator[Nodes]:
    """Node processes on ``url``; whatever happens, none outlives the block."""
    nodes = Nodes(folder, url, lease)
    try:
        yield nodes
    finally:
        await nodes.kill_all()


@asynccontextmanager
async def checker(url: str, *, lease: float) -> AsyncIterator[Runtime]:
    """One more node, in this process, to read the counters through."""
    config = RuntimeConfig(lease=timedelta(seconds=lease))
    async with Runtime.open(url, entities=[Counter, Job], node_id="checker", config=config) as rt:
        yield rt


async def snapshots(rt: Runtime, keys: Iterable[str]) -> dict[str, CounterState]:
    """Every counter's state (log included), read 16 at a time."""
    states: dict[str, CounterState] = {}
    limiter = anyio.CapacityLimiter(16)

    async def read(key: str) -> None:
        async with limiter:
            states[key] = await rt.ref(Counter, key).ask(Counter.snapshot, timeout=ASK_TIMEOUT)

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(read, key)
    return states


def check_one_owner_at_a_time(key: str, log: list[Turn]) -> None:
    """Along ``log``: epochs never decrease, each belongs to one node, turns never overlap."""
    owners: dict[int, str] = {}
    for (node, epoch, token, _, ended), after in zip(log, [*log[1:], None], strict=True):
        assert owners.setdefault(epoch, node) == node, (
            f"{key}: epoch {epoch} used by {owners[epoch]} and {node} ({token})"
        )
        if after is None:
            continue
        next_node, next_epoch, next_token, next_started, _ = after
        assert next_epoch >= epoch, f"{key}: epoch went back, {token}@{epoch} -> {next_token}"
        if next_node != node:
            assert ended <= next_started, (
                f"{key}: {node}'s turn {token} (to {ended:.3f}) overlaps {next_node}'s "
                f"{next_token} (from {next_started:.3f})"
            )
    assert all(epoch >= 0 and node != "?" for epoch, node in owners.items()), (
        f"{key}: a turn ran without a node id or an epoch: {owners}"
    )


async def test_three_nodes_asking_200_counters_run_each_actor_on_one_node_at_a_time(
    tmp_path: Path,
) -> None:
    """G2, G3 across nodes: 10,000 asks from 3 nodes, each run once, one owner at a time."""
    shares, keys, lease = [3334, 3333, 3333], 200, 2.0
    with anyio.fail_after(150):
        async with (
            fresh_schema_url("cluster") as url,
            cluster(tmp_path, url, lease=lease) as nodes,
        ):
            names = [f"n{i + 1}" for i in range(len(shares))]
            for seed, (name, share) in enumerate(zip(names, shares, strict=True)):
                options = ("--count", str(share), "--keys", str(keys), "--seed", str(seed))
                await nodes.spawn(name, "asks", *options, "--concurrency", "64")
            await nodes.wait_for(names, "ready")
            began = time.monotonic()
            await nodes.signal("go")
            await nodes.wait_for(names, "done", limit=100)
            seconds = time.monotonic() - began
            replies = [r for name in names for r in nodes[name].records("reply")]
            errors = [r for name in names for r in nodes[name].records("error")]
            async with checker(url, lease=lease) as rt:
                states = await snapshots(rt, {r["key"] for r in replies + errors})
            exits = await nodes.stop()
    print(f"\nsingle activation: {len(replies):,} asks from 3 nodes in {seconds:.1f} s")
    ran = {turn[2]: (key, turn) for key, state in states.items() for turn in state.log}
    twice = [
        f"{key}: {token} ran {n} times"
        for key, state in states.items()
        for token, n in Tally(turn[2] for turn in state.log).items()
        if n > 1
    ]
    assert not twice, twice[:10]
    unanswered = [
        f"{e['node']} asked {e['token']} ({e['error']}); ran: {ran.get(e['token'])}" for e in errors
    ]
    assert not unanswered, unanswered[:10]
    assert len(replies) == sum(shares)
    by_key: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for reply in replies:
        by_key[reply["key"]].append(reply)
    for key, sent in by_key.items():
        state = states[key]
        assert state.count == len(sent), f"{key}: count {state.count}, asks {len(sent)}"
        assert sorted(r["reply"] for r in sent) == list(range(1, len(sent) + 1)), key
        logged = Tally(turn[2] for turn in state.log)
        assert logged == Tally(r["token"] for r in sent), f"{key}: log and asks differ"
        check_one_owner_at_a_time(key, state.log)
    assert exits == dict.fromkeys(names, 0), exits


def recovery_times(states: dict[str, CounterState], victim: str, killed_at: float) -> list[float]:
    """Per key the victim held when it died: seconds from the kill to a survivor's first turn."""
    times = []
    for state in states.values():
        before = [turn for turn in state.log if turn[4] <= killed_at]
        if not before or before[-1][0] != victim:
            continue
        after = [turn for turn in state.log if turn[0] != victim and turn[3] >= before[-1][4]]
        if after:
            times.append(after[0][4] - killed_at)
    return times


async def test_a_sigkilled_nodes_actors_move_to_the_survivors_and_lose_no_accepted_message(
    tmp_path: Path,
) -> None:
    """G4 across nodes: after a node's SIGKILL, every accepted tell ran exactly once."""
    names, victim, keys, lease = ["n1", "n2", "n3"], "n3", 30, 1.5
    with anyio.fail_after(100):
        async with (
            fresh_schema_url("cluster") as url,
            cluster(tmp_path, url, lease=lease) as nodes,
        ):
            for seed, name in enumerate(names):
                options = ("--count", "100000", "--keys", str(keys), "--seed", str(seed))
                await nodes.spawn(name, "tells", *options, "--rate", "60", "--concurrency", "4")
            await nodes.wait_for(names, "ready")
            await nodes.signal("go")
            await nodes.wait_for(names, "accepted", count=90, limit=30)
            killed_at = time.time()
            nodes[victim].process.send_signal(signal.SIGKILL)
            await nodes[victim].process.wait()
            await anyio.sleep(4 * lease)  # the survivors go on sending meanwhile
            await nodes.signal("halt")
            survivors = [name for name in names if name != victim]
            await nodes.wait_for(survivors, "done", limit=30)
            accepted = [r for name in names for r in nodes[name].records("accepted")]
            errors = [r for name in names for r in nodes[name].records("error")]
            expected = Tally(r["key"] for r in accepted)
            async with checker(url, lease=lease) as rt:
                # Accepted tells may still wait in mailboxes: read until each is handled.
                with anyio.fail_after(40):
                    while True:
                        states = await snapshots(rt, [key_name(k) for k in range(keys)])
                        if all(states[k].count >= n for k, n in expected.items()):
                            break
                        await anyio.sleep(0.5)
                await anyio.sleep(lease)  # time for a message to run twice, if one could
                states = await snapshots(rt, [key_name(k) for k in range(keys)])
            exits = await nodes.stop()
    times = recovery_times(states, victim, killed_at)
    applied = Tally(turn[2] for state in states.values() for turn in state.log)
    print(
        f"\nfailover (lease {lease:g} s): {len(accepted):,} tells accepted, "
        f"{sum(applied.values()):,} applied; {victim} held {len(times)} keys at its SIGKILL; "
        + (
            f"recovery: first {min(times):.2f} s, median {statistics.median(times):.2f} s, "
            f"all {max(times):.2f} s after the kill"
            if times
            else "no recovery measured"
        )
    )
    assert not errors, errors[:5]
    assert [token for token, n in applied.items() if n > 1] == []
    lost = {r["token"] for r in accepted} - set(applied)
    assert not lost, f"accepted but never handled: {sorted(lost)[:10]}"
    for key, state in states.items():
        assert state.count == len(state.log), key
        assert all(turn[3] < killed_at for turn in state.log if turn[0] == victim), key
        check_one_owner_at_a_time(key, state.log)
    assert times, f"{victim} held no counter when it was killed"
    assert max(times) < 10 * lease, f"recovery took {max(times):.1f} s"
    assert {n: exits[n] for n in survivors} == dict.fromkeys(survivors, 0), exits


async def test_a_paused_node_cannot_commit_on_its_lost_lease_and_rejoins(tmp_path: Path) -> None:
    """Fencing: a SIGSTOPped owner's slow turn is refused; the new owner re-runs it once."""
    lease, slow = 1.5, 4.0
    with anyio.fail_after(100):
        async with (
            fresh_schema_url("cluster") as url,
            cluster(tmp_path, url, lease=lease) as nodes,
        ):
            for name in ("a", "b"):
                await nodes.spawn(name, "serve")
            await nodes.wait_for(["a", "b"], "ready")
            zombie = await nodes.spawn(
                "z", "zombie", "--key", "hot", "--slow", repr(slow), "--keys", "3"
            )
            await nodes.wait_for(["z"], "slow_sent")
            [owner] = zombie.records("owner")
            hot = owner["key"]
            assert owner["owner"] == "z", f"z runs none of the keys it asked first: {owner}"
            await anyio.sleep(0.5)  # the slow turn is under way
            zombie.process.send_signal(signal.SIGSTOP)
            async with checker(url, lease=lease) as rt:
                reply = await rt.ref(Counter, hot).ask(
                    Counter.add, Add("t-during-pause"), timeout=ASK_TIMEOUT
                )
                zombie.process.send_signal(signal.SIGCONT)
                lost = await nodes.wait_logged("z", "session_lost", limit=20)
                await nodes.signal("go")
                await nodes.wait_for(["z"], "done", limit=40)
                states = await snapshots(rt, [hot, *(key_name(k) for k in range(3))])
            exits = await nodes.stop()
    slow_outcome = zombie.records("slow_reply") + zombie.records("slow_error")
    print(
        f"\nzombie: z ran {hot} on epoch {owner['epoch']}, then logged {lost}; "
        f"z's own ask of the slow turn: {slow_outcome}; {hot}'s turns: "
        + ", ".join(f"{token} on {node}@{epoch}" for node, epoch, token, _, _ in states[hot].log)
    )
    log = states[hot].log
    tokens = Tally(turn[2] for turn in log)
    assert [turn for turn in log if turn[1] == owner["epoch"]] == [], (
        f"a turn committed on z's lost epoch {owner['epoch']}: {log}"
    )
    assert tokens["z-slow"] == 1, log
    assert tokens["t-during-pause"] == 1, log
    # z's caller of the fenced turn gets the reply of the run that counted: the new owner's.
    assert zombie.records("slow_error") == [], slow_outcome
    [slow_reply] = zombie.records("slow_reply")
    assert slow_reply["reply"] == [turn[2] for turn in log].index("z-slow") + 1, log
    assert reply == [turn[2] for turn in log].index("t-during-pause") + 1, log
    check_one_owner_at_a_time(hot, log)
    assert zombie.records("error") == []
    after = zombie.records("reply")
    assert [r["key"] for r in after] == [hot, *(key_name(k) for k in range(3))]
    for key, state in states.items():
        assert state.count == len(state.log), key
        assert [t[2] for t in state.log if t[2].startswith("z-after")] != [], key
    assert exits == {"a": 0, "b": 0, "z": 0}, exits


async def test_a_thousand_concurrent_starts_of_one_key_on_three_nodes_create_one_actor(
    tmp_path: Path,
) -> None:
    """G1 across nodes: of 1,000 concurrent starts from 3 nodes, exactly one creates."""
    shares, lease = {"n1": 333, "n2": 333, "n3": 334}, 2.0
    with anyio.fail_after(90):
        async with (
            fresh_schema_url("cluster") as url,
            cluster(tmp_path, url, lease=lease) as nodes,
        ):
            for name, share in shares.items():
                await nodes.spawn(name, "starts", "--count", str(share), "--key", "the-job")
            await nodes.wait_for(shares, "ready")
            await nodes.signal("go")
            await nodes.wait_for(shares, "done", limit=60)
            started = [r for name in shares for r in nodes[name].records("start")]
            errors = [r for name in shares for r in nodes[name].records("error")]
            exits = await nodes.stop()
    assert not errors, errors[:5]
    assert len(started) == sum(shares.values())
    creators = [r for r in started if r["created"]]
    assert len(creators) == 1, creators
    assert {r["reply"] for r in started} == {"the-job:same"}
    assert exits == dict.fromkeys(shares, 0), exits
