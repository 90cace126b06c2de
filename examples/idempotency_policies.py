"""Idempotency policies of Temporal, Inngest and DBOS, each written as a duplicate handler.

A start of a key whose actor exists is a message to that actor, and its ``on_duplicate``
decides: adopt the result (``ctx.reply_on_completion()``), reject (raise), start the next
generation (``ctx.supersede()``), or answer something else. Each class below is one peer's
documented policy in those terms; ``main`` shows what a duplicate gets while the first run is
still going, after it completed and after it failed. Run it with::

    python examples/idempotency_policies.py
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import structlog

from actors import (
    ActorCompleted,
    ActorFailed,
    ActorNotFound,
    Context,
    Duplicate,
    Entity,
    HandlerFailed,
    Runtime,
    StartHandle,
    Status,
    handler,
)


class DuplicateRejected(Exception):
    """A duplicate start was refused: the key is taken (Temporal: workflow already started)."""


@dataclass
class Started:
    """The start handler's reply: which label started which generation."""

    label: str
    generation: int


class Task(Entity):
    """Work that stays active after its start, until told to finish or to fail."""

    name = "task"
    result: str

    @handler(start=True)
    async def begin(self, ctx: Context, label: str) -> Started:
        return Started(label=label, generation=ctx.generation)

    @handler
    async def finish(self, ctx: Context, output: str) -> None:
        ctx.complete(output)

    @handler
    async def give_up(self, ctx: Context, reason: str) -> None:
        ctx.fail(reason)


# Temporal decides a start with two policies: the id *reuse* policy (the previous run has
# closed; default ALLOW_DUPLICATE) and the id *conflict* policy (a run is open; default FAIL).
# Each class below pins one value and keeps the other at its default.


class AllowDuplicate(Task):
    """Temporal ALLOW_DUPLICATE: a closed workflow's id may start a new run, whatever its end."""

    name = "temporal.allow_duplicate"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        if ctx.status is Status.ACTIVE:
            raise DuplicateRejected(f"{ctx.key} is {ctx.status}")
        return ctx.supersede()


class AllowDuplicateFailedOnly(Task):
    """Temporal ALLOW_DUPLICATE_FAILED_ONLY: a new run only if the last one did not succeed."""

    name = "temporal.allow_duplicate_failed_only"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        if ctx.status in (Status.FAILED, Status.CANCELLED):
            return ctx.supersede()
        raise DuplicateRejected(f"{ctx.key} is {ctx.status}")


class RejectDuplicate(Task):
    """Temporal REJECT_DUPLICATE: the id can never be reused while the namespace retains it."""

    name = "temporal.reject_duplicate"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        raise DuplicateRejected(f"{ctx.key} is {ctx.status}")


class TerminateIfRunning(Task):
    """Temporal TERMINATE_IF_RUNNING: terminate the open run, start anew; else ALLOW_DUPLICATE."""

    name = "temporal.terminate_if_running"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        return ctx.supersede()


class Fail(Task):
    """Temporal conflict FAIL: a start while a run is open fails with already-started."""

    name = "temporal.fail"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        if ctx.status is Status.ACTIVE:
            raise DuplicateRejected(f"{ctx.key} is {ctx.status}")
        return ctx.supersede()  # closed: the default reuse policy, ALLOW_DUPLICATE


class UseExisting(Task):
    """Temporal conflict USE_EXISTING: a start while a run is open returns that run's handle."""

    name = "temporal.use_existing"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        if ctx.status is Status.ACTIVE:
            return ctx.reply_on_completion()
        return ctx.supersede()  # closed: the default reuse policy, ALLOW_DUPLICATE


class TerminateExisting(Task):
    """Temporal conflict TERMINATE_EXISTING: a start while a run is open terminates it first."""

    name = "temporal.terminate_existing"

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        return ctx.supersede()  # closed: the default reuse policy, ALLOW_DUPLICATE


class InngestIdempotency(Task):
    """Inngest idempotency key: the first event runs; repeats within 24 h are skipped, no run."""

    name = "inngest.idempotency"
    # Inngest counts the 24 h from the first event; retention counts them from the run's end.
    retention = timedelta(hours=24)

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> None:
        return None


class DbosWorkflowId(Task):
    """DBOS workflow id: starting it again returns the existing workflow, its result or error."""

    name = "dbos.workflow_id"
    retention = timedelta(days=3650)  # DBOS keeps workflow records until garbage-collected

    async def on_duplicate(self, ctx: Context, dup: Duplicate[str]) -> Any:
        return ctx.reply_on_completion()  # the default: leaving on_duplicate out is the same


POLICIES: dict[str, type[Task]] = {
    "temporal ALLOW_DUPLICATE": AllowDuplicate,
    "temporal ALLOW_DUPLICATE_FAILED_ONLY": AllowDuplicateFailedOnly,
    "temporal REJECT_DUPLICATE": RejectDuplicate,
    "temporal TERMINATE_IF_RUNNING": TerminateIfRunning,
    "temporal FAIL": Fail,
    "temporal USE_EXISTING": UseExisting,
    "temporal TERMINATE_EXISTING": TerminateExisting,
    "inngest idempotency key": InngestIdempotency,
    "dbos workflow id": DbosWorkflowId,
}
CASES = {
    Status.ACTIVE: "while running",
    Status.COMPLETED: "after completion",
    Status.FAILED: "after failure",
}


async def first_run(
    rt: Runtime, policy: type[Task], key: str, state: Status
) -> StartHandle[Task, Started]:
    """Start ``key``'s first run and bring it into ``state``: active, completed or failed."""
    first = await rt.start(policy, key, "first", handler=Task.begin)
    await first.reply()
    if state is Status.COMPLETED:
        await first.actor.ask(Task.finish, "first's result")
    elif state is Status.FAILED:
        await first.actor.ask(Task.give_up, "first broke")
    return first


async def duplicate_of(rt: Runtime, policy: type[Task], key: str, state: Status) -> str:
    """Start ``key`` again once its first run is in ``state``; return what the duplicate got."""
    first = await first_run(rt, policy, key, state)
    duplicate = await rt.start(policy, key, "second")
    if state is Status.ACTIVE:
        # The duplicate is ahead of this message in the mailbox. An adopting duplicate's reply
        # is the first run's result, so finish the run; a superseded one has ended already.
        with contextlib.suppress(ActorCompleted, ActorNotFound):
            await first.actor.ask(Task.finish, "first's result")
    return await outcome(duplicate)


async def outcome(duplicate: StartHandle[Task, Any]) -> str:
    """What the duplicate caller got, in words."""
    try:
        reply = await duplicate.reply()
    except HandlerFailed as exc:
        return f"rejected ({exc.error_type})"
    except ActorFailed as exc:
        return f"adopted the failure (ActorFailed: {exc.error_message})"
    if reply is None:
        return "ignored (no run, reply None)"
    if isinstance(reply, Started):
        return f"new run (generation {reply.generation} started with {reply.label!r})"
    return f"adopted ({reply!r})"


async def main() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),  # stdout is for the results
    )
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'policies.db'}"
        async with Runtime.open(url, entities=POLICIES.values()) as rt:
            for label, policy in POLICIES.items():
                for n, (state, when) in enumerate(CASES.items(), 1):
                    print(f"{label}, {when}: {await duplicate_of(rt, policy, f'order-{n}', state)}")


if __name__ == "__main__":
    anyio.run(main)
