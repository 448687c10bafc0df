"""The stream runner against an in-memory sink: no sockets, and a mock clock where time matters."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from functools import partial

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_dwex import OverflowPolicy, SseStream, StreamSettings
from trio_dwex._errors import NotFoundException, StreamClosed
from trio_dwex.lowlevel import CloseReason, StreamTracker, run_stream
from trio_dwex.streams._clock import KEEPALIVE_SLACK
from trio_dwex.streams._runner import TaskStarter
from trio_dwex.wire._decoder import SseDecoder
from trio_dwex.wire._sse import SseEvent


class MemorySink:
    """Records what the runner writes; ``gone`` simulates a disconnect; ``stall`` a full socket."""

    def __init__(self) -> None:
        self.started = False
        self.writes: list[bytes] = []
        #: Each write with its time (Trio's clock).
        self.written_at: list[tuple[float, bytes]] = []
        self.gone = trio.Event()
        self.stall = False
        self.wrote = trio.Event()

    async def start(self, first: bytes) -> None:
        assert not self.started, "headers committed twice"
        self.started = True
        if first:
            await self.write(first)

    async def write(self, data: bytes) -> None:
        assert self.started, "body written before the headers"
        if self.stall:
            await trio.sleep_forever()
        self.writes.append(data)
        self.written_at.append((trio.current_time(), data))
        self.wrote.set()

    def notify_disconnect(self, callback: Callable[[], object], start_soon: TaskStarter) -> None:
        start_soon(self.watch_disconnect, callback)  # as a sink that can only wait does

    async def watch_disconnect(self, callback: Callable[[], object]) -> None:
        await self.gone.wait()
        callback()

    def events(self) -> list[object]:
        return [event.json() for event in SseDecoder().feed(b"".join(self.writes))]


async def leave_after_the_first_write(
    source: AsyncIterable[object], sink: MemorySink, settings: StreamSettings | None = None
) -> None:
    """Run ``source`` to ``sink`` until its first write, then have the client leave."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, source, sink, settings or StreamSettings())
        await sink.wrote.wait()
        sink.gone.set()


def ready_source(kind: str, events: list[object]) -> SseStream | AsyncIterator[object]:
    """``events`` all ready at once: queued in a closed `SseStream`, or from a generator that
    yields them without awaiting (the pump queues them all before the writer runs)."""
    if kind == "stream":
        stream = SseStream()
        for item in events:
            stream.send_nowait(item)
        stream.close()
        return stream

    async def generate() -> AsyncIterator[object]:
        for item in events:
            yield item

    return generate()


@pytest.mark.parametrize("kind", ["stream", "generator"])
async def test_events_already_queued_leave_in_one_write(kind: str) -> None:
    sink = MemorySink()
    reason = await run_stream(ready_source(kind, [{"n": n} for n in range(50)]), sink)
    assert reason is (CloseReason.CLOSED if kind == "stream" else CloseReason.COMPLETED)
    assert len(sink.writes) == 1
    assert sink.events() == [{"n": n} for n in range(50)]


@pytest.mark.parametrize("kind", ["stream", "generator"])
async def test_coalescing_is_bounded_by_max_batch_bytes(kind: str) -> None:
    events: list[object] = [SseEvent(data="x" * 100, id=str(n)) for n in range(50)]
    sink = MemorySink()
    await run_stream(ready_source(kind, events), sink, StreamSettings(max_batch_bytes=1000))
    assert len(sink.writes) > 5
    assert all(len(chunk) < 1000 + 200 for chunk in sink.writes)
    assert [event.id for event in SseDecoder().feed(b"".join(sink.writes))] == [
        str(n) for n in range(50)
    ]


async def test_a_lone_event_is_written_at_once_without_waiting_for_a_batch() -> None:
    release = trio.Event()

    async def source() -> AsyncIterator[dict[str, int]]:
        yield {"n": 1}
        await release.wait()
        yield {"n": 2}

    sink = MemorySink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, source(), sink)
        with trio.fail_after(1):
            await sink.wrote.wait()
        assert sink.events() == [{"n": 1}]
        release.set()
    assert sink.events() == [{"n": 1}, {"n": 2}]


async def test_keepalive_after_idle_seconds(
    autojump_clock: trio.testing.MockClock, keepalive_tracker: StreamTracker | None
) -> None:
    stream = SseStream()
    sink = MemorySink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            run_stream, stream, sink, StreamSettings(keepalive=15), keepalive_tracker
        )
        await trio.sleep(15 * 3 + 1)
        assert sink.writes.count(b": keep-alive\n") == 3
        stream.close()


async def test_no_keepalive_when_disabled(
    autojump_clock: trio.testing.MockClock, keepalive_tracker: StreamTracker | None
) -> None:
    stream = SseStream()
    sink = MemorySink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            run_stream, stream, sink, StreamSettings(keepalive=None), keepalive_tracker
        )
        await trio.sleep(1000)
        assert sink.writes == []
        stream.close()
    assert sink.started


async def test_a_stalled_client_is_dropped_after_send_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed: list[str] = []
    stream = SseStream()
    stream.on_close(lambda: closed.append("closed"))
    sink = MemorySink()
    sink.stall = True
    stream.send_nowait({"n": 1})
    start = trio.current_time()
    reason = await run_stream(stream, sink, StreamSettings(send_timeout=10))
    assert reason is CloseReason.SLOW_CLIENT
    assert 10 <= trio.current_time() - start < 11
    assert closed == ["closed"]


async def test_keepalive_counts_idle_time_from_the_last_write(
    autojump_clock: trio.testing.MockClock, keepalive_tracker: StreamTracker | None
) -> None:
    # Events at 10 s and 20 s, keep-alive 15 s: the first comment is due at 35 s, not 15 s.
    stream = SseStream()
    sink = MemorySink()
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(
            run_stream, stream, sink, StreamSettings(keepalive=15), keepalive_tracker
        )
        for _ in range(2):
            await trio.sleep(10)
            await stream.send({"n": 1})
        await trio.sleep(15 * 2 + 1)
        stream.close()
    keepalives = [at - start for at, data in sink.written_at if data == b": keep-alive\n"]
    # The app's clock may ring a little late (alarms due together ring at once), each time.
    assert keepalives == pytest.approx([35, 50], abs=3 * KEEPALIVE_SLACK)


async def test_a_client_that_stalls_mid_stream_is_dropped_after_send_timeout_not_keepalive(
    autojump_clock: trio.testing.MockClock, keepalive_tracker: StreamTracker | None
) -> None:
    stream = SseStream()
    sink = MemorySink()
    async with trio.open_nursery() as nursery:

        async def produce() -> None:
            await stream.send({"n": 1})
            await sink.wrote.wait()
            sink.stall = True
            await stream.send({"n": 2})

        nursery.start_soon(produce)
        start = trio.current_time()
        settings = StreamSettings(keepalive=1, send_timeout=10)
        reason = await run_stream(stream, sink, settings, keepalive_tracker)
    assert reason is CloseReason.SLOW_CLIENT
    assert 10 <= trio.current_time() - start < 11
    assert sink.events() == [{"n": 1}]


async def test_overflow_policies() -> None:
    close = SseStream(buffer_size=2)
    assert close.send_nowait(1)
    assert close.send_nowait(2)
    assert close.send_nowait(3) is False
    assert close.is_closed

    newest = SseStream(buffer_size=2, overflow=OverflowPolicy.DROP_NEWEST)
    for n in range(5):
        newest.send_nowait(n)
    newest.close()
    sink = MemorySink()
    await run_stream(newest, sink)
    assert sink.events() == [0, 1]

    oldest = SseStream(buffer_size=2, overflow=OverflowPolicy.DROP_OLDEST)
    for n in range(5):
        assert oldest.send_nowait(n)
    oldest.close()
    sink = MemorySink()
    await run_stream(oldest, sink)
    assert sink.events() == [3, 4]


async def test_overflow_close_is_reported_as_overflow() -> None:
    stream = SseStream(buffer_size=1)
    stream.send_nowait(1)
    stream.send_nowait(2)
    assert await run_stream(stream, MemorySink()) is CloseReason.OVERFLOW


async def test_send_after_close_raises_and_send_nowait_reports_false() -> None:
    stream = SseStream()
    stream.close()
    with pytest.raises(StreamClosed, match="closed SseStream"):
        await stream.send({"n": 1})
    assert stream.send_nowait({"n": 1}) is False


async def test_disconnect_ends_everything_once_in_order() -> None:
    order: list[str] = []

    async def task() -> None:
        try:
            await trio.sleep_forever()
        finally:
            order.append("task cancelled")

    stream = SseStream()
    stream.start_soon(task)
    stream.on_close(lambda: order.append("on_close 1"))

    async def async_callback() -> None:
        await trio.lowlevel.checkpoint()  # runs shielded, so it may await
        order.append("on_close 2")

    stream.on_close(async_callback)
    sink = MemorySink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, stream, sink)
        await trio.testing.wait_all_tasks_blocked()
        sink.gone.set()
    assert order == ["task cancelled", "on_close 1", "on_close 2"]
    with pytest.raises(StreamClosed):
        stream.on_close(lambda: None)
    with pytest.raises(StreamClosed):
        stream.start_soon(task)


async def test_an_error_before_the_first_event_propagates_unwrapped() -> None:
    async def source() -> AsyncIterator[object]:
        raise NotFoundException("nope")
        yield  # pragma: no cover

    sink = MemorySink()
    with pytest.raises(NotFoundException, match="nope"):
        await run_stream(source(), sink)
    assert not sink.started


async def test_an_error_after_the_first_event_is_logged_and_ends_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("mid-stream failure")

    sink = MemorySink()
    settings = StreamSettings(first_event_wait=0.01)

    async def slow_source() -> AsyncIterator[int]:
        yield 1
        await trio.sleep(0.05)
        raise RuntimeError("mid-stream failure")

    assert await run_stream(slow_source(), sink, settings) is CloseReason.ERROR
    assert sink.events() == [1]
    assert "an SSE stream failed" in caplog.text
    assert "mid-stream failure" in caplog.text
    del source


async def test_max_lifetime_ends_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    settings = StreamSettings(max_lifetime=60, lifetime_jitter=0)
    reason = await run_stream(SseStream(), MemorySink(), settings)
    assert reason is CloseReason.LIFETIME
    assert trio.current_time() >= 60


async def test_max_lifetime_has_jitter(autojump_clock: trio.testing.MockClock) -> None:
    # Streams opened together end apart (within the last tenth of the lifetime by default),
    # so that their clients do not all come back in the same second.
    ends: list[float] = []

    async def one() -> None:
        await run_stream(SseStream(), MemorySink(), StreamSettings(max_lifetime=100))
        ends.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(one)
    assert all(90 <= end <= 100 for end in ends)
    assert max(ends) - min(ends) > 5


async def test_a_stream_a_shutdown_ends_is_told_when_to_come_back() -> None:
    async def source() -> AsyncIterator[SseEvent]:
        yield SseEvent(data="hi")
        await trio.sleep_forever()

    async def ended_by_shutdown(settings: StreamSettings) -> bytes:
        tracker, sink = StreamTracker(), MemorySink()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run_stream, source(), sink, settings, tracker))
            await trio.testing.wait_all_tasks_blocked()
            tracker.close_all()
        return b"".join(sink.writes)

    written = await ended_by_shutdown(StreamSettings(farewell_retry=2.0))
    farewell = SseDecoder().feed(written + b"data: x\n\n")[-1]
    assert 1000 <= (farewell.retry or 0) <= 3000  # half to one and a half times farewell_retry
    assert b"retry" not in await ended_by_shutdown(StreamSettings(farewell_retry=None))
    # A stream's own lifetime ends it without one: its client should come back at once.
    lifetime = MemorySink()
    await run_stream(source(), lifetime, StreamSettings(max_lifetime=0.05))
    assert b"retry" not in b"".join(lifetime.writes)


async def test_a_spread_shutdown_ends_the_streams_over_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = StreamTracker()
    ends: list[float] = []

    async def one() -> None:
        assert await run_stream(SseStream(), MemorySink(), tracker=tracker) is CloseReason.SHUTDOWN
        ends.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        tracker.close_all(spread=10)
        assert tracker.shutting_down
    assert all(start <= end <= start + 10 for end in ends)
    assert max(ends) - min(ends) > 5  # spread, not all at once


async def test_tracker_counts_and_closes_all_at_shutdown() -> None:
    tracker = StreamTracker()
    reasons: list[CloseReason] = []

    async def one() -> None:
        reasons.append(await run_stream(SseStream(), MemorySink(), tracker=tracker))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        assert tracker.open_count == 5
        tracker.close_all()
    assert reasons == [CloseReason.SHUTDOWN] * 5
    assert tracker.stats()["open"] == 0
    assert tracker.stats()["opened"] == 5
    assert tracker.closed[CloseReason.SHUTDOWN] == 5
    assert tracker.shutting_down


async def test_generator_finally_may_await_when_shielded() -> None:
    cleaned: list[str] = []

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.01)
            cleaned.append("done")

    sink = MemorySink()
    await leave_after_the_first_write(source(), sink)
    assert cleaned == ["done"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("keepalive", 0), ("send_timeout", -1), ("buffer_size", 0), ("first_event_wait", "1")],
)
def test_bad_settings_name_the_setting(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        StreamSettings(**{name: value})  # type: ignore[arg-type]


async def test_map_events_over_a_generator_that_yields_in_finally_closes_cleanly() -> None:
    from trio_dwex import map_events

    cleaned: list[str] = []

    async def source() -> AsyncIterator[int | str]:
        try:
            yield 1
            await trio.sleep_forever()
        finally:
            yield "goodbye"
            cleaned.append("done")

    await leave_after_the_first_write(map_events(source(), lambda n: n), MemorySink())
    assert cleaned == ["done"]


async def test_a_generator_that_never_awaits_is_closed_when_its_client_leaves() -> None:
    closed: list[str] = []

    async def source() -> AsyncIterator[int]:
        try:
            n = 0
            while True:  # yields with no await in between: nothing to be cancelled at
                n += 1
                yield n
        finally:
            closed.append("finally")

    await leave_after_the_first_write(source(), MemorySink(), StreamSettings(buffer_size=4))
    assert closed == ["finally"]


async def test_a_generator_that_yields_in_finally_after_a_disconnect_finishes_its_cleanup() -> None:
    cleaned: list[str] = []

    async def source() -> AsyncIterator[str]:
        try:
            yield "hello"
            await trio.sleep_forever()
        finally:
            yield "goodbye"  # Cancelled is passing through; the event is for nobody
            cleaned.append("done")

    sink = MemorySink()
    await leave_after_the_first_write(source(), sink)
    assert cleaned == ["done"]
    assert b"".join(sink.writes) == b"data: hello\n\n"


async def test_send_with_room_in_the_buffer_is_cancelled_once_the_stream_ends() -> None:
    """``send`` skips the scheduler when there is room, but not the stream's own end."""
    stream = SseStream(buffer_size=100)
    tracker = StreamTracker()
    outcome: list[str] = []

    async def produce() -> None:
        await stream.send("first")
        tracker.close_all()  # the stream starts to end while this task runs, no checkpoint
        try:
            await stream.send("after the end")
        except trio.Cancelled:
            outcome.append("cancelled")
            raise
        outcome.append("returned")

    stream.start_soon(produce)
    assert await run_stream(stream, MemorySink(), tracker=tracker) is CloseReason.SHUTDOWN
    assert outcome == ["cancelled"]


async def test_events_queued_before_and_while_the_stream_runs_arrive_in_order() -> None:
    """Before it runs a stream buffers events; while it runs, their bytes: both are written."""
    stream = SseStream()
    stream.send_nowait({"n": 0})
    stream.send_nowait(SseEvent(data="1", id="1"))
    sink = MemorySink()

    async def produce() -> None:
        await stream.send({"n": 2})
        assert stream.send_nowait(SseEvent(data="3", event="tick"))
        await sink.wrote.wait()  # the writer took what was queued; queue more
        await stream.send_comment("four")
        await stream.send_data(5)
        stream.close()

    stream.start_soon(produce)
    assert await run_stream(stream, sink) is CloseReason.CLOSED
    body = b"".join(sink.writes)
    assert body == b"".join(
        event.encode()
        for event in [
            SseEvent(data={"n": 0}),
            SseEvent(data="1", id="1"),
            SseEvent(data={"n": 2}),
            SseEvent(data="3", event="tick"),
            SseEvent(comment="four"),
            SseEvent(data=5),
        ]
    )
    assert len(sink.writes) >= 2  # the writer ran between the two batches


class GateSink(MemorySink):
    """A sink whose writes wait until ``gate`` is set: a client that is slow for a while."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()

    async def write(self, data: bytes) -> None:
        await self.gate.wait()
        await super().write(data)


@pytest.mark.parametrize(
    ("policy", "delivered"),
    [(OverflowPolicy.DROP_OLDEST, [-1, 3, 4]), (OverflowPolicy.DROP_NEWEST, [-1, 0, 1])],
)
async def test_overflow_policies_apply_to_a_running_stream(
    policy: OverflowPolicy, delivered: list[int]
) -> None:
    stream = SseStream(buffer_size=2, overflow=policy)
    sink = GateSink()

    async def produce() -> None:
        await stream.send(-1)
        await trio.sleep(0.01)  # the writer took it and waits at the gate
        for n in range(5):
            stream.send_nowait(n)  # two fit in the buffer; the policy decides which
        sink.gate.set()
        stream.close()

    stream.start_soon(produce)
    assert await run_stream(stream, sink) is CloseReason.CLOSED
    assert sink.events() == delivered


async def test_a_stream_being_sent_cannot_be_iterated_as_well() -> None:
    stream = SseStream()
    iterated: list[str] = []

    async def iterate() -> None:
        try:
            aiter(stream)
        except RuntimeError as exc:
            iterated.append(str(exc))
        stream.close()

    stream.start_soon(iterate)
    await run_stream(stream, MemorySink())
    assert iterated == ["this SseStream is being sent to a client; it cannot be iterated as well"]


async def test_a_stream_ends_when_its_producer_sends_and_closes_without_a_checkpoint() -> None:
    """The writer learns of the end from the same look at the buffer that finds the last
    events, whether they come while it waits for the first event or later."""
    for already_running in (False, True):
        stream = SseStream()
        sink = MemorySink()
        go = trio.Event()

        async def produce(stream: SseStream = stream, go: trio.Event = go) -> None:
            await go.wait()
            await stream.send("last")  # no checkpoint between the event and the close
            stream.close()

        stream.start_soon(produce)
        if not already_running:
            go.set()
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_stream, stream, sink)
                if already_running:
                    stream.send_nowait("first")
                    await sink.wrote.wait()
                    await trio.testing.wait_all_tasks_blocked()
                    go.set()
        assert data_of(sink)[-1] == "last"


async def test_a_generator_that_yields_then_returns_ends_its_stream() -> None:
    async def one() -> AsyncIterator[str]:
        yield "only"

    sink = MemorySink()
    with trio.fail_after(5):
        assert await run_stream(one(), sink) is CloseReason.COMPLETED
    assert data_of(sink) == ["only"]


def data_of(sink: MemorySink) -> list[str]:
    return [event.data for event in SseDecoder().feed(b"".join(sink.writes))]
