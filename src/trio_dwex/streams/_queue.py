"""`EventQueue`: the buffer between a generator route's pump and the stream's writer.

An `SseStream` is a trio memory channel (DESIGN.md keeps it so): its producers are the user's
tasks, any number of them, and its events may be read by an interceptor as well as by the
writer. A generator's events have one producer, the run's pump, and one reader, the run's
writer, and arrive already encoded. For that pair a channel does work nobody needs: per event,
the checks for waiting receivers and closed ends, the peak statistics, and a call to take each
item out again; together about an eighth of what an event costs in a burst over 500 streams
(docs/performance.md, "The generator route's own queue"). This queue keeps the bytes in a
list and counts them in the same step (it *is* the stream's `ByteBudget`), and the writer takes
everything queued with one ``join``. A list rather than a deque: the writer takes from the
front only in a write's worth at a time, an empty list is a tenth of an empty deque's size,
and ``join`` copies a deque into a list first.

The bounds are the channel's, and the budget's: at most ``max_events`` events and (unless it is
empty) ``limit`` bytes wait; the pump waits for room beyond either.
"""

from __future__ import annotations

import trio

from ._budget import ByteBudget

__all__ = ["EventQueue"]


class EventQueue(ByteBudget):
    """Encoded events from one producer to one writer, bounded in events and in bytes.

    The producer `put` s each event, or waits in `wait_for_room` when it does not fit, and
    `close` s the queue when it has no more; the writer `take` s everything queued at once
    (a `ByteBudget`'s bell tells it when to look).
    """

    __slots__ = ("_items", "max_events")

    def __init__(self, max_events: int, limit: int) -> None:
        super().__init__(limit)
        self.max_events = max_events
        self._items: list[bytes] = []

    def fits(self, size: int) -> bool:
        """Whether one more event of ``size`` bytes may be queued now."""
        return len(self._items) < self.max_events and super().fits(size)

    def put(self, data: bytes) -> bool:
        """Queue one encoded event if it fits now, and ring the bell; ``False``: it does not,
        and nothing was queued. Once per event, so `fits`, the counting and `ring` are written
        out here."""
        items = self._items
        queued = self.queued
        size = len(data)
        if queued and (queued + size > self.limit or len(items) >= self.max_events):
            return False
        items.append(data)
        self.queued = queued + size
        self.rung = True
        writer = self._writer
        if writer is not None:
            self._writer = None
            trio.lowlevel.reschedule(writer)
        return True

    async def put_waiting(self, data: bytes) -> None:
        """Queue one encoded event, waiting for room first while it does not fit."""
        await self.wait_for_room(len(data))
        self._items.append(data)
        self.add(len(data))

    def wake(self) -> None:
        """Queue an empty item, which counts for nothing: the writer wakes and sends what a
        producer's write left unsent (see ``_outlet.py``); it is queued only when the queue is
        empty, so it is always the first item the writer takes."""
        self._items.append(b"")

    def take(self, limit: int) -> tuple[bytes, int] | None:
        """Everything queued, up to ``limit`` bytes (and at least one event), as one write, and
        how many events that is; ``None`` if nothing is. Raises ``EndOfChannel`` once the queue
        is closed and empty."""
        items = self._items
        if not items:
            if self._closed:
                raise trio.EndOfChannel
            self.drained(0, more=False)
            return None
        marker = not items[0]
        if self.queued <= limit:
            count = len(items)
            data = items[0] if count == 1 else b"".join(items)
            items.clear()
            # Closed: the writer must look once more to find the end.
            self.drained(len(data), more=self._closed)
            return data, count - marker
        # More than one write's worth: the first events up to ``limit`` bytes.
        size = taken = 0
        for part in items:
            size += len(part)
            taken += 1
            if size >= limit:
                break
        data = b"".join(items[:taken])
        del items[:taken]
        self.drained(size, more=True)
        return data, taken - marker
