"""Producers that write their events themselves (``streams/_outlet.py``), against a sink whose
``immediate`` writer can take bytes whole, refuse them, or take part and keep the rest.

Whatever path each event takes, the bytes the client gets are every event, whole and in
order; the writer task still coalesces bursts, sends keep-alives only after real quiet, and
sends the rest of a partial write before anything else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

import trio
import trio.testing

from tests.helpers import wait_until
from trio_dwex import SseStream, StreamSettings
from trio_dwex.lowlevel import CloseReason, StreamTracker, run_stream
from trio_dwex.streams._budget import ByteBudget
from trio_dwex.streams._lease import StreamLease
from trio_dwex.streams._outlet import BURST_GAP, Outlet
from trio_dwex.streams._runner import KEEPALIVE_COMMENT, TaskStarter
from trio_dwex.wire._decoder import MessageEvent, SseDecoder
from trio_dwex.wire._sse import SseEvent


class Immediate:
    """The sink's `ImmediateWriter`: ``mode`` is ``"take"``, ``"refuse"`` or ``"half"`` (takes
    the first half of the next write and keeps the rest, then takes whole writes again)."""

    def __init__(self, sink: WireSink) -> None:
        self.sink = sink
        self.mode = "take"
        self.rest = b""
        self.writes = 0

    @property
    def pending(self) -> bool:
        return bool(self.rest)

    def write_now(self, data: bytes) -> bool:
        if self.mode == "refuse" or self.rest:
            return False
        self.writes += 1
        if self.mode == "half" and len(data) > 1:
            self.mode = "take"
            half = len(data) // 2
            self.sink.wire.append(data[:half])
            self.rest = data[half:]
            return True
        self.sink.wire.append(data)
        return True


class WireSink:
    """One byte stream (``wire``) that both the writer task and the producers write to.

    ``checkpoint``: whether a write passes through the scheduler; our server's direct write
    does not when the socket takes the bytes.
    """

    def __init__(self, *, checkpoint: bool = True) -> None:
        self.checkpoint = checkpoint
        self.wire: list[bytes] = []
        self.writer_writes: list[bytes] = []
        self.immediate = Immediate(self)
        self.gone = trio.Event()

    async def start(self, first: bytes) -> None:
        if first:
            await self.write(first)

    async def write(self, data: bytes) -> None:
        if self.checkpoint:
            await trio.lowlevel.checkpoint()
        if self.immediate.rest:  # the rest of a partial write goes first, as our server's does
            self.wire.append(self.immediate.rest)
            self.immediate.rest = b""
        self.writer_writes.append(data)
        self.wire.append(data)

    def notify_disconnect(self, callback: Callable[[], object], start_soon: TaskStarter) -> None:
        start_soon(self.watch, callback)

    async def watch(self, callback: Callable[[], object]) -> None:
        await self.gone.wait()
        callback()

    def events(self) -> list[MessageEvent]:
        return SseDecoder().feed(b"".join(self.wire))


async def spaced(count: int, gap: float = 0.002) -> AsyncIterator[SseEvent]:
    for n in range(count):
        yield SseEvent(data=f"event {n}", id=str(n))
        await trio.sleep(gap)


def ids(sink: WireSink) -> list[str | None]:
    return [event.id for event in sink.events()]


async def test_a_spaced_generator_writes_its_events_itself() -> None:
    sink = WireSink()
    tracker = StreamTracker()
    assert await run_stream(spaced(20), sink, tracker=tracker) is CloseReason.COMPLETED
    assert ids(sink) == [str(n) for n in range(20)]
    # The first event goes with the headers, by the writer; the producer wrote the others.
    assert sink.immediate.writes >= 15
    assert len(sink.writer_writes) <= 5
    assert tracker.stats()["events"] == 20


async def test_a_burst_is_coalesced_by_the_writer() -> None:
    async def burst() -> AsyncIterator[SseEvent]:
        for n in range(2000):
            yield SseEvent(data="x", id=str(n))

    sink = WireSink(checkpoint=False)
    await run_stream(burst(), sink)
    assert ids(sink) == [str(n) for n in range(2000)]
    # The writer's own writes count for BURST_GAP: when it has written a full buffer and waits,
    # the producer's next event is queued, not written alone; each write carries a buffer.
    assert sink.immediate.writes <= 3
    assert len(sink.writer_writes) < 20


async def test_a_sink_that_refuses_gets_every_event_through_the_writer() -> None:
    sink = WireSink()
    sink.immediate.mode = "refuse"
    await run_stream(spaced(10), sink)
    assert ids(sink) == [str(n) for n in range(10)]
    assert sink.immediate.writes == 0


async def test_the_rest_of_a_partial_write_goes_before_the_next_event() -> None:
    async def source() -> AsyncIterator[SseEvent]:
        for n in range(12):
            if n == 5:
                sink.immediate.mode = "half"
            if n == 8:
                sink.immediate.mode = "refuse"  # the rest is sent by the writer meanwhile
            yield SseEvent(data=f"event {n} " + "y" * 50, id=str(n))
            await trio.sleep(0.002)

    sink = WireSink()
    tracker = StreamTracker()
    await run_stream(source(), sink, tracker=tracker)
    assert ids(sink) == [str(n) for n in range(12)]
    assert all(event.data.startswith(f"event {event.id} ") for event in sink.events())
    assert sink.immediate.rest == b""
    # The partial event was counted once, as written; the writer's wake-up counts nothing.
    assert tracker.stats()["events"] == 12


async def test_a_partial_last_event_is_completed_without_waiting_for_more() -> None:
    stream = SseStream()
    sink = WireSink()

    async def produce() -> None:
        await stream.send({"n": 0})
        await trio.sleep(0.01)
        sink.immediate.mode = "half"
        await stream.send({"n": 1})
        await trio.sleep_forever()  # nothing more comes: the writer must send the rest now

    stream.start_soon(produce)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, stream, sink)
        await wait_until(lambda: len(sink.events()) == 2)
        sink.gone.set()
    assert [event.json() for event in sink.events()] == [{"n": 0}, {"n": 1}]


async def test_send_nowait_from_another_task_writes_at_once_and_in_order() -> None:
    stream = SseStream()
    sink = WireSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, stream, sink)
        for n in range(30):
            assert stream.send_nowait(SseEvent(data="tick", id=str(n)))
            await trio.sleep(BURST_GAP * 20)
        stream.close()
    assert ids(sink) == [str(n) for n in range(30)]
    assert sink.immediate.writes >= 20


async def test_nothing_is_written_by_producers_once_the_stream_ends() -> None:
    stream = SseStream()
    sink = WireSink()
    tracker = StreamTracker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_stream, stream, sink, tracker=tracker, lease=StreamLease()))
        for n in range(2):  # the first goes with the headers, the second by its producer
            await stream.send({"n": n})
            await trio.sleep(0.01)
        # Ended from outside (a revocation); its writer has not even woken up yet.
        assert tracker.close_where(lambda lease: True) == 1
        stream.send_nowait({"n": 2})
        await trio.sleep(0.01)
        assert not stream.send_nowait({"n": 3})
    assert [event.json() for event in sink.events()] == [{"n": 0}, {"n": 1}]
    assert sink.immediate.writes == 1


async def test_keepalives_count_quiet_from_the_producers_last_write(
    autojump_clock: trio.testing.MockClock, keepalive_tracker: StreamTracker | None
) -> None:
    stream = SseStream()
    sink = WireSink()
    settings = StreamSettings(keepalive=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, stream, sink, settings, keepalive_tracker)
        for n in range(10):  # an event every 0.4 s for 4 s: never a second of quiet
            assert stream.send_nowait({"n": n})
            await trio.sleep(0.4)
        assert KEEPALIVE_COMMENT not in sink.wire
        last = trio.current_time() - 0.4
        await wait_until(lambda: KEEPALIVE_COMMENT in sink.wire)
        # A keep-alive once the stream has been quiet for the interval, not before.
        assert 1.0 <= trio.current_time() - last <= 1.1
        stream.close()
    assert sink.immediate.writes >= 8


async def test_an_event_queued_for_the_writer_is_never_overtaken() -> None:
    stream = SseStream()
    sink = WireSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, stream, sink)
        await stream.send({"n": 0})
        await trio.sleep(0.01)
        for n in range(1, 11, 2):
            # Refused (a full socket): queued, and the writer is woken but has not run yet...
            sink.immediate.mode = "refuse"
            assert stream.send_nowait({"n": n})
            # ...so the next event, though the socket would now take it, queues behind it.
            sink.immediate.mode = "take"
            assert stream.send_nowait({"n": n + 1})
            await trio.sleep(BURST_GAP * 2)
        stream.close()
    assert [event.json() for event in sink.events()] == [{"n": n} for n in range(11)]


async def test_an_outlet_that_refuses_an_event_stays_shut_until_the_writer_waits_again() -> None:
    # A refused event is queued and wakes the writer, so the rest of a burst skips the outlet
    # (no call per event) until the writer has written and opens it again.
    sink = WireSink()
    immediate = sink.immediate
    budget = ByteBudget(1024)
    outlet = Outlet(budget, lambda: None, immediate, lambda events, size: None)

    def refused(data: bytes) -> bool:
        taken = outlet.offer(data)
        return not taken and not outlet.accepting

    outlet.open(None)
    budget.add(3)  # an event waits in the buffer
    assert refused(b"one")
    budget.drained(3, more=False)

    outlet.open(trio.current_time())  # the writer has just written: a burst
    assert refused(b"two")

    outlet.open(trio.current_time() - 2 * BURST_GAP)
    immediate.mode = "refuse"  # a full socket
    assert refused(b"three")

    outlet.open(trio.current_time() - 2 * BURST_GAP)
    immediate.mode = "take"
    assert outlet.offer(b"four")
    assert outlet.accepting  # the next event may go the same way, once BURST_GAP has passed
    assert sink.wire == [b"four"]
