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
"""

from __future__ import annotations

import trio

__all__ = ["DEFAULT_BUFFER_BYTES", "ByteBudget", "check_buffer_bytes"]

#: Bytes of encoded events a stream may hold for a client that reads slower than its producer
#: writes, besides its count of events: 256 events of 1 KiB. See docs/reliability.md for what
#: it means for memory with many stalled clients.
DEFAULT_BUFFER_BYTES = 256 * 1024


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
    """

    __slots__ = ("_closed", "_room", "limit", "queued")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self._closed = False
        self._room = trio.lowlevel.ParkingLot()

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes may be queued now."""
        return self.queued == 0 or self.queued + size <= self.limit

    def add(self, size: int) -> None:
        """Count ``size`` bytes as queued."""
        self.queued += size

    def release(self, size: int) -> None:
        """Count ``size`` bytes as taken out, and wake the producers that wait for room."""
        self.queued -= size
        if self._room:
            self._room.unpark_all()

    async def wait_for_room(self, size: int) -> None:
        """Wait until ``size`` bytes fit, or the budget is closed (then return at once)."""
        while not self._closed and not self.fits(size):
            await self._room.park()

    def close(self) -> None:
        """No more room will be waited for: wake every waiting producer for good."""
        self._closed = True
        self._room.unpark_all()
