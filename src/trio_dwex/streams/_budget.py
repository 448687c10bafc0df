"""`ByteBudget`: the bytes a stream's buffer holds, bounded alongside its count of events.

A trio memory channel bounds its items by number. Events differ in size by a factor of a
million (a keep-alive against a 1 MB post), so a buffer of 256 events can hold 256 MB: a few
clients that stop reading, and a producer posting large events, would take the server down.
Each stream's buffer therefore has a budget in bytes as well, kept here: producers `add`
what they queue, the writer `release`s what it takes out (once per write, not per event), and
a producer that does not fit waits in `wait_for_room` or applies its overflow policy.

An empty buffer takes any one event, however large: an event is never refused for size
alone, only for arriving while others wait (a stream-wide limit on event size is the job of
the limits on request bodies and broadcast events).

Since every producer counts what it queues here, the budget is also the writer's **bell**:
`add` (and `close`) ring it, and a writer that found the buffer empty waits for the ring
(`wait_for_ring`) instead of in the trio channel's ``receive()``. An `SseStream`'s events stay
in its channel; what changes is how the writer waits, and that matters per open stream: a task
parked in ``receive()`` holds about 1 KiB (the channel's set and table of waiting tasks, a
closure, the frame object that the ``WouldBlock`` it caught made CPython build), for as long as
the stream is idle, which is most of its life. (A generator's events wait in an `EventQueue`,
``_queue.py``: a budget that holds the events as well.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import trio

__all__ = ["DEFAULT_BUFFER_BYTES", "ByteBudget", "Take", "check_buffer_bytes"]

#: Bytes of encoded events a stream may hold for a client that reads slower than its producer
#: writes, besides its count of events: 256 events of 1 KiB. See docs/reliability.md for what
#: it means for memory with many stalled clients.
DEFAULT_BUFFER_BYTES = 256 * 1024

Take = Callable[[int], tuple[bytes, int] | None]
"""How a stream's writer takes from its buffer: everything queued, up to a limit in bytes, as
one write, and how many events that is; ``None`` if nothing is; ``EndOfChannel`` once the
buffer is closed and empty (`SseStream._take`, `EventQueue.take`)."""


def check_buffer_bytes(owner: str, value: object) -> int:
    """``value`` if it is a positive int, else a ``ValueError`` naming ``owner``'s setting."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner} buffer_bytes must be a positive int, got {value!r}")
    return value


class ByteBudget:
    """Bytes queued in one stream's buffer and not yet taken by its writer.

    Attributes:
        limit: the bytes the buffer may hold (an empty buffer takes one event of any size).
        queued: the bytes it holds now.
        rung: whether the bell rang since the writer last took what was queued: something
            may wait in the buffer (or it was closed), so the writer must look before it waits.
    """

    __slots__ = ("_closed", "_room", "_writer", "limit", "queued", "rung")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self._closed = False
        # The producers waiting for room; made when the first one waits (most streams never
        # fill, and a parking lot with its ordered dict is 0.4 KiB per stream).
        self._room: trio.lowlevel.ParkingLot | None = None
        # The writer, while it waits for the bell.
        self._writer: trio.lowlevel.Task | None = None
        # Events may be queued before the stream runs: the writer looks first.
        self.rung = True

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes may be queued now."""
        return self.queued == 0 or self.queued + size <= self.limit

    def add(self, size: int) -> None:
        """Count ``size`` bytes as queued, and ring the bell: the item is queued before the
        producer's next checkpoint, so before the writer runs."""
        self.queued += size
        self.ring()

    def admit(self, size: int) -> bool:
        """`add` ``size`` bytes if they `fit <fits>` now; ``False``: they do not, and nothing
        was counted. One call where producers would make two, once per event, so `fits` and
        `add` (with `ring`) are written out here."""
        queued = self.queued
        if queued and queued + size > self.limit:
            return False
        self.queued = queued + size
        self.rung = True
        writer = self._writer
        if writer is not None:
            self._writer = None
            trio.lowlevel.reschedule(writer)
        return True

    def ring(self) -> None:
        """Tell the writer to look at the buffer: something was queued, or it was closed."""
        self.rung = True
        writer = self._writer
        if writer is not None:
            self._writer = None
            trio.lowlevel.reschedule(writer)

    def wait_for_ring(self) -> Coroutine[Any, Any, object]:
        """Wait until the bell rings; await it, in the writer, once ``rung`` is false.

        Not an ``async def``: the writer awaits Trio's own wait directly, one suspended frame
        less per idle stream.
        """
        if self._writer is not None:
            raise trio.BusyResourceError("a stream's buffer has one writer")
        self._writer = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._stop_waiting)  # noqa: ASYNC105

    def _stop_waiting(self, _: object) -> trio.lowlevel.Abort:
        self._writer = None
        return trio.lowlevel.Abort.SUCCEEDED

    def drained(self, size: int, *, more: bool) -> None:
        """The writer took ``size`` bytes out in one go (see `release`); the bell is quiet
        again unless ``more``: the writer stopped at its limit or found the buffer's end, and
        must look again before it waits."""
        self.rung = more
        self.release(size)

    def release(self, size: int) -> None:
        """Count ``size`` bytes as taken out, and wake the producers that wait for room."""
        self.queued -= size
        room = self._room
        if room:
            room.unpark_all()

    async def wait_for_room(self, size: int) -> None:
        """Wait until ``size`` bytes fit, or the budget is closed (then return at once)."""
        while not self._closed and not self.fits(size):
            if self._room is None:
                self._room = trio.lowlevel.ParkingLot()
            await self._room.park()

    def close(self) -> None:
        """No more room will be waited for: wake every waiting producer for good, and ring
        the bell (the buffer is closed too, or about to be: the writer finds its end)."""
        self._closed = True
        if self._room is not None:
            self._room.unpark_all()
        self.ring()
