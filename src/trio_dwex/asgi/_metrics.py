"""`StreamMetrics`: an app's streams in the Prometheus text format, at ``GET /metrics``.

Which numbers, and why these buckets: a stream lasts from seconds to hours, so its duration
gets buckets from 1 s to a day, in a histogram of its own; no stream duration ever lands in a
request-latency histogram, where one open feed would look like the slowest request of the day.
Time to first event is latency, and gets latency buckets.

**Cost.** What happens per stream (opened, first event, closed) goes straight into the
Prometheus objects. What happens per write (events, bytes) is counted in plain integers by the
tracker, and moved into the Prometheus counters when they are read: a write costs an integer
add, not a lock.

**Under ``--workers N``** each worker is a process with its own streams, and a scrape reaches
one of them. `trio-dwex run` then points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers start: each worker writes its values there (prometheus-client's
multiprocess mode), moves its per-write counts in every ``Settings.metrics_interval`` seconds,
and any worker answers a scrape with the sum over all of them. The supervisor removes a dead
worker's open-stream gauge, and keeps its totals.
"""

from __future__ import annotations

import os

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from ..broadcast._hub import broadcast_counts
from ..streams._state import CloseReason
from ..streams._stream import dropped_events
from ..streams._tracker import Endable, StreamTracker
from ._responses import Response

__all__ = [
    "FIRST_EVENT_BUCKETS",
    "MULTIPROCESS_DIR_VARIABLE",
    "STREAM_DURATION_BUCKETS",
    "StreamMetrics",
]

#: Where prometheus-client's multiprocess mode keeps each worker's values.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds: 1 s to a day. A feed lasts minutes to hours; a stream under 1 s is a failure or a
#: one-shot answer.
STREAM_DURATION_BUCKETS = (
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
    3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 24 * 3600.0,
)  # fmt: skip
#: Seconds from a stream's start to its first event: a handler's latency.
FIRST_EVENT_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class StreamMetrics:
    """The Prometheus view of one app's `StreamTracker` (and of the process's hubs).

    The app makes one when ``Settings.metrics_path`` is set and serves `response` there.
    """

    def __init__(self, tracker: StreamTracker) -> None:
        self._tracker = tracker
        self.multiprocess = MULTIPROCESS_DIR_VARIABLE in os.environ
        # In multiprocess mode the values live in files, and a scrape reads them all; in one
        # process, each app has a registry of its own (tests make many apps in one process).
        registry = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        self._registry = registry
        self.open = Gauge(
            "trio_dwex_streams_open",
            "Event streams open now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.opened = Counter(
            "trio_dwex_streams_opened", "Event streams started.", registry=registry
        )
        self.closed = Counter(
            "trio_dwex_streams_closed",
            "Event streams ended, by why they ended.",
            ["reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "trio_dwex_stream_duration_seconds",
            "How long event streams lasted, from start to end.",
            buckets=STREAM_DURATION_BUCKETS,
            registry=registry,
        )
        self.first_event = Histogram(
            "trio_dwex_stream_first_event_seconds",
            "Seconds from a stream's start to its first event.",
            buckets=FIRST_EVENT_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "trio_dwex_events_sent", "Events written to clients.", registry=registry
        )
        self.bytes = Counter(
            "trio_dwex_stream_bytes_sent",
            "Bytes of event stream written to clients, before compression.",
            registry=registry,
        )
        self.dropped = Counter(
            "trio_dwex_events_dropped",
            "Events an overflow policy discarded (a slow client's), by policy.",
            ["policy"],
            registry=registry,
        )
        self.replays = Counter(
            "trio_dwex_broadcast_replays",
            "Broadcast subscriptions resumed from a Last-Event-ID.",
            registry=registry,
        )
        self.resets = Counter(
            "trio_dwex_broadcast_resets",
            "Resumptions answered with a reset event (the id was gone): missed events.",
            registry=registry,
        )
        for reason in CloseReason:
            self.closed.labels(reason.value)  # every reason shows, at 0 until it happens
        # Per-write and process-wide counts, moved into the counters by `flush`: each with the
        # value moved so far. The process-wide ones count from now: this app's share.
        self._moved: dict[Counter, int] = {
            self.dropped.labels("drop_newest"): dropped_events.newest,
            self.dropped.labels("drop_oldest"): dropped_events.oldest,
            self.replays: broadcast_counts.replays,
            self.resets: broadcast_counts.resets,
        }
        tracker.observe(self)

    # -- what the tracker tells, once per stream -----------------------------------------------

    def stream_opened(self, stream: Endable) -> None:
        self.open.inc()
        self.opened.inc()

    def stream_started(self, stream: Endable, delay: float) -> None:
        self.first_event.observe(delay)

    def stream_closed(self, stream: Endable, reason: CloseReason, duration: float) -> None:
        self.open.dec()
        self.closed.labels(reason.value).inc()
        self.duration.observe(duration)

    # -- reading -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Move the counts kept as plain integers into the Prometheus counters."""
        tracker = self._tracker
        self._move(self.events, tracker.events_sent)
        self._move(self.bytes, tracker.bytes_sent)
        self._move(self.dropped.labels("drop_newest"), dropped_events.newest)
        self._move(self.dropped.labels("drop_oldest"), dropped_events.oldest)
        self._move(self.replays, broadcast_counts.replays)
        self._move(self.resets, broadcast_counts.resets)

    def _move(self, counter: Counter, total: int) -> None:
        moved = self._moved.get(counter, 0)
        if total > moved:
            counter.inc(total - moved)
            self._moved[counter] = total

    async def flush_every(self, interval: float) -> None:
        """Flush every ``interval`` seconds, for ever: a worker's share of the sums that the
        other workers serve (multiprocess mode)."""
        while True:
            await trio.sleep(interval)
            self.flush()

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format: this app's, or under ``--workers N``,
        every worker's summed."""
        self.flush()
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry)

    def response(self) -> Response:
        """``GET /metrics``: the exposition, not to be cached."""
        return Response(
            self.exposition(),
            200,
            {"cache-control": "no-store"},
            media_type=CONTENT_TYPE_LATEST,
        )
