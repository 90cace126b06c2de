"""OpenTelemetry spans around admission, turns and commits (docs/tracing.md).

Each test gives its runtime a TracerProvider of its own (``Runtime.open(tracer_provider=...)``)
that exports to memory, so no global state is touched. The path without the package, and the
default (global) provider, run in subprocesses.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from actors import (
    ActorCompleted,
    Context,
    Entity,
    HandlerFailed,
    Runtime,
    StorageError,
    handler,
)
from actors.testing import VirtualClock
from persistence import Enqueue, StoreError
from tests.conftest import running
from tests.faults import faulty_store

ROOT = Path(__file__).resolve().parents[2]

# Span contexts current while handlers ran, by the handler's payload.
SEEN: dict[str, SpanContext] = {}


class Stock(Entity):
    name = "stock"

    @handler
    async def reserve(self, ctx: Context, item: str) -> bool:
        SEEN[item] = trace.get_current_span().get_span_context()
        return True


class Order(Entity):
    name = "order"

    @handler(start=True)
    async def place(self, ctx: Context, amount: int) -> int:
        if amount < 0:
            raise ValueError(f"a negative amount: {amount}")
        return amount

    @handler
    async def check(self, ctx: Context, item: str) -> bool:
        SEEN[f"check {item}"] = trace.get_current_span().get_span_context()
        return await ctx.ref(Stock, item).ask(Stock.reserve, item)

    @handler
    async def refuse(self, ctx: Context, reason: str) -> None:
        raise LookupError(reason)

    @handler
    async def close(self, ctx: Context) -> None:
        ctx.complete(0)

    @handler
    async def remind(self, ctx: Context, after: float) -> None:
        ctx.schedule(Order.reminded, after=timedelta(seconds=after))

    @handler
    async def reminded(self, ctx: Context) -> None:
        pass


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def context_of(span: ReadableSpan) -> SpanContext:
    context = span.context
    assert isinstance(context, SpanContext)
    return context


def number(span: ReadableSpan, name: str) -> int:
    """The int attribute ``name`` of ``span``."""
    value = (span.attributes or {}).get(name)
    assert isinstance(value, int), (name, value)
    return value


def linked(span: ReadableSpan) -> list[SpanContext]:
    return [link.context for link in span.links]


def committing(spans: Sequence[ReadableSpan], admission: ReadableSpan) -> list[ReadableSpan]:
    """The commit spans linked to ``admission``: its acceptance, then its turn's commit."""
    return [s for s in named(spans, "commit") if context_of(admission) in linked(s)]


async def test_a_start_is_a_producer_span_and_its_turn_a_consumer_child_linked_to_it(
    store_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """G1: the admission that created the actor, and the turn of its start message."""
    async with running(store_url, Order, tracer_provider=provider) as rt:
        handle = await rt.start(Order, "o-1", 42)
        assert await handle.reply() == 42
    spans = exporter.get_finished_spans()

    start = one(spans, "start order.place")
    turn = one(spans, "turn order.place")
    assert start.kind is SpanKind.PRODUCER
    assert start.parent is None
    assert start.attributes == {
        "actors.entity": "order",
        "actors.key": "o-1",
        "actors.handler": "place",
        "actors.operation": "start",
        "messaging.system": "keyed-actors",
        "messaging.operation.type": "publish",
        "actors.generation": 1,
        "actors.created": True,
        "actors.message_id": 1,
        "actors.outcome": "stored",
    }
    assert turn.kind is SpanKind.CONSUMER
    assert turn.parent == context_of(start)
    assert linked(turn) == [context_of(start)]
    assert turn.status.status_code is StatusCode.UNSET
    assert dict(turn.attributes or {}) == {
        "actors.entity": "order",
        "actors.key": "o-1",
        "actors.generation": 1,
        "actors.handler": "place",
        "actors.message_id": 1,
        "actors.message_kind": "start",
        "messaging.system": "keyed-actors",
        "messaging.operation.type": "process",
        "actors.outcome": "ok",
    }
    assert start.instrumentation_scope is not None
    assert start.instrumentation_scope.name == "keyed-actors"


async def test_an_ask_joins_its_callers_trace_and_the_turn_span_is_current_in_the_handler(
    store_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """G2: a handler's own spans and asks are children of its turn, in the caller's trace."""
    tracer = provider.get_tracer("test")
    async with running(store_url, Order, Stock, tracer_provider=provider) as rt:
        with tracer.start_as_current_span("request") as request:
            assert await rt.ref(Order, "o-2").ask(Order.check, "apples") is True
    spans = exporter.get_finished_spans()

    ask_order = one(spans, "ask order.check")
    turn_order = one(spans, "turn order.check")
    ask_stock = one(spans, "ask stock.reserve")
    turn_stock = one(spans, "turn stock.reserve")
    assert ask_order.parent == request.get_span_context()
    assert turn_order.parent == context_of(ask_order)
    assert SEEN["check apples"] == context_of(turn_order), "the turn's span was current"
    assert ask_stock.parent == context_of(turn_order), "an ask made by the handler"
    assert turn_stock.parent == context_of(ask_stock)
    assert SEEN["apples"] == context_of(turn_stock)
    trace_id = request.get_span_context().trace_id
    assert {context_of(s).trace_id for s in (ask_order, turn_order, ask_stock, turn_stock)} == {
        trace_id
    }
    assert ask_order.attributes is not None
    assert ask_order.attributes["actors.operation"] == "ask"
    assert ask_order.attributes["actors.created"] is True


async def test_a_failing_turn_records_its_exception_and_sets_error_status(
    store_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """G3: a failed turn's span says which handler raised what, with its traceback."""
    async with running(store_url, Order, tracer_provider=provider) as rt:
        with pytest.raises(HandlerFailed):
            await rt.ref(Order, "o-3").ask(Order.refuse, "out of stock")
    turn = one(exporter.get_finished_spans(), "turn order.refuse")

    assert turn.status.status_code is StatusCode.ERROR
    assert turn.status.description == "LookupError: out of stock"
    assert turn.attributes is not None
    assert turn.attributes["actors.outcome"] == "failed"
    assert turn.attributes["actors.error_type"] == "LookupError"
    [event] = turn.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "LookupError"
    assert event.attributes["exception.message"] == "out of stock"
    assert "in refuse" in str(event.attributes["exception.stacktrace"])


async def test_a_failing_start_turn_records_that_it_failed_the_actor(
    store_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """G3: an exception in the start handler fails the generation; its span says so."""
    async with running(store_url, Order, tracer_provider=provider) as rt:
        handle = await rt.start(Order, "o-4", -5)
        with pytest.raises(Exception, match="a negative amount"):
            await handle.reply()
    turn = one(exporter.get_finished_spans(), "turn order.place")

    assert turn.status.status_code is StatusCode.ERROR
    assert turn.attributes is not None
    assert turn.attributes["actors.completion"] == "failed"
    assert turn.attributes["actors.outcome"] == "failed"


async def test_commit_spans_count_items_and_turns_and_link_what_they_store(
    store_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """G3/G4: each write batch is a span linked to the admissions of what it commits."""
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("opening"):
        # Opened inside a span: its writer and drivers must not make that span their parent.
        async with running(store_url, Order, tracer_provider=provider) as rt:
            ref = rt.ref(Order, "o-5")
            async with anyio.create_task_group() as tg:
                for n in range(5):
                    tg.start_soon(ref.tell, Order.remind, 3600.0 + n)
            await ref.ask(Order.close)  # replied after the tells' turns committed (G2)
            statistics = rt.statistics()
    spans = exporter.get_finished_spans()
    commits = named(spans, "commit")
    tells = named(spans, "tell order.remind")
    turns = [span for span in spans if span.name.startswith("turn ")]

    assert len(tells) == 5
    assert len(turns) == 6
    assert len(commits) == statistics.commits
    assert all(commit.kind is SpanKind.INTERNAL and commit.parent is None for commit in commits)
    items = [number(commit, "actors.commit.items") for commit in commits]
    counted = [number(commit, "actors.commit.turns") for commit in commits]
    assert sum(items) == statistics.committed_items
    assert sum(counted) == len(turns) == statistics.turns
    assert all(len(commit.links) <= n for commit, n in zip(commits, items, strict=True))
    for tell in tells:
        accepted, turned = committing(spans, tell)  # accepted, then its turn committed
        assert accepted.end_time is not None
        assert tell.end_time is not None
        assert accepted.end_time <= tell.end_time, "the admission ends once it is stored"
        assert number(turned, "actors.commit.turns") >= 1


async def test_a_write_the_store_refuses_sets_error_on_its_commit_and_its_admission(
    store_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """G4: an ask whose write failed was not accepted, and both spans say why."""
    async with faulty_store(store_url) as store:
        store.fail_writes(1, error=StoreError, kinds={Enqueue}, message="disk on fire")
        with anyio.fail_after(30):
            async with Runtime.open(store, entities=[Order], tracer_provider=provider) as rt:
                with pytest.raises(StorageError):
                    await rt.ref(Order, "o-8").ask(Order.close)
    spans = exporter.get_finished_spans()
    ask = one(spans, "ask order.close")
    [commit] = named(spans, "commit")

    for span, error in [
        (commit, "persistence.errors.StoreError"),
        (ask, "actors.errors.StorageError"),
    ]:
        assert span.status.status_code is StatusCode.ERROR, span.name
        assert span.status.description is not None
        assert "disk on fire" in span.status.description
        [event] = span.events
        assert event.attributes is not None
        assert event.attributes["exception.type"] == error
    assert linked(commit) == [context_of(ask)]
    assert not named(spans, "turn order.close")


async def test_duplicates_and_rejections_are_admissions_that_store_nothing(
    store_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """G5: a start of an ended actor is answered; an ask to it is rejected."""
    async with running(store_url, Order, tracer_provider=provider) as rt:
        first = await rt.start(Order, "o-6", 7)
        assert await first.reply() == 7
        await rt.ref(Order, "o-6").ask(Order.close)
        again = await rt.start(Order, "o-6", 7)
        assert not again.created
        with pytest.raises(ActorCompleted):
            await first.actor.ask(Order.check, "plums")
    spans = exporter.get_finished_spans()
    starts = named(spans, "start order.place")

    assert [s.attributes and s.attributes["actors.outcome"] for s in starts] == [
        "stored",
        "answered",
    ]
    assert [s.attributes and s.attributes["actors.created"] for s in starts] == [True, False]
    assert starts[1].attributes is not None
    assert "actors.message_id" not in starts[1].attributes
    rejected = one(spans, "ask order.check")
    assert rejected.attributes is not None
    assert rejected.attributes["actors.outcome"] == "rejected"
    assert not named(spans, "turn order.check"), "nothing was stored, so nothing ran"


async def test_a_turn_of_a_message_not_admitted_here_begins_a_trace_of_its_own(
    file_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A timer's message has no admission span: its turn is a root, with no link."""
    clock = VirtualClock()
    async with running(file_url, Order, clock=clock, tracer_provider=provider) as rt:
        await rt.ref(Order, "o-7").ask(Order.remind, 60.0)
        await clock.advance(timedelta(seconds=61))
    reminded = one(exporter.get_finished_spans(), "turn order.reminded")

    assert reminded.parent is None
    assert reminded.links == ()
    assert reminded.attributes is not None
    assert reminded.attributes["actors.message_kind"] == "timer"


async def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; its stdout."""
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    # Its own lines only: the runtime logs to stdout too (structlog's default).
    return "\n".join(
        line.removeprefix("> ") for line in done.stdout.decode().splitlines() if line[:2] == "> "
    )


ECHO = """
import anyio

from actors import Context, Entity, handler
from tests.conftest import running


class Echo(Entity):
    name = "echo"

    @handler(start=True)
    async def begin(self, ctx: Context, n: int) -> int:
        return n

    @handler
    async def echo(self, ctx: Context, text: str) -> str:
        if not text:
            raise ValueError("nothing to echo")
        return await ctx.ref(Echo, "other").ask(Echo.begin, len(text)) * text
"""

WITHOUT_OPENTELEMETRY = (
    """
import sys

sys.modules["opentelemetry"] = None  # as if the otel extra were not installed

from actors import _tracing
"""
    + ECHO
    + """

async def main() -> None:
    async with running("sqlite:///:memory:", Echo) as rt:
        assert rt._tracer is None and rt._writer.tracer is None
        handle = await rt.start(Echo, "e", 3)
        print(">", await handle.reply(), await rt.ref(Echo, "e").ask(Echo.echo, "ab"))
        try:
            await rt.ref(Echo, "e").ask(Echo.echo, "")
        except Exception as exc:
            print(">", type(exc).__name__)


anyio.run(main)
print(">", _tracing.ENABLED, _tracing.tracer(), "opentelemetry.trace" in sys.modules)
"""
)


async def test_without_opentelemetry_the_runtime_runs_with_no_tracer() -> None:
    """Without the package, no tracer is made and no tracing code runs; the rest works."""
    assert (await run_python(WITHOUT_OPENTELEMETRY)).splitlines() == [
        "3 abab",
        "HandlerFailed",
        "False None False",
    ]


GLOBAL_PROVIDER = (
    ECHO
    + """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()


async def main() -> None:
    async with running("sqlite:///:memory:", Echo) as rt:  # opened before the SDK is set up
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        await rt.ref(Echo, "e").ask(Echo.echo, "ab")


anyio.run(main)
print(">", sorted({span.name for span in exporter.get_finished_spans()}))
"""
)


async def test_by_default_spans_go_to_the_global_tracer_provider() -> None:
    """A runtime given no provider uses the global one, even one set after it opened."""
    assert (await run_python(GLOBAL_PROVIDER)).splitlines() == [
        str(["ask echo.begin", "ask echo.echo", "commit", "turn echo.begin", "turn echo.echo"])
    ]


def test_the_global_proxy_makes_no_spans_until_a_provider_is_set() -> None:
    """With the API alone (no SDK set up), spans would go nowhere: none are made.

    Setting a global provider later turns them on (the subprocess test above); a provider
    passed to ``Runtime.open`` is used as it is.
    """
    from actors import _tracing

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # this process
    assert _tracing.live(_tracing.tracer()) is None
    assert _tracing.live(None) is None
    explicit = _tracing.tracer(TracerProvider())
    assert _tracing.live(explicit) is explicit
