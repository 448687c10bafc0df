"""`StreamTracker`: an app's open streams, counted by outcome and by owner, ended on purpose.

It ends them all at shutdown (`close_all`), or the ones that match (`close_where`: a user's
streams at logout).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Protocol, TypedDict

import trio

from ._clock import KeepaliveClock
from ._lease import StreamLease
from ._state import CloseReason

__all__ = ["Endable", "StreamObserver", "StreamStats", "StreamTracker"]


class Endable(Hashable, Protocol):
    """A running stream as the tracker sees it: something it can end (the runner's run)."""

    #: Whose the stream is, if a guard said (see `StreamLease`).
    lease: StreamLease | None

    def end(self, reason: CloseReason) -> None:
        """Begin to end the stream now, for ``reason``; its cleanup runs as for any end."""

    def end_at(self, reason: CloseReason, deadline: float) -> None:
        """End the stream at ``deadline`` (Trio time), for ``reason``, unless it ends before."""


class StreamObserver(Protocol):
    """What a tracker tells of its streams as they open, start and end (the app's metrics,
    its tracing). Called in the stream's own task, once per stream and step."""

    def stream_opened(self, stream: Endable) -> None:
        """``stream`` started."""

    def stream_started(self, stream: Endable, delay: float) -> None:
        """``stream`` sent its first event, ``delay`` seconds after it started."""

    def stream_closed(self, stream: Endable, reason: CloseReason, duration: float) -> None:
        """``stream``, which lasted ``duration`` seconds, ended for ``reason``."""


class StreamStats(TypedDict):
    """What `StreamTracker.stats` (and ``DwexApp.stats()``) returns: plain JSON-able values."""

    #: Streams running now.
    open: int
    #: Streams started since the tracker was made.
    opened: int
    #: Streams ended, keyed by `CloseReason` value (every reason present, 0 if none).
    closed: dict[str, int]
    #: Events written to clients (a coalesced write of three events counts three).
    events: int
    #: Bytes of event stream written to clients (events, comments, fields), before any
    #: compression.
    bytes: int


class StreamTracker:
    """Counts an app's streams by outcome, and ends them all at shutdown.

    A stream's run calls `register` when it starts and `unregister` when it is over
    (`run_stream` does both when given the tracker).

    Attributes:
        opened: streams started since the tracker was made.
        closed: streams ended, by `CloseReason`.
        events_sent: events written to clients (`record_sent`).
        bytes_sent: bytes of event stream written to clients, before any compression.
        clock: wakes the streams' writers when a keep-alive is due; the app's lifespan
            `runs <KeepaliveClock.run>` it (until it does, each writer keeps a timer of its own).
    """

    def __init__(self) -> None:
        self.opened = 0
        self.clock = KeepaliveClock()
        self.closed: Counter[CloseReason] = Counter()
        self.events_sent = 0
        self.bytes_sent = 0
        self._observers: tuple[StreamObserver, ...] = ()
        # Each open stream with the owner and client it was counted under as it opened (a
        # lease changed later must not unbalance the counts), and when it opened.
        self._open: dict[Endable, tuple[str | None, str | None, float]] = {}
        self._owners: Counter[str] = Counter()
        self._clients: Counter[str] = Counter()
        self._shutting_down = False

    @property
    def open_count(self) -> int:
        """Streams running now."""
        return len(self._open)

    @property
    def shutting_down(self) -> bool:
        """True once `close_all` was called; new streams are refused from then on."""
        return self._shutting_down

    def open_for(self, *, owner: str | None = None, client: str | None = None) -> int:
        """Streams open now for ``owner`` (a `StreamLease.owner`) or from ``client``."""
        if owner is not None:
            return self._owners[owner]
        if client is not None:
            return self._clients[client]
        raise TypeError("StreamTracker.open_for() needs an owner or a client")

    def observe(self, observer: StreamObserver) -> None:
        """Tell ``observer`` of every stream from now on."""
        self._observers += (observer,)

    def register(self, stream: Endable) -> None:
        """Count ``stream`` as open: `close_all` ends it until it is unregistered."""
        self.opened += 1
        for observer in self._observers:
            observer.stream_opened(stream)
        lease = stream.lease
        owner = client = None
        if lease is not None:
            owner, client = lease.owner, lease.client
            if owner is not None:
                self._owners[owner] += 1
            if client is not None:
                self._clients[client] += 1
        self._open[stream] = (owner, client, time.monotonic())

    def record_sent(self, events: int, size: int) -> None:
        """A stream wrote ``events`` events (or none: a comment) in ``size`` bytes."""
        self.events_sent += events
        self.bytes_sent += size

    def record_first_event(self, stream: Endable) -> None:
        """``stream`` wrote its first event: how long that took is the observer's to know."""
        opened = self._open.get(stream)
        if opened is not None:
            for observer in self._observers:
                observer.stream_started(stream, time.monotonic() - opened[2])

    def unregister(self, stream: Endable, reason: CloseReason) -> None:
        """``stream`` is over, for ``reason``: count it as closed."""
        opened = self._open.pop(stream, None)
        if opened is not None:
            _uncount(self._owners, opened[0])
            _uncount(self._clients, opened[1])
            for observer in self._observers:
                observer.stream_closed(stream, reason, time.monotonic() - opened[2])
        self.closed[reason] += 1

    def close_where(
        self,
        predicate: Callable[[StreamLease], bool],
        reason: CloseReason = CloseReason.REVOKED,
    ) -> int:
        """End the open streams whose lease ``predicate`` accepts; how many it ended.

        How an app takes back what a guard gave: ``close_where(lambda lease: lease.owner ==
        user)`` at logout or when a user's rights change. Each stream ends for ``reason`` (its
        cleanup runs, its client is told when to come back, and the guard decides then); a
        stream opened without a lease is never matched.
        """
        matched = [
            stream for stream in self._open if stream.lease is not None and predicate(stream.lease)
        ]
        for stream in matched:
            stream.end(reason)
        return len(matched)

    def close_all(self, spread: float = 0.0) -> None:
        """End every open stream (reason `CloseReason.SHUTDOWN`) and refuse new ones.

        With ``spread`` (seconds), each stream ends at a random moment within that window
        rather than now, so that their clients do not all reconnect (to the other servers) in
        the same second; new streams are refused from now on either way.
        """
        self._shutting_down = True
        if spread <= 0:
            for stream in list(self._open):
                stream.end(CloseReason.SHUTDOWN)
            return
        now = trio.current_time()
        for stream in list(self._open):
            stream.end_at(CloseReason.SHUTDOWN, now + random.uniform(0, spread))

    def accept_new(self) -> None:
        """Accept new streams again after `close_all` (an app served again, as in tests)."""
        self._shutting_down = False

    def stats(self) -> StreamStats:
        """A JSON-able snapshot, for a metrics endpoint or a test."""
        return {
            "open": self.open_count,
            "opened": self.opened,
            "closed": {reason.value: self.closed[reason] for reason in CloseReason},
            "events": self.events_sent,
            "bytes": self.bytes_sent,
        }


def _uncount(counts: Counter[str], key: str | None) -> None:
    if key is not None:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]  # an owner with no stream left takes no memory
