"""``--tracing``: what the suite's subprocesses do about OpenTelemetry (docs/tracing.md).

- ``off``: the subprocess blocks ``import opentelemetry`` before anything loads, as if the
  ``otel`` extra were not installed: the runtime makes no tracer and runs no tracing code.
- ``api``: as installed, with no SDK configured (the default): the API's no-op tracer.
- ``sdk``: an SDK ``TracerProvider`` set as the global one, with a ``BatchSpanProcessor``
  (as in production) feeding an exporter that counts the spans and drops them, so that the
  figures hold the cost of making and processing spans, not of shipping them anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult

__all__ = ["TRACING", "command", "set_up"]

TRACING = ("off", "api", "sdk")

_BLOCKED = (
    "import sys; sys.modules['opentelemetry'] = None; "
    "from benchmarks.suite import main; sys.exit(main())"
)


def command(mode: str) -> list[str]:
    """How a subprocess of the suite starts, before its arguments."""
    if mode == "off":
        return [sys.executable, "-c", _BLOCKED]
    return [sys.executable, "-m", "benchmarks.suite"]


def set_up(mode: str) -> Callable[[], int] | None:
    """Prepare this subprocess for ``mode``; for ``sdk``, what returns the spans exported.

    Raises:
        RuntimeError: ``off`` was asked for, yet the runtime can trace.
    """
    from actors import _tracing

    if mode == "off" and _tracing.ENABLED:
        raise RuntimeError("--tracing off: opentelemetry was importable after all")
    if mode != "sdk":
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Counting(SpanExporter):
        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

    exporter = Counting()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    def finish() -> int:
        provider.shutdown()  # exports what is still queued
        return exporter.exported

    return finish
