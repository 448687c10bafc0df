"""`Outlet`: a producer writes its event to the client itself, when the writer would only
pass it on.

A stream's events normally go from their producer (the pump over a generator, or whoever
calls `SseStream.send`, such as a broadcast's fan-out) into the stream's buffer, and from
there the writer task takes them to the sink. On a sparse stream, one event per write, that
hand-over is a task switch and a pass through Trio's scheduler per event: about a fifth of the
CPU an event costs (docs/performance.md, "Producers that write their own events"). When the
writer is parked waiting for the buffer and the buffer is empty, the producer can do the write
itself, in its own task, provided the sink can write without waiting (our server's direct
write path, ``serving/_direct.py``). Order is kept: nothing is queued before the event, and
what follows it either goes the same way or queues behind it.

Everything else still goes through the writer: a socket that is full, coalescing when the
producer is ahead of the client, keep-alives, ``send_timeout``, the end of the stream. A
sink's ``write_now`` that writes only part of a frame keeps the rest and the producer wakes
the writer, which sends that rest before anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import trio

from ._budget import ByteBudget

__all__ = ["BURST_GAP", "ImmediateWriter", "Outlet"]

#: Seconds after a write (a producer's, or the writer's) during which a producer's events are
#: queued for the writer instead. A producer that is ahead of its client (a burst) would
#: otherwise pay a write per event, where the writer joins everything queued into one write: a
#: burst of 100,000 events cost four times the CPU per event written one by one (5.7 µs, not
#: 1.4). Counting the writer's writes too keeps a burst entirely to the writer: when it has
#: written a batch and waits, the producer's next event is queued, not written alone. 100 µs
#: is a few scheduler passes: a stream whose events come further apart than that gains nothing
#: from waiting, and one whose events come closer writes at most one event in 100 µs by itself.
BURST_GAP = 100e-6


# The last write of an outlet that has seen none; one float for all of them.
_NEVER = -math.inf


class ImmediateWriter(Protocol):
    """A sink's way to write without waiting (our server's ``RequestWriter`` is one)."""

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` now; ``False``: nothing was written. ``True``: all of it, or the
        rest is `pending` and goes out, first, with the sink's next ``write``."""

    @property
    def pending(self) -> bool:
        """Whether the rest of a write begun by `write_now` waits; `write_now` then refuses."""


class Outlet:
    """Where a running stream's producers offer each event's bytes before queueing them.

    It is open only while the stream's writer is parked on the buffer with nothing left to
    write: the writer `open` s it as it starts to wait and `close` s it when it wakes, the run
    closes it when it ends, an event it refuses closes it (queued, that event wakes the writer),
    and a write the socket took only in part closes it until the writer has sent the rest.
    ``last_write`` is when the stream last wrote (Trio time): an event that went out this way,
    or the writer's last write as it opened the outlet; the writer's keep-alive counts from it,
    and `BURST_GAP` too.
    """

    __slots__ = ("_budget", "_record", "_wake", "_writer", "accepting", "last_write")

    def __init__(
        self,
        budget: ByteBudget,
        wake: Callable[[], None],
        writer: ImmediateWriter,
        record: Callable[[int, int], None],
    ) -> None:
        self._budget = budget
        # Queues an empty item in the buffer, which counts for nothing: the writer wakes to it.
        self._wake = wake
        self._writer = writer
        # The run's record of what it wrote (events, bytes), for the tracker's figures.
        self._record = record
        #: Whether the writer waits with nothing to write: read it before calling `offer`
        #: (an attribute, not a call: producers ask once per event, and mostly it is false).
        self.accepting = False
        self.last_write = _NEVER

    def open(self, wrote_at: float | None) -> None:
        """The writer waits for events: producers may write theirs, once `BURST_GAP` has passed
        since the last write. ``wrote_at``: when the writer itself just wrote (Trio time), or
        ``None`` if it did not."""
        self.accepting = True
        if wrote_at is not None:
            self.last_write = wrote_at

    def close(self) -> None:
        """The writer is busy, or the stream is ending: producers queue their events."""
        self.accepting = False

    def offer(self, data: bytes) -> bool:
        """Write ``data`` (one encoded event) to the client now, if it may; ``False``: queue it.

        It may when the outlet is open, the buffer is empty, the producer's last event did not
        go this way less than `BURST_GAP` ago, and the sink takes the bytes at once.

        An event it refuses is queued, which wakes the writer, so the outlet shuts until the
        writer waits again: the rest of a burst goes straight to the buffer, with no call here
        per event.
        """
        if not self.accepting:
            return False
        if self._budget.queued:
            self.accepting = False
            return False
        now = trio.current_time()
        if now - self.last_write < BURST_GAP:
            self.accepting = False
            return False  # the producer is in a burst: the writer coalesces what follows
        writer = self._writer
        if not writer.write_now(data):
            self.accepting = False
            return False  # a full socket: queued, the writer waits for room
        self.last_write = now
        self._record(1, len(data))
        if writer.pending:
            # Written in part: the sink holds the rest and takes nothing more until it is
            # sent. The writer sends it (an empty write) and everything after goes its way.
            self.accepting = False
            self._wake()
            self._budget.ring()
        return True
