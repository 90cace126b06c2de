"""The ``actors`` command line, on a SQLite file and on PostgreSQL, by a runtime's side.

Most tests call ``main`` in this process on a store a runtime wrote (the command line needs
no entity classes); a few run the installed ``actors`` script and ``python -m actors``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import Context, Entity, Runtime, RuntimeConfig, handler
from actors._cli import main
from persistence import (
    ActorId,
    ActorInit,
    Admit,
    BuryMessage,
    Enqueue,
    EnqueueOutcome,
    MessageKind,
    NewMessage,
    open_store,
)
from tests.postgres import fresh_schema_url

PLACED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Line:
    sku: str
    cents: int


@dataclass
class OrderState:
    lines: list[Line] = field(default_factory=list)


class Order(Entity):
    name = "order"
    state: OrderState

    @handler
    async def add(self, ctx: Context, line: Line) -> int:
        self.state.lines.append(line)
        total = sum(item.cents for item in self.state.lines)
        customer = "alice" if ctx.key in ("o-1", "o-3") else "bob"
        ctx.set_attributes(customer=customer, total=total, placed=PLACED, rush=total > 1000)
        return total

    @handler
    async def remind_later(self, ctx: Context) -> None:
        ctx.schedule(Order.nudge, after=timedelta(hours=2), name="nudge")

    @handler
    async def nudge(self, ctx: Context) -> None:
        pass

    @handler
    async def fail(self, ctx: Context) -> None:
        raise ValueError("the warehouse said no")

    @handler
    async def ship(self, ctx: Context) -> str:
        ctx.complete("shipped")
        return "shipped"


async def populate(url: str) -> None:
    """Four orders (one shipped), a timer, a failed turn, a waiting message, a dead letter."""
    async with Runtime.open(url, entities=[Order]) as rt:
        for key, cents in (("o-1", 500), ("o-2", 1500), ("o-3", 2500), ("o-4", 700)):
            await rt.ref(Order, key).ask(Order.add, Line(sku=f"sku-{key}", cents=cents))
        await rt.ref(Order, "o-1").ask(Order.remind_later)
        with pytest.raises(Exception, match="warehouse"):
            await rt.ref(Order, "o-1").ask(Order.fail)
        await rt.ref(Order, "o-3").ask(Order.ship)
    store = await open_store(url)
    try:
        stored = []
        for payload in (b'{"sku":"late","cents":1}', b'{"sku":"bad","cents":2}'):
            message = NewMessage(kind=MessageKind.TELL, handler="add", payload=payload)
            [outcome] = await store.write(
                [Enqueue(actor=ActorId(entity="order", key="o-2"), message=message)], now=1e9
            )
            assert isinstance(outcome, EnqueueOutcome)
            assert outcome.message is not None
            stored.append(outcome.message.id)
        await store.write([BuryMessage(message=stored[1], attempts=10, error="crashed")], now=1e9)
    finally:
        await store.close()


async def _create(path: Path) -> None:
    store = await open_store(f"sqlite:///{path}")
    await store.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    anyio.run(populate, f"sqlite:///{path}")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def keys(listing: Any) -> list[str]:
    return [row["key"] for row in listing["actors"]]


def test_ls_lists_every_actor_with_its_status_and_attributes(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table for people: one row per actor, in key order, attributes inline."""
    code, out, _ = run(capsys, "ls", str(db))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ACTOR", "GEN", "STATUS", "CREATED", "UPDATED", "ATTRIBUTES"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["order/o-1", "1", "active"],
        ["order/o-2", "1", "active"],
        ["order/o-3", "1", "completed"],
        ["order/o-4", "1", "active"],
    ]
    assert "customer=alice placed=2026-11-20T09:30:00+00:00 rush=false total=500" in lines[1]


def test_ls_filters_by_status_attributes_and_times(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Status, attribute terms and time bounds narrow the list; a URL works like a path."""
    url = f"sqlite:///{db}"
    assert keys(run_json(capsys, "ls", url, "--status", "completed")) == ["o-3"]
    assert keys(run_json(capsys, "ls", url, "-w", "customer=bob", "-w", "total>1000")) == ["o-2"]
    assert keys(run_json(capsys, "ls", url, "--created-after", "1h")) == [
        "o-1",
        "o-2",
        "o-3",
        "o-4",
    ]
    assert keys(run_json(capsys, "ls", url, "--created-before", "2000-01-01")) == []
    assert keys(run_json(capsys, "ls", url, "--entity", "refund")) == []


def test_ls_pages_with_a_cursor(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--limit`` cuts a page; the printed cursor continues it, in the order asked."""
    first = run_json(capsys, "ls", str(db), "-e", "order", "--order=-total", "--limit", "3")
    assert keys(first) == ["o-3", "o-2", "o-4"]
    rest = run_json(
        capsys, "ls", str(db), "-e", "order", "--order=-total", "--after", first["cursor"]
    )
    assert (keys(rest), rest["cursor"]) == (["o-1"], None)
    code, out, _ = run(capsys, "ls", str(db), "--limit", "1", "-e", "order")
    assert code == 0
    assert "(more: --after " in out


def test_ls_merges_several_entities_in_the_order_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Across entities, one order; a cut list says so (a cursor pages one entity only)."""
    path = tmp_path / "two.db"

    async def setup() -> None:
        store = await open_store(f"sqlite:///{path}")
        try:
            for now, entity, key in ((1.0, "b", "x"), (2.0, "a", "y"), (3.0, "b", "z")):
                message = NewMessage(kind=MessageKind.START, handler="h", payload=b"1")
                await store.write(
                    [
                        Admit(
                            actor=ActorId(entity=entity, key=key),
                            message=message,
                            init=ActorInit(retention=60.0),
                        )
                    ],
                    now=now,
                )
        finally:
            await store.close()

    anyio.run(setup)

    def actors(listing: Any) -> list[str]:
        return [f"{row['entity']}/{row['key']}" for row in listing["actors"]]

    everything = run_json(capsys, "ls", str(path))
    assert (actors(everything), everything["more"]) == (["a/y", "b/x", "b/z"], False)
    newest = run_json(capsys, "ls", str(path), "--order=-created_at", "--limit", "2")
    assert (actors(newest), newest["cursor"], newest["more"]) == (["b/z", "a/y"], None, True)
    code, out, _ = run(capsys, "ls", str(path), "--limit", "2")
    assert code == 0
    assert "(more: the first 2 shown; name one --entity to page" in out
    empty = tmp_path / "empty.db"
    anyio.run(lambda: _create(empty))
    assert run_json(capsys, "ls", str(empty)) == {"actors": [], "cursor": None, "more": False}
    code, _, err = run(capsys, "ls", str(path), "--after", "abc")
    assert code == 2
    assert "--after pages through one entity's actors" in err


def test_a_path_with_url_characters_names_that_file(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``#`` and ``?`` in a plain path are part of the file name."""
    odd = tmp_path / "shop #1?.db"
    odd.write_bytes(db.read_bytes())
    assert keys(run_json(capsys, "ls", str(odd)))[:1] == ["o-1"]


def test_find_queries_the_registry_with_typed_terms(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each operator; values take the kind the stored attribute has."""
    db_ = str(db)
    assert keys(run_json(capsys, "find", db_, "order", "customer=alice")) == ["o-1", "o-3"]
    assert keys(run_json(capsys, "find", db_, "order", "total>=1500")) == ["o-2", "o-3"]
    assert keys(run_json(capsys, "find", db_, "order", "total=600..2000")) == ["o-2", "o-4"]
    assert keys(run_json(capsys, "find", db_, "order", "total=500|700")) == ["o-1", "o-4"]
    assert keys(run_json(capsys, "find", db_, "order", "customer^=al", "rush=true")) == ["o-3"]
    assert keys(run_json(capsys, "find", db_, "order", "placed<2026-11-21")) == [
        "o-1",
        "o-2",
        "o-3",
        "o-4",
    ]
    assert keys(run_json(capsys, "find", db_, "order", "missing:customer")) == []
    assert keys(run_json(capsys, "find", db_, "order", "has:rush", "--status", "active")) == [
        "o-1",
        "o-2",
        "o-4",
    ]
    assert run_json(capsys, "find", db_, "order", "--count", "customer=bob") == {"count": 2}


def test_find_refuses_a_value_of_the_wrong_kind(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clear error, exit 1, before anything is read."""
    code, out, err = run(capsys, "find", str(db), "order", "total>lots")
    assert (code, out) == (1, "")
    assert "attribute 'total' holds number values, got 'lots'" in err
    code, _, err = run(capsys, "find", str(db), "order", "total~3")
    assert code == 1
    assert "cannot read the term 'total~3'" in err


def test_show_prints_state_mailbox_timers_and_recent_turns(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everything stored of one actor, the failed turn among its recent turns."""
    shown = run_json(capsys, "show", str(db), "order/o-1")
    assert (shown["status"], shown["generation"], shown["expired"]) == ("active", 1, False)
    assert shown["state"] == {"lines": [{"sku": "sku-o-1", "cents": 500}]}
    assert shown["attributes"]["customer"] == "alice"
    assert [(t["name"], t["handler"]) for t in shown["timers"]] == [("nudge", "nudge")]
    turns = [(t["handler"], t["outcome"]) for t in shown["recent_turns"]]
    assert turns == [
        ("add", "ok"),
        ("remind_later", "ok"),
        ("fail", "failed: ValueError: the warehouse said no"),
    ]
    waiting = run_json(capsys, "show", str(db), "order/o-2")["mailbox"]
    assert [(m["handler"], m["payload"]) for m in waiting] == [("add", {"sku": "late", "cents": 1})]
    shipped = run_json(capsys, "show", str(db), "order/o-3")
    assert (shipped["status"], shipped["result"]) == ("completed", "shipped")
    assert shipped["recent_turns"][-1]["outcome"] == "completed"
    code, out, _ = run(capsys, "show", str(db), "order/o-1")
    assert code == 0
    assert "failed: ValueError: the warehouse said no" in out
    assert "\ntimers:\nNAME" in out


def test_show_of_an_unknown_actor_fails_clearly(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 and a message naming the actor; a malformed name says how to write one."""
    code, _, err = run(capsys, "show", str(db), "order/nope")
    assert (code, err.strip()) == (1, "actors: error: no actor order/nope in this store")
    code, _, err = run(capsys, "show", str(db), "order")
    assert code == 2
    assert "ENTITY/KEY" in err


def test_stats_counts_per_entity(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Actors by status, mail waiting, timers, dead letters."""
    [order] = run_json(capsys, "stats", str(db))
    assert order["actors"] == {
        "active": 3,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "superseded": 0,
    }
    assert (order["messages"], order["timers"], order["dead_letters"]) == (1, 1, 1)
    code, out, _ = run(capsys, "stats", str(db))
    assert code == 0
    assert out.splitlines()[1].split()[:3] == ["order", "3", "1"]


def test_dead_letters_are_listed_discarded_and_retried(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """List, retry (the message is back at the end of its mailbox) and discard."""
    [dead] = run_json(capsys, "dead-letters", "list", str(db))
    assert (dead["actor"], dead["handler"], dead["error"]) == ("order/o-2", "add", "crashed")
    retried = run_json(capsys, "dead-letters", "retry", str(db), str(dead["id"]))
    assert retried["id"] > dead["id"]
    assert run_json(capsys, "dead-letters", "list", str(db)) == []
    mailbox = run_json(capsys, "show", str(db), "order/o-2")["mailbox"]
    assert [m["payload"]["sku"] for m in mailbox] == ["late", "bad"]
    code, _, err = run(capsys, "dead-letters", "discard", str(db), str(dead["id"]))
    assert (code, err.strip()) == (1, f"actors: no dead letter {dead['id']}")


def test_a_retried_dead_letter_runs_when_the_application_opens_the_store(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing lost: the next runtime on the file handles the message put back."""
    [dead] = run_json(capsys, "dead-letters", "list", str(db))
    assert run(capsys, "dead-letters", "retry", str(db), str(dead["id"]))[0] == 0

    async def reopen() -> int:
        async with Runtime.open(f"sqlite:///{db}", entities=[Order]) as rt:
            with anyio.fail_after(10):
                while True:  # recovery handles the stored mail in the background
                    total = await rt.ref(Order, "o-2").ask(Order.add, Line(sku="x", cents=0))
                    if total == 1500 + 1 + 2:
                        return total
                    await anyio.sleep(0.01)

    assert anyio.run(reopen) == 1503


def test_a_retry_is_refused_while_a_runtime_has_the_sqlite_file_open(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """That runtime would not see the message: the command says so and changes nothing."""
    [dead] = run_json(capsys, "dead-letters", "list", str(db))

    async def with_runtime() -> subprocess.CompletedProcess[bytes]:
        async with Runtime.open(f"sqlite:///{db}", entities=[Order]):
            return await anyio.run_process(
                [sys.executable, "-m", "actors", "dead-letters", "retry", str(db), str(dead["id"])],
                check=False,
            )

    done = anyio.run(with_runtime)
    assert done.returncode == 1
    assert "a runtime has this SQLite database open" in done.stderr.decode()
    capsys.readouterr()  # the runtime's log
    assert [d["id"] for d in run_json(capsys, "dead-letters", "list", str(db))] == [dead["id"]]


def test_discard_deletes_a_dead_letter(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Gone for good; a second discard finds nothing."""
    [dead] = run_json(capsys, "dead-letters", "list", str(db), "--entity", "order")
    assert run(capsys, "dead-letters", "discard", str(db), str(dead["id"]))[0] == 0
    assert run_json(capsys, "dead-letters", "list", str(db)) == []


def test_purge_expired_deletes_only_records_past_retention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A completed actor with no retention left goes; the others stay."""
    path = tmp_path / "purge.db"

    async def setup() -> None:
        config = RuntimeConfig(purge_interval=timedelta(days=1))  # the runtime leaves it
        async with Runtime.open(f"sqlite:///{path}", entities=[Order], config=config) as rt:
            await rt.ref(Order, "o-1").ask(Order.add, Line(sku="a", cents=1))
            handle = await rt.start(
                Order, "o-9", Line(sku="b", cents=2), handler=Order.add, retention=timedelta(0)
            )
            await handle.reply()
            await rt.ref(Order, "o-9").ask(Order.ship)

    anyio.run(setup)
    capsys.readouterr()  # the runtime's log
    before = run_json(capsys, "stats", str(path))
    assert sum(before[0]["actors"].values()) + before[0]["expired"] == 2
    assert run_json(capsys, "purge", str(path), "--expired") == {"purged": 1}
    assert keys(run_json(capsys, "ls", str(path))) == ["o-1"]


def test_reading_is_safe_while_a_runtime_works_on_the_file(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands read committed data while turns commit; the runtime is not disturbed."""

    async def busy() -> list[int]:
        counts: list[int] = []
        async with Runtime.open(f"sqlite:///{db}", entities=[Order]) as rt:
            async with anyio.create_task_group() as tg:

                async def work() -> None:
                    for n in range(200):
                        await rt.ref(Order, f"n-{n % 20}").ask(Order.add, Line(sku="s", cents=1))

                tg.start_soon(work)
                for _ in range(5):
                    listing = await anyio.run_process(
                        [sys.executable, "-m", "actors", "ls", str(db), "--limit=1000", "--json"]
                    )
                    counts.append(len(json.loads(listing.stdout)["actors"]))
            assert await rt.ref(Order, "n-0").ask(Order.add, Line(sku="s", cents=0)) == 10
        return counts

    counts = anyio.run(busy)
    capsys.readouterr()  # the runtime's log
    assert all(4 <= count <= 24 for count in counts)
    assert counts == sorted(counts)
    assert len(run_json(capsys, "ls", str(db), "--limit", "1000")["actors"]) == 24


def test_a_missing_store_is_an_error_not_a_new_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the path does not create a database."""
    code, _, err = run(capsys, "ls", str(tmp_path / "typo.db"))
    assert code == 1
    assert "no such file" in err
    assert not (tmp_path / "typo.db").exists()


def test_bad_arguments_are_usage_errors(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Argparse's exit 2 with what was wrong."""
    for argv, expected in (
        (["ls", str(db), "--limit", "0"], "from 1 to 1000"),
        (["ls", str(db), "--status", "asleep"], "invalid choice: 'asleep'"),
        (["ls", str(db), "--created-after", "yesterday"], "neither an ISO 8601 time"),
        (["ls", str(db), "--created-after", "99999999d"], "reaches before year 1"),
        (["purge", str(db)], "--expired"),
        (["ls", str(db), "--bogus"], "unrecognized arguments: --bogus"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert expected in err, err


@pytest.fixture
def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_installed_script_and_python_m_actors_run(
    db: Path, environment: dict[str, str]
) -> None:
    """``actors`` (the console script) and ``python -m actors`` are the same program."""
    for command in (["actors"], [sys.executable, "-m", "actors"]):
        done = subprocess.run(
            [*command, "stats", str(db), "--json"],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[0]["entity"] == "order"


@pytest.fixture
async def postgres_store() -> AsyncIterator[str]:
    async with fresh_schema_url("cli") as url:
        await populate(url)
        yield url


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_commands_work_on_postgresql(
    postgres_store: str, environment: dict[str, str]
) -> None:
    """The same commands on a PostgreSQL URL (with its schema)."""

    async def actors(*argv: str) -> Any:
        done = await anyio.run_process(
            [sys.executable, "-m", "actors", *argv, "--json"], env=environment, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    assert keys(await actors("ls", postgres_store)) == ["o-1", "o-2", "o-3", "o-4"]
    assert keys(await actors("find", postgres_store, "order", "total>=1500")) == ["o-2", "o-3"]
    shown = await actors("show", postgres_store, "order/o-1")
    assert shown["recent_turns"][-1]["outcome"] == "failed: ValueError: the warehouse said no"
    assert [t["name"] for t in shown["timers"]] == ["nudge"]
    [stats] = await actors("stats", postgres_store)
    assert (stats["messages"], stats["dead_letters"]) == (1, 1)
    [dead] = await actors("dead-letters", "list", postgres_store)
    retried = await actors("dead-letters", "retry", postgres_store, str(dead["id"]))
    assert retried["handler"] == "add"
    assert await actors("purge", postgres_store, "--expired") == {"purged": 0}
