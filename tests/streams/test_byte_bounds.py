"""Stream buffers bounded in bytes as well as events: every overflow policy, waiting producers,
and the writer giving the room back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_dwex import OverflowPolicy, SseStream, StreamSettings
from trio_dwex.broadcast import Broadcast
from trio_dwex.lowlevel import CloseReason, run_stream
from trio_dwex.wire._sse import SseEvent

from .test_runner import MemorySink

PAD = "x" * 1000


def event(n: int) -> dict[str, object]:
    """Events of one size (n < 10), about 1 KB each."""
    return {"n": n, "pad": PAD}


SIZE = len(SseEvent(data=event(0)).encode())


def bounded(overflow: OverflowPolicy = OverflowPolicy.CLOSE, events: int = 2) -> SseStream:
    """A stream with room for 100 events but the bytes of only ``events``."""
    return SseStream(buffer_size=100, buffer_bytes=events * SIZE, overflow=overflow)


async def drain(stream: SseStream) -> list[object]:
    stream.close()
    sink = MemorySink()
    await run_stream(stream, sink)
    return [item["n"] for item in sink.events()]  # type: ignore[index]


async def test_close_policy_closes_when_the_bytes_are_full() -> None:
    stream = bounded()
    assert stream.send_nowait(event(0))
    assert stream.send_nowait(event(1))
    assert stream.send_nowait(event(2)) is False
    assert stream.close_reason is CloseReason.OVERFLOW


async def test_drop_newest_keeps_what_fits_in_bytes() -> None:
    stream = bounded(OverflowPolicy.DROP_NEWEST)
    for n in range(5):
        stream.send_nowait(event(n))
    assert await drain(stream) == [0, 1]


async def test_drop_oldest_discards_until_the_new_event_fits() -> None:
    stream = bounded(OverflowPolicy.DROP_OLDEST)
    for n in range(5):
        assert stream.send_nowait(event(n))
    assert await drain(stream) == [3, 4]
    # An event as large as the whole budget pushes out everything before it.
    stream = bounded(OverflowPolicy.DROP_OLDEST)
    stream.send_nowait(event(0))
    stream.send_nowait(event(1))
    assert stream.send_nowait({"n": 9, "pad": PAD * 2})
    assert await drain(stream) == [9]


async def test_an_empty_buffer_takes_one_event_of_any_size() -> None:
    stream = SseStream(buffer_bytes=10)
    assert stream.send_nowait(event(0))  # far over 10 bytes, but alone
    assert stream.send_nowait(event(1)) is False
    assert stream.close_reason is CloseReason.OVERFLOW


async def test_send_waits_for_bytes_until_a_reader_takes_events() -> None:
    stream = bounded()
    sent: list[int] = []

    async def produce() -> None:
        for n in range(5):
            await stream.send(event(n))
            sent.append(n)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == [0, 1]  # the third waits: two events fill the bytes
            received = []
            async for item in stream:
                received.append(item.data["n"])
                await trio.testing.wait_all_tasks_blocked()
                # Taking one event makes room for exactly one more.
                assert len(sent) == min(5, len(received) + 2)
                if len(received) == 5:
                    break
    assert received == [0, 1, 2, 3, 4]


async def test_a_send_waiting_for_bytes_fails_when_the_stream_closes() -> None:
    stream = bounded(events=1)
    await stream.send(event(0))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def blocked() -> None:
                with pytest.raises(Exception, match="closed while send\\(\\) waited"):
                    await stream.send(event(1))

            nursery.start_soon(blocked)
            await trio.testing.wait_all_tasks_blocked()
            stream.close()


async def test_a_send_cancelled_while_the_buffer_is_full_of_events_gives_its_bytes_back() -> None:
    # Room in bytes for two events but for one event only: a second send waits for the
    # event bound. Cancelled there, its event was never queued, so its bytes must not stay
    # counted; else, once the first event is taken, the empty buffer would refuse an event.
    stream = SseStream(buffer_size=1, buffer_bytes=2 * SIZE)
    await stream.send(event(0))
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.send(event(1))
    events = aiter(stream)
    assert (await anext(events)).data == event(0)
    # The buffer is empty again, and an empty buffer takes one event of any size.
    assert stream.send_nowait({"n": 2, "pad": PAD * 2})
    assert not stream.is_closed


async def test_the_writer_gives_the_bytes_back_as_it_writes() -> None:
    # Twenty events through a buffer with the bytes of two: the producer waits for room each
    # time, so the run finishes only if every write releases what it took.
    stream = bounded()

    async def produce() -> None:
        for n in range(20):
            await stream.send(event(n % 10))
        stream.close()

    stream.start_soon(produce)
    sink = MemorySink()
    with trio.fail_after(5):
        assert await run_stream(stream, sink) is CloseReason.CLOSED
    assert [item["n"] for item in sink.events()] == [n % 10 for n in range(20)]  # type: ignore[index]


async def count_produced_into_a_stalled_client(settings: StreamSettings) -> int:
    produced = 0

    async def source() -> AsyncIterator[object]:
        nonlocal produced
        for n in range(100):
            produced += 1
            yield event(n % 10)

    sink = MemorySink()
    sink.stall = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, source(), sink, settings)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return produced


async def test_a_generator_waits_at_yield_once_its_bytes_are_full() -> None:
    # send_timeout: the stalled first write is shielded (it commits the headers), so the
    # cancellation at the end waits that long.
    roomy = StreamSettings(buffer_size=1000, max_batch_bytes=SIZE, send_timeout=1)
    assert await count_produced_into_a_stalled_client(roomy) == 100  # bounded by nothing here
    tight = StreamSettings(
        buffer_size=1000, buffer_bytes=3 * SIZE, max_batch_bytes=SIZE, send_timeout=1
    )
    # One event in the stalled write, three in the buffer, one waiting at its yield.
    assert await count_produced_into_a_stalled_client(tight) == 5


async def test_a_generator_waits_at_yield_once_its_buffer_size_is_full() -> None:
    # The same in events: the buffer holds three of them, whatever their bytes.
    tight = StreamSettings(buffer_size=3, max_batch_bytes=SIZE, send_timeout=1)
    assert await count_produced_into_a_stalled_client(tight) == 5


def test_buffer_bytes_must_be_a_positive_int() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="buffer_bytes must be a positive int"):
            SseStream(buffer_bytes=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="buffer_bytes must be a positive int"):
            StreamSettings(buffer_bytes=bad)  # type: ignore[arg-type]


async def test_a_broadcast_stream_is_bounded_by_the_subscriber_bytes() -> None:
    async with Broadcast(subscriber_buffer=7, subscriber_buffer_bytes=4096) as hub:
        stream = hub.stream("topic")
    assert (stream.buffer_size, stream.buffer_bytes) == (7, 4096)
