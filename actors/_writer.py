"""The group-commit writer: the single task that owns the commit path.

Callers hand it admissions, enqueues and finished turns without waiting (``submit``); it
commits everything that is ready in one transaction, then hands each item and its outcome
back in order. A commit starts as soon as the previous one ends and takes whatever queued
meanwhile, so batches grow with load and no one waits on a timer.

A batch the store refuses for now (a retryable error: locked, full) is tried again, with
backoff, a few times before its items fail. A batch refused for good is committed again
one item at a time, so that only the item the store cannot take fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from actors import _tracing
from actors._activation import Envelope
from actors._clock import Clock
from actors._deadlock import Chain
from actors._future import Future
from actors._retry import retrying
from actors._turn import TurnResult
from persistence import (
    Admit,
    BuryMessage,
    Enqueue,
    FireTimers,
    RetryDeadLetter,
    Store,
    StoreError,
    WriteItem,
    WriteOutcome,
)

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext, Tracer

log = structlog.get_logger("actors.writer")


@dataclass(slots=True, eq=False)
class Request:
    """A write other than a turn's, whose submitter waits on ``accepted`` (or ``reply``).

    ``reply``, ``chain`` and ``trace`` (the admission span's context) go with the message an
    admission or enqueue stores; ``envelope`` is the message a ``BuryMessage`` moves to the
    dead letters.
    """

    item: Admit | Enqueue | FireTimers | BuryMessage | RetryDeadLetter
    accepted: Future[Any]
    reply: Future[Any] | None = None
    chain: Chain = ()
    envelope: Envelope | None = None
    trace: SpanContext | None = None
    # Called with the outcome once committed, for a caller that waits on ``reply`` alone.
    then: Callable[[WriteOutcome], None] | None = None
    # Counted against its actor's mailbox until committed (``Dispatcher.submitted``).
    counted: bool = False


Item = Request | TurnResult


class CommitHost(Protocol):
    """What the writer reports to: the runtime's dispatcher."""

    def committed(self, item: Item, outcome: WriteOutcome) -> None: ...

    def failed(self, items: Sequence[Item], error: StoreError) -> None: ...


class Writer:
    def __init__(self, store: Store, clock: Clock, *, max_batch: int) -> None:
        self._store = store
        self._clock = clock
        self.host: CommitHost | None = None
        # Multi-node: how an item is written (its caller's session, its lease's epoch).
        self.prepare: Callable[[Item], WriteItem] | None = None
        # Set by the runtime when OpenTelemetry is installed: each batch gets a span.
        self.tracer: Tracer | None = None
        self.stopped = anyio.Event()
        self._max_batch = max_batch
        # Unbounded: submit() must not await, so that a turn is queued atomically with its
        # bookkeeping. Callers are bounded by waiting for their own commit.
        self._send, self._receive = anyio.create_memory_object_stream[Item](math.inf)
        self._leftover: list[Item] = []
        self._scope = anyio.CancelScope()
        self.batches = 0
        self.items = 0
        # Submitted items not yet handed back (committed, failed or dropped).
        self.pending = 0
        # Batches taken, and batches whose outcomes have been handed back (see caught_up).
        self.taken = 0
        self.handed_back = 0
        self._handed: anyio.Event | None = None

    def submit(self, item: Item) -> None:
        """Queue ``item`` for the next commit. Raises ``anyio.ClosedResourceError`` once closed."""
        self._send.send_nowait(item)
        self.pending += 1

    def close(self) -> None:
        """Take no more items; ``run`` returns once everything queued is committed."""
        self._send.close()

    def cancel(self) -> None:
        """Stop now; what was not committed goes to ``leftover()``."""
        self._scope.cancel()

    def leftover(self) -> list[Item]:
        """What was queued but never committed (the writer stopped early); taken once."""
        taken, self._leftover = self._leftover, []
        return taken

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            with self._scope:
                await self._loop()
        finally:
            while True:
                try:
                    self._leftover.append(self._receive.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            self._send.close()
            self._receive.close()
            self.stopped.set()

    async def _loop(self) -> None:
        async for first in self._receive:
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._receive.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            self.taken += 1
            try:
                await self._commit(batch)
            finally:
                self.pending -= len(batch)
                self.handed_back += 1
                if self._handed is not None:
                    self._handed.set()
                    self._handed = None

    async def caught_up(self, taken: int) -> None:
        """Wait until the first ``taken`` batches have been handed back (or the writer stops).

        A reader of the store that must see this process's own commits delivered (as well
        as stored) takes ``taken`` after its read: every batch committed before the read was
        taken before it returned.
        """
        while self.handed_back < taken and not self.stopped.is_set():
            if self._handed is None:
                self._handed = anyio.Event()
            await self._handed.wait()

    async def _commit(self, batch: list[Item]) -> None:
        # Turns of an activation reset after a failed commit were built on state that was
        # never committed: drop them (their messages are already back in the mailbox).
        live = [
            item
            for item in batch
            if not isinstance(item, TurnResult) or item.incarnation == item.activation.incarnation
        ]
        if not live:
            return
        assert self.host is not None, "the runtime sets the host before starting the writer"
        prepare = self.prepare
        writes = [
            prepare(item)
            if prepare is not None
            else item.item
            if isinstance(item, Request)
            else item.commit
            for item in live
        ]
        writing = retrying(lambda: self._store.write(writes, now=self._clock.now()), what="write")
        tracer = _tracing.live(self.tracer)
        if tracer is not None:
            writing = _tracing.commit(
                tracer,
                writing,
                items=len(live),
                turns=sum(isinstance(item, TurnResult) for item in live),
                created=[
                    item.envelope.trace if isinstance(item, TurnResult) else item.trace
                    for item in live
                ],
            )
        try:
            outcomes = await writing
        except StoreError as exc:
            if not exc.retryable and len(live) > 1:
                for n, item in enumerate(live):  # only the item the store cannot take fails
                    try:
                        await self._commit([item])
                    except BaseException:
                        self._leftover.extend(live[n + 1 :])  # answered by abandon()
                        raise
                return
            log.error(
                "commit_failed", items=len(live), error=str(exc), error_type=type(exc).__name__
            )
            self.host.failed(live, exc)
            return
        except BaseException:
            # Cancelled mid-commit (shutdown): the transaction rolled back; whoever waits on
            # these items is answered by the runtime's abandon().
            self._leftover.extend(live)
            raise
        self.batches += 1
        self.items += len(live)
        for item, outcome in zip(live, outcomes, strict=True):
            self.host.committed(item, outcome)
