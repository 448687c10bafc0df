"""`KeepaliveClock`: one task that wakes an app's idle stream writers when a keep-alive is due.

A stream's writer sends a keep-alive comment after ``keepalive`` quiet seconds. Trio has no
timer but a cancel scope's deadline, so a writer waiting with its own deadline keeps a
`trio.CancelScope` for as long as its stream is open: the scope, its ``CancelStatus`` with two
sets, and an entry in Trio's deadline heap, about 0.7 KiB per idle stream (docs/performance.md,
"The keep-alive clock"). An app may hold tens of thousands of idle streams, so its writers
share this clock instead: each has an `Alarm`, the clock keeps one heap of them, and when an
alarm's time comes it rings the writer's bell (`ByteBudget.ring`). The writer wakes, finds
nothing queued, and decides for itself whether the keep-alive is due (it may have written
since it set the alarm); the clock never writes.

Alarms are set lazily: a writer that writes does not move its alarm, which rings at the time
first set and is set again by the writer if the stream was not quiet for long enough. A busy
stream therefore costs the clock one ring per keep-alive interval, and nothing per event.

The clock runs in a nursery that outlives the streams (the app's lifespan runs it). A writer
whose clock is not running (a run without a tracker, an app served without its lifespan, or
the moments after the lifespan ended) waits with a deadline of its own, as before; when the
clock stops it rings every alarm, so no writer keeps waiting for a clock that is gone.

An ended stream's writer releases its alarm, which then holds nothing of the stream; its entry
leaves the heap at its time, or sooner, when released entries make up most of the heap.
"""

from __future__ import annotations

import heapq
import math

import trio

from ._budget import ByteBudget

__all__ = ["KEEPALIVE_SLACK", "Alarm", "KeepaliveClock"]

#: Seconds the clock may ring late, so that alarms due close together ring in one pass: ten
#: thousand streams opened within a second then wake the clock a few hundred times, not ten
#: thousand. A keep-alive only has to come before a proxy's idle timeout (tens of seconds).
KEEPALIVE_SLACK = 0.005

# Released alarms, beyond half of the heap, at which the clock drops them from its heap rather
# than wait for their times: a server whose streams come and go by the thousand would
# otherwise keep each one's entry for a whole keep-alive interval.
_PRUNE_AT = 512


class Alarm:
    """One writer's alarm on a `KeepaliveClock`: rings the writer's bell at a time it sets.

    Attributes:
        due: the earliest time the alarm is set for, or ``inf`` when it is not set.
    """

    __slots__ = ("_bell", "due")

    def __init__(self, bell: ByteBudget) -> None:
        self._bell: ByteBudget | None = bell
        self.due = math.inf

    def __lt__(self, other: Alarm) -> bool:
        # Two alarms set for the same time meet in the heap's tuples; any order will do.
        return id(self) < id(other)

    def ring(self, at: float) -> None:
        """The clock's call: the time ``at`` came; ring the bell (the writer looks)."""
        if at >= self.due:
            self.due = math.inf  # no earlier setting is left in the heap
        if self._bell is not None:
            self._bell.ring()

    @property
    def released(self) -> bool:
        """Whether its writer is done with it (`KeepaliveClock.release`)."""
        return self._bell is None

    def cancel(self) -> None:
        """Ring nothing from now on, and let go of the bell."""
        self._bell = None


class KeepaliveClock:
    """Wakes stream writers at the times their `Alarm` s are set for; `run` it in a nursery.

    Attributes:
        running: whether `run` is running: only then may alarms be `set`.
    """

    __slots__ = ("_heap", "_released", "_scope", "_stopped", "running")

    def __init__(self) -> None:
        self._heap: list[tuple[float, Alarm]] = []
        # Entries of released alarms still in the heap (about: an alarm may have two).
        self._released = 0
        # The scope the clock sleeps in; its deadline is the next alarm's time.
        self._scope: trio.CancelScope | None = None
        # Set when a run ends, for a second run waiting to take over (made when one waits).
        self._stopped: trio.Event | None = None
        self.running = False

    def alarm(self, bell: ByteBudget) -> Alarm:
        """A new alarm that rings ``bell`` (a writer's: `ByteBudget.ring`) when it is `set` for."""
        return Alarm(bell)

    @property
    def entries(self) -> int:
        """Entries in the clock's heap: alarms set, and released ones not yet dropped."""
        return len(self._heap)

    def release(self, alarm: Alarm) -> None:
        """``alarm``'s writer is done: it rings nothing from now on and lets go of its bell.

        Its entry leaves the heap when its time comes, or sooner, when released entries make
        up more than half of the heap.
        """
        alarm.cancel()
        if alarm.due < math.inf:
            self._released += 1
            heap = self._heap
            if self._released > len(heap) // 2 + _PRUNE_AT:
                # In place: a running clock holds the list.
                heap[:] = [entry for entry in heap if not entry[1].released]
                heapq.heapify(heap)
                self._released = 0

    def set(self, alarm: Alarm, due: float) -> None:
        """Ring ``alarm`` at ``due`` (Trio time), or earlier if it is set earlier already.

        Only while the clock is `running`.
        """
        if due >= alarm.due:
            return  # it rings at an earlier time; the writer sets it again then if need be
        alarm.due = due
        heapq.heappush(self._heap, (due, alarm))
        scope = self._scope
        if scope is not None and due + KEEPALIVE_SLACK < scope.deadline:
            scope.deadline = due + KEEPALIVE_SLACK

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Ring alarms as their times come, until cancelled; then ring every alarm left.

        An app served by two servers at once runs its clock twice: the second run waits, and
        takes over if the first ends before it.
        """
        task_status.started()
        while self.running:
            if self._stopped is None:
                self._stopped = trio.Event()
            await self._stopped.wait()
        self.running = True
        heap = self._heap
        try:
            while True:
                first = heap[0][0] + KEEPALIVE_SLACK if heap else math.inf
                with trio.CancelScope(deadline=first) as self._scope:
                    await trio.sleep_forever()
                now = trio.current_time()
                while heap and heap[0][0] <= now:
                    due, alarm = heapq.heappop(heap)
                    if alarm.released:
                        self._released = max(0, self._released - 1)
                    else:
                        alarm.ring(due)
        finally:
            self.running = False
            self._scope = None
            if self._stopped is not None:
                self._stopped.set()
                self._stopped = None
            # The writers waiting on the clock look again, and wait with deadlines of their own.
            left, heap[:] = heap[:], []
            self._released = 0
            for due, alarm in left:
                alarm.ring(due)
