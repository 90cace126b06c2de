"""``actors``, the command line: inspect a store and act on it, as ``python -m actors`` too.

Every command takes the store first: a URL (``sqlite:///app.db``, ``postgresql://...``) or
the path of a SQLite file. It opens the store as it is (``migrate=False``) through the storage
contract, so it is safe while a runtime runs on it. Tables for people; ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import quote

import anyio

from actors._inspect import Filters, Inspector, Json, timestamp
from actors._query import Between, Exists, Ge, Gt, In, Le, Lt, Missing, Operator, Prefix
from actors.errors import ActorsError
from persistence import ActorId, Status, StoreError, StoreInUse, open_store

__all__ = ["main"]

_TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|\^=|=|>|<)(.*)$", re.DOTALL)
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_STATUSES = [status.value for status in Status]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and exit."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command is _find and not any(e.startswith("-") for e in extra):
        args.where += extra  # terms after options: argparse stops at the first option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = anyio.run(_run, args)
    except _Usage as exc:
        parser.error(str(exc))
    except (ActorsError, StoreError, RuntimeError, ValueError) as exc:
        print(f"actors: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # the reader went away (`actors ls ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


class _Usage(Exception):
    """A command's arguments do not fit together: a usage error (exit status 2)."""


async def _run(args: argparse.Namespace) -> int:
    # A retry holds the SQLite file's runtime lock while it writes: a runtime keeps its
    # mailboxes in memory, so one that is running (or opens meanwhile) would not see it.
    exclusive = args.command is _dead_letters_retry
    try:
        store = await open_store(_url(args.store), migrate=False, exclusive=exclusive)
    except StoreInUse:
        if exclusive:
            raise RuntimeError(
                "a runtime has this SQLite database open, and it keeps its mailboxes in "
                "memory: it would not see the message until it restarts. Retry from the "
                "application (Runtime.retry_dead_letter), or stop it and retry here"
            ) from None
        raise
    try:
        command: Callable[[Inspector, argparse.Namespace], Awaitable[int]] = args.command
        return await command(Inspector(store), args)
    finally:
        await store.close()


def _url(store: str) -> str:
    """A store URL, or the path of a SQLite file as one (quoted: ``#`` and ``?`` are kept)."""
    return store if "://" in store else f"sqlite:///{quote(store)}"


# -- commands ---------------------------------------------------------------------------------


async def _ls(inspector: Inspector, args: argparse.Namespace) -> int:
    entities = args.entity or await inspector.entities()
    if len(entities) == 1:
        rows, cursor = await inspector.find(
            entities[0], _filters(args), limit=args.limit, after=args.after
        )
        _emit_actors(args, rows, cursor)
        return 0
    if args.after:
        raise _Usage("--after pages through one entity's actors: give one --entity")
    rows, more = await inspector.find_across(entities, _filters(args), limit=args.limit)
    _emit_actors(args, rows, None, more=more)
    return 0


async def _find(inspector: Inspector, args: argparse.Namespace) -> int:
    filters = _filters(args)
    if args.count:
        count = await inspector.count(args.entity_name, filters)
        print(json.dumps({"count": count}) if args.json else count)
        return 0
    rows, cursor = await inspector.find(
        args.entity_name, filters, limit=args.limit, after=args.after
    )
    _emit_actors(args, rows, cursor)
    return 0


async def _show(inspector: Inspector, args: argparse.Namespace) -> int:
    entity, slash, key = args.actor.partition("/")
    if not slash or not entity or not key:
        raise _Usage(f"name the actor as ENTITY/KEY, got {args.actor!r}")
    shown = await inspector.show(ActorId(entity=entity, key=key))
    if args.json:
        _print_json(shown)
        return 0
    status = shown["status"] + (" (expired: counts as absent, awaiting purge)" * shown["expired"])
    fields = [
        ("actor", f"{shown['entity']}/{shown['key']}"),
        ("generation", shown["generation"]),
        ("status", status),
        ("created", _time(shown["created_at"])),
        ("updated", _time(shown["updated_at"])),
        ("completed", _time(shown["completed_at"])),
        ("expires", _time(shown["expires_at"])),
        ("attributes", _attributes(shown["attributes"])),
        ("state", _compact(shown["state"])),
        ("result", _compact(shown["result"])),
        ("error", _compact(shown["error"])),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        if value not in (None, "", "-") or name in ("state", "attributes"):
            print(f"{name:<{width}}  {value if value not in (None, '') else '-'}")
    _section(
        "mailbox",
        ["ID", "KIND", "HANDLER", "STORED", "ATTEMPTS", "PAYLOAD"],
        [
            [
                m["id"],
                m["kind"],
                m["handler"],
                _time(m["created_at"]),
                m["attempts"],
                _compact(m["payload"]),
            ]
            for m in shown["mailbox"]
        ],
    )
    _section(
        "timers",
        ["NAME", "DUE", "HANDLER", "PAYLOAD"],
        [
            [t["name"], _time(t["due_at"]), t["handler"], _compact(t["payload"])]
            for t in shown["timers"]
        ],
    )
    _section(
        "recent turns",
        ["MESSAGE", "KIND", "HANDLER", "AT", "TOOK", "OUTCOME"],
        [
            [
                t["message"],
                t["kind"],
                t["handler"],
                _time(t["at"]),
                f"{t['took_ms']:g} ms",
                t["outcome"],
            ]
            for t in shown["recent_turns"]
        ],
    )
    return 0


async def _dead_letters_list(inspector: Inspector, args: argparse.Namespace) -> int:
    rows = await inspector.dead_letters(entity=args.entity, after=args.after, limit=args.limit)
    if args.json:
        _print_json(rows)
        return 0
    _table(
        ["ID", "ACTOR", "HANDLER", "ATTEMPTS", "DEAD SINCE", "ERROR"],
        [
            [d["id"], d["actor"], d["handler"], d["attempts"], _time(d["dead_at"]), d["error"]]
            for d in rows
        ],
        empty="no dead letters",
    )
    return 0


async def _dead_letters_retry(inspector: Inspector, args: argparse.Namespace) -> int:
    message = await inspector.retry_dead_letter(args.id)
    if message is None:
        print(f"actors: no dead letter {args.id}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(message)
    else:
        print(f"dead letter {args.id} is back in its actor's mailbox as message {message['id']}")
    return 0


async def _dead_letters_discard(inspector: Inspector, args: argparse.Namespace) -> int:
    if not await inspector.discard_dead_letter(args.id):
        print(f"actors: no dead letter {args.id}", file=sys.stderr)
        return 1
    print(json.dumps({"discarded": args.id}) if args.json else f"dead letter {args.id} discarded")
    return 0


async def _purge(inspector: Inspector, args: argparse.Namespace) -> int:
    purged = await inspector.purge_expired()
    print(json.dumps({"purged": purged}) if args.json else f"purged {purged} expired record(s)")
    return 0


async def _stats(inspector: Inspector, args: argparse.Namespace) -> int:
    rows = await inspector.statistics()
    if args.json:
        _print_json(rows)
        return 0
    shown = [s for s in _STATUSES if any(row["actors"][s] for row in rows)] or ["active"]
    _table(
        [
            "ENTITY",
            *(s.upper() for s in shown),
            "EXPIRED",
            "MAIL",
            "OLDEST MAIL",
            "TIMERS",
            "NEXT TIMER",
            "DEAD",
            "KEPT REPLIES",
        ],
        [
            [
                row["entity"],
                *(row["actors"][s] for s in shown),
                row["expired"],
                row["messages"],
                _time(row["oldest_message_at"]),
                row["timers"],
                _time(row["next_timer_at"]),
                row["dead_letters"],
                row["kept_replies"],
            ]
            for row in rows
        ],
        empty="the store is empty",
    )
    return 0


# -- arguments ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actors",
        description="Inspect a keyed-actors store, and act on it, while applications run.",
        epilog="STORE is a store URL (sqlite:///app.db, postgresql://user@host/db?schema=s) "
        "or the path of a SQLite file.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(
        name: str,
        run: Callable[..., Awaitable[int]],
        help: str,
        under: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
    ) -> argparse.ArgumentParser:
        sub = under.add_parser(name, help=help, description=help)
        sub.add_argument("store", metavar="STORE", help="store URL or SQLite file")
        sub.add_argument("--json", action="store_true", help="print JSON, for scripts")
        sub.set_defaults(command=run)
        return sub

    ls = command("ls", _ls, "list actors, filtered by entity, status, attributes and times")
    ls.add_argument("--entity", "-e", action="append", help="only this entity (repeatable)")
    ls.add_argument(
        "--where",
        "-w",
        action="append",
        default=[],
        metavar="TERM",
        help="an attribute term (see find); repeatable",
    )
    _selection(ls)

    find = command("find", _find, "find actors of an entity by attributes (the registry)")
    find.add_argument("entity_name", metavar="ENTITY")
    find.add_argument(
        "where",
        nargs="*",
        metavar="TERM",
        help="name=value, name>value, name>=value, name<value, name<=value, name^=prefix, "
        "name=a|b (any of), name=low..high (between), has:name, missing:name",
    )
    find.add_argument("--count", action="store_true", help="print how many match")
    _selection(find)

    show = command("show", _show, "show one actor: state, attributes, mailbox, timers, turns")
    show.add_argument("actor", metavar="ENTITY/KEY")

    dead = commands.add_parser("dead-letters", help="list, retry or discard dead letters")
    actions = dead.add_subparsers(title="actions", required=True, metavar="ACTION")
    listing = command("list", _dead_letters_list, "list dead letters, oldest first", actions)
    listing.add_argument("--entity", "-e", help="only this entity's")
    listing.add_argument("--after", type=int, help="the last id of the previous page")
    listing.add_argument("--limit", type=_limit, default=100, help="page size (1-1000)")
    for name, run, help in (
        ("retry", _dead_letters_retry, "put a dead letter back at the end of its mailbox"),
        ("discard", _dead_letters_discard, "delete a dead letter for good"),
    ):
        command(name, run, help, actions).add_argument("id", type=int, metavar="ID")

    purge = command("purge", _purge, "delete records whose retention is over")
    purge.add_argument(
        "--expired", action="store_true", required=True, help="what to purge (required)"
    )

    command("stats", _stats, "counts per entity: actors by status, mail, timers, dead letters")
    return parser


def _selection(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--status",
        "-s",
        action="append",
        default=[],
        choices=_STATUSES,
        help="only this status (repeatable)",
    )
    for field in ("created", "updated", "completed"):
        sub.add_argument(
            f"--{field}-after",
            type=_moment,
            metavar="WHEN",
            help=f"{field} at or after WHEN: an ISO 8601 time (UTC unless it says so) or a"
            " time ago (30s, 15m, 2h, 7d)",
        )
        sub.add_argument(
            f"--{field}-before", type=_moment, metavar="WHEN", help=f"{field} at or before WHEN"
        )
    sub.add_argument(
        "--order",
        default="key",
        help="key, created_at, updated_at, completed_at or an attribute; - in front for"
        " descending (--order=-total)",
    )
    sub.add_argument("--limit", type=_limit, default=50, help="how many (1-1000)")
    sub.add_argument("--after", metavar="CURSOR", help="the cursor printed after the previous page")


def _filters(args: argparse.Namespace) -> Filters:
    times: dict[str, Operator | None] = {}
    for field in ("created", "updated", "completed"):
        after, before = getattr(args, f"{field}_after"), getattr(args, f"{field}_before")
        # Both ends included, alone or together.
        times[field] = (
            Between(after, before)
            if after and before
            else Ge(after)
            if after
            else Le(before)
            if before
            else None
        )
    where = dict(_term(text) for text in args.where)
    return Filters(where=where, status=args.status, order_by=args.order, **times)


def _term(text: str) -> tuple[str, str | Operator]:
    """One attribute term from its text; values stay text until the store's kinds are known."""
    for prefix, operator in (("has:", Exists), ("missing:", Missing)):
        if text.startswith(prefix):
            return text.removeprefix(prefix), operator()
    match = _TERM.match(text)
    if match is None:
        raise ValueError(
            f"cannot read the term {text!r}: use name=value, name>value, name>=value, "
            "name<value, name<=value, name^=prefix, name=a|b, name=low..high, has:name or "
            "missing:name"
        )
    name, op, value = match.groups()
    if op == "=" and "|" in value:
        return name, In(value.split("|"))
    if op == "=" and ".." in value:
        low, _, high = value.partition("..")
        return name, Between(low, high)
    ops: dict[str, type[Gt | Ge | Lt | Le]] = {">": Gt, ">=": Ge, "<": Lt, "<=": Le}
    if op in ops:
        return name, ops[op](value)
    return name, Prefix(value) if op == "^=" else value


def _moment(text: str) -> datetime:
    ago = _AGO.match(text)
    if ago:
        span = timedelta(**{_UNITS[ago[2]]: float(ago[1])})
        try:
            return datetime.fromtimestamp(time.time(), UTC) - span
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{text!r} reaches before year 1") from None
    try:
        return timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time nor a time ago like 30s, 15m, 2h or 7d"
        ) from None


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"a limit is a whole number from 1 to 1000, got {text!r}")
    return value


# -- output ---------------------------------------------------------------------------------


def _emit_actors(
    args: argparse.Namespace,
    rows: list[dict[str, Json]],
    cursor: str | None,
    *,
    more: bool | None = None,
) -> None:
    """Print a page of actors; ``cursor`` continues it, ``more`` says it was cut without one."""
    more = cursor is not None if more is None else more
    if args.json:
        _print_json({"actors": rows, "cursor": cursor, "more": more})
        return
    _table(
        ["ACTOR", "GEN", "STATUS", "CREATED", "UPDATED", "ATTRIBUTES"],
        [
            [
                f"{r['entity']}/{r['key']}",
                r["generation"],
                r["status"],
                _time(r["created_at"]),
                _time(r["updated_at"]),
                _attributes(r["attributes"]),
            ]
            for r in rows
        ],
        empty="no actors match",
    )
    if cursor is not None:
        print(f"(more: --after {cursor})")
    elif more:
        print(f"(more: the first {len(rows)} shown; name one --entity to page, or raise --limit)")


def _print_json(value: Json) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(header: list[str], rows: list[list[Any]], *, empty: str) -> None:
    if not rows:
        print(f"({empty})")
        return
    cells = [header, *([("-" if c is None else str(c)) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _section(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n{title}:")
    _table(header, rows, empty="none")


def _time(iso: str | None) -> str:
    """An ISO time from the inspector, shortened for a table: UTC to the second."""
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%SZ")


def _attributes(attributes: dict[str, Json]) -> str:
    return " ".join(f"{name}={_compact(value)}" for name, value in attributes.items()) or "-"


def _compact(value: Json) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
