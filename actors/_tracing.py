"""OpenTelemetry spans around admission, turns and commits, when ``opentelemetry-api`` is there.

``tracer()`` is called once per runtime; it returns ``None`` when the package cannot be
imported, and every call site tests ``tracer is None`` before anything here runs, so a runtime
without the package makes no span and allocates nothing for tracing per message. With the
package, the tracer comes from the provider given to ``Runtime.open`` or the global one (a
no-op until an SDK is configured).

Spans: an admission (``start``, ``ask``, ``tell``, ``cancel`` accepted and stored) is a
PRODUCER span in the caller's trace, and its context is the message's creation context; a
turn is a CONSUMER span, the child of and linked to that context when the message was admitted
in this process (a new trace otherwise: recovered and timer messages, and those a turn sends
with ``ctx.tell``, which carry no context); a commit is an INTERNAL span of its own, linked to
the creation contexts of what it stores.

This module never configures OpenTelemetry (providers, exporters, propagators): applications
do. At run time it imports only ``actors.errors`` and ``persistence``, so that the runtime's
modules can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import metadata
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from actors.errors import HandlerFailed
from persistence import AdmitOutcome, EnqueueOutcome, MessageRecord, WriteOutcome

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError:  # the ``otel`` extra is not installed: tracing is off
    trace = None  # type: ignore[assignment]  # a module, or None when it is missing

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from actors._turn import TurnResult

T = TypeVar("T")

ENABLED = trace is not None
"""Whether ``opentelemetry-api`` could be imported (tracing is possible at all)."""

NAME = "keyed-actors"
"""The instrumentation scope of every span."""

MAX_LINKS = 128
"""The most links a commit span gets: the SDK's default limit, past which it drops them."""

# Attribute names: the runtime's own under ``actors.``; ``messaging.`` ones from the
# OpenTelemetry messaging conventions, so that tools recognise producers and consumers.
ENTITY = "actors.entity"
KEY = "actors.key"
GENERATION = "actors.generation"
HANDLER = "actors.handler"
MESSAGE_ID = "actors.message_id"
MESSAGE_KIND = "actors.message_kind"
OPERATION = "actors.operation"
CREATED = "actors.created"
OUTCOME = "actors.outcome"
COMPLETION = "actors.completion"
ERROR_TYPE = "actors.error_type"
ITEMS = "actors.commit.items"
TURNS = "actors.commit.turns"
SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"

_UNKNOWN = object()

# The turn whose span is current in this task, for ``turn_failed`` (set only while tracing).
_turn_span: ContextVar[Span | None] = ContextVar("actors_turn_span", default=None)

if trace is not None:
    _PRODUCER = trace.SpanKind.PRODUCER
    _CONSUMER = trace.SpanKind.CONSUMER
    _INTERNAL = trace.SpanKind.INTERNAL
    # An empty context: spans started in it begin a trace. Turns and commits run in tasks
    # that inherited whatever context opened the runtime; that must not become their parent.
    _ROOT = otel_context.Context()


def tracer(provider: TracerProvider | None = None) -> Tracer | None:
    """The tracer a runtime uses: ``None`` (no tracing) when the API is not installed."""
    if trace is None:
        return None
    try:
        version: str | None = metadata.version(NAME)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = None
    if provider is None:
        trace.get_tracer_provider()  # sets up a provider named in the environment, if any
        return trace.get_tracer(NAME, version)
    return provider.get_tracer(NAME, version)


def live(tracer: Tracer | None) -> Tracer | None:
    """``tracer`` if its spans would go anywhere, else ``None``: checked at each use.

    The global tracer is the API's proxy until an SDK sets a provider up; until then every
    span would be a no-op, yet making one costs about a sixth of a late duplicate's start.
    Checked each time, so a provider set up after the runtime opened is used from then on.
    The check reads the API's global, as its proxy tracer does: ``get_tracer_provider()``
    reads the environment at each call, a microsecond per message (``tracer()`` calls it
    once, so that a provider named in the environment is set up).
    """
    if tracer is None or not isinstance(tracer, trace.ProxyTracer):
        return tracer
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is _UNKNOWN:  # an API version without it: ask the public way
        provider = trace.get_tracer_provider()
        return None if isinstance(provider, trace.ProxyTracerProvider) else tracer
    return None if provider is None else tracer


# -- admission ----------------------------------------------------------------------------


@contextmanager
def admission(
    tracer: Tracer, operation: str, entity: str, key: str, handler: str
) -> Iterator[Span]:
    """A PRODUCER span around one ``start``/``ask``/``tell``/``cancel`` until it is stored.

    Its context becomes the message's creation context (see ``creation``). An exception
    (``Overloaded``, ``StorageError``, ``RuntimeClosed``...) is recorded and sets ERROR;
    cancellation only ends the span.
    """
    span = tracer.start_span(
        f"{operation} {entity}.{handler}",
        kind=_PRODUCER,
        attributes={
            ENTITY: entity,
            KEY: key,
            HANDLER: handler,
            OPERATION: operation,
            SYSTEM: NAME,
            OPERATION_TYPE: "publish",
        },
    )
    try:
        yield span
    except Exception as exc:
        _error(span, exc)
        raise
    finally:
        span.end()


def creation(span: Span) -> SpanContext | None:
    """What a message carries to its turn: the admission span's context, if it is real."""
    context = span.get_span_context()
    return context if context.is_valid else None


def admitted(span: Span, outcome: WriteOutcome) -> None:
    """Record on an admission span what the store made of it."""
    if not span.is_recording() or not isinstance(outcome, AdmitOutcome | EnqueueOutcome):
        return
    span.set_attribute(GENERATION, outcome.generation)
    span.set_attribute(CREATED, outcome.created)
    if outcome.message is not None:
        span.set_attribute(MESSAGE_ID, outcome.message.id)
        span.set_attribute(OUTCOME, "stored")
    elif isinstance(outcome, AdmitOutcome):
        span.set_attribute(OUTCOME, "answered")  # ended within retention: its stored result
    elif outcome.repeat_of is not None:
        span.set_attribute(MESSAGE_ID, outcome.repeat_of.id)
        span.set_attribute(OUTCOME, "repeat")  # an idempotency key already used
    else:
        # No live actor took it: an ask or tell raises ActorNotFound or ActorCompleted, a
        # cancel of an ended actor returns False. The admission itself did not fail.
        span.set_attribute(OUTCOME, "rejected")


def answered(span: Span, generation: int) -> None:
    """A duplicate start answered in memory (adopting a live generation, or its result)."""
    if span.is_recording():
        span.set_attribute(GENERATION, generation)
        span.set_attribute(CREATED, False)
        span.set_attribute(OUTCOME, "answered")


# -- turns --------------------------------------------------------------------------------


async def turn(
    tracer: Tracer,
    record: MessageRecord,
    parent: SpanContext | None,
    running: Awaitable[TurnResult],
) -> TurnResult:
    """Await ``running`` (``run_turn`` for ``record``) inside the turn's CONSUMER span.

    The span is current while the handler runs, so the spans handler code makes (and its
    asks' admissions) are its children.
    """
    if parent is None:
        context, links = _ROOT, None
    else:
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        links = (trace.Link(parent),)  # what the messaging conventions ask of a consumer
    span = tracer.start_span(
        f"turn {record.entity}.{record.handler}",
        context=context,
        kind=_CONSUMER,
        links=links,
        attributes={
            ENTITY: record.entity,
            KEY: record.key,
            GENERATION: record.generation,
            HANDLER: record.handler,
            MESSAGE_ID: record.id,
            MESSAGE_KIND: record.kind.value,
            SYSTEM: NAME,
            OPERATION_TYPE: "process",
        },
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    current = _turn_span.set(span)
    try:
        result = await running
        _turned(span, result)
    except Exception as exc:  # run_turn catches what handlers raise: this is the runtime's
        _error(span, exc)
        raise
    finally:
        _turn_span.reset(current)
        otel_context.detach(token)
        span.end()
    return result


def turn_failed(exc: Exception) -> None:
    """Record a handler's exception on the running turn's span (nothing when not tracing)."""
    span = _turn_span.get()
    if span is not None and span.is_recording():
        span.record_exception(exc)


def _turned(span: Span, result: TurnResult) -> None:
    """Record how a turn went: ``ok``, ``failed`` (ERROR) or ``rejected`` (actor ended)."""
    if not span.is_recording():
        return
    error = result.error
    if error is None:
        span.set_attribute(OUTCOME, "ok")
    elif isinstance(error, HandlerFailed):
        span.set_attribute(OUTCOME, "failed")
        span.set_attribute(ERROR_TYPE, error.error_type)
        span.set_status(trace.StatusCode.ERROR, f"{error.error_type}: {error.error_message}")
    else:
        span.set_attribute(OUTCOME, "rejected")  # for a generation that had ended
    completion = result.commit.completion
    if completion is not None:
        span.set_attribute(COMPLETION, completion.status.value)


# -- commits ------------------------------------------------------------------------------


async def commit(
    tracer: Tracer,
    writing: Awaitable[T],
    *,
    items: int,
    turns: int,
    created: Sequence[SpanContext | None],
) -> T:
    """Await ``writing`` (one write batch) inside an INTERNAL span of its own.

    ``created`` are the creation contexts of the messages the batch stores or consumes; the
    span links to each one there is (the first ``MAX_LINKS``).
    """
    contexts = islice((context for context in created if context is not None), MAX_LINKS)
    links = [trace.Link(context) for context in contexts]
    span = tracer.start_span(
        "commit",
        context=_ROOT,
        kind=_INTERNAL,
        links=links or None,
        attributes={ITEMS: items, TURNS: turns},
    )
    try:
        return await writing
    except Exception as exc:
        _error(span, exc)
        raise
    finally:
        span.end()


def _error(span: Span, exc: Exception) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
