"""`StreamSpans`: one OpenTelemetry span per stream, when ``opentelemetry-api`` is installed.

A stream's span starts when it opens, in the stream's own task, so it is a child of whatever
span is current there (an ASGI instrumentation's request span); it gets an event at the
first event sent, and ends with the stream, with why it ended. Without an SDK configured, the
API's tracer does nothing, cheaply.
"""

from __future__ import annotations

from typing import Any

from ..streams._state import CloseReason
from ..streams._tracker import Endable, StreamTracker

__all__ = ["SPAN_NAME", "StreamSpans", "trace_streams"]

try:
    from opentelemetry import trace
except ImportError:  # optional: `pip install opentelemetry-api` (and an SDK to export)
    trace = None  # type: ignore[assignment]

#: The name of every stream's span.
SPAN_NAME = "sse stream"


class StreamSpans:
    """A span per stream of one tracker: opened, first event, closed with its reason."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        self._spans: dict[Endable, Any] = {}

    def stream_opened(self, stream: Endable) -> None:
        attributes = {}
        lease = stream.lease
        if lease is not None and lease.client is not None:
            attributes["client.address"] = lease.client
        self._spans[stream] = self._tracer.start_span(SPAN_NAME, attributes=attributes)

    def stream_started(self, stream: Endable, delay: float) -> None:
        span = self._spans.get(stream)
        if span is not None:
            span.add_event("first event", {"trio_dwex.stream.first_event_delay_s": delay})

    def stream_closed(self, stream: Endable, reason: CloseReason, duration: float) -> None:
        span = self._spans.pop(stream, None)
        if span is None:
            return
        span.set_attribute("trio_dwex.stream.close_reason", reason.value)
        if reason is CloseReason.ERROR:
            assert trace is not None  # a span exists only with the package
            span.set_status(trace.Status(trace.StatusCode.ERROR, "the stream failed"))
        span.end()


def trace_streams(tracker: StreamTracker) -> StreamSpans | None:
    """Give each of ``tracker``'s streams a span, if OpenTelemetry is installed; the observer."""
    if trace is None:
        return None
    spans = StreamSpans(trace.get_tracer("trio_dwex"))
    tracker.observe(spans)
    return spans
