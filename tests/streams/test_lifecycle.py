"""An SseStream's lifecycle: its states, its close reason, and who runs a stream that is wrapped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import get_args

import pytest
import trio
import trio.testing

from tests.streams.test_runner import MemorySink, leave_after_the_first_write
from trio_dwex import SseStream, StreamLease, map_events
from trio_dwex.lowlevel import CloseReason, StreamState, StreamTracker, run_stream
from trio_dwex.streams._runner import TaskStarter
from trio_dwex.streams._state import StreamStateError, Transition, next_state
from trio_dwex.streams._stream import current_run
from trio_dwex.wire._sse import SseEvent

NEW, RUNNING, ENDING, FINISHED = StreamState

WITHIN = 5.0
"""Seconds within which a wrapped stream's events arrive; without its tasks they never would."""

#: The table of streams/_state.py, written out again: a change to either must be deliberate.
LEGAL: dict[tuple[StreamState, Transition], StreamState] = {
    (NEW, "start"): RUNNING,
    (RUNNING, "end"): ENDING,
    (ENDING, "end"): ENDING,
    (FINISHED, "end"): FINISHED,
    (RUNNING, "finish"): FINISHED,
    (ENDING, "finish"): FINISHED,
}


@pytest.mark.parametrize("state", list(StreamState), ids=lambda state: state.name)
@pytest.mark.parametrize("transition", get_args(Transition))
def test_every_transition_is_in_the_table_or_names_the_state_and_itself(
    state: StreamState, transition: Transition
) -> None:
    if (state, transition) in LEGAL:
        assert next_state(state, transition) is LEGAL[state, transition]
        return
    with pytest.raises(StreamStateError) as info:
        next_state(state, transition)
    assert str(info.value).startswith(f"cannot {transition} an SseStream in state {state.name}: ")
    assert (info.value.state, info.value.transition) == (state, transition)


async def test_a_stream_goes_from_new_to_running_to_ending_to_finished() -> None:
    stream = SseStream()
    seen: list[tuple[StreamState, CloseReason | None]] = []

    async def task() -> None:
        seen.append((stream.state, stream.close_reason))
        try:
            await trio.sleep_forever()
        finally:
            seen.append((stream.state, stream.close_reason))

    stream.start_soon(task)
    assert (stream.state, stream.close_reason) == (NEW, None)
    sink = MemorySink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, stream, sink)
        await trio.testing.wait_all_tasks_blocked()
        sink.gone.set()
    # Ending does not close the stream for producers; the end of the run does, with its reason.
    assert seen == [(RUNNING, None), (ENDING, None)]
    assert (stream.state, stream.close_reason) == (FINISHED, CloseReason.CLIENT_GONE)
    assert stream.is_closed
    assert current_run.get() is None  # the run's tasks saw it, nobody after


async def test_running_a_stream_twice_names_the_state_and_leaves_the_first_run_its_callbacks() -> (
    None
):
    stream = SseStream()
    closed: list[str] = []
    stream.on_close(lambda: closed.append("closed"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_stream, stream, MemorySink())
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(StreamStateError, match="cannot start an SseStream in state RUNNING"):
            await run_stream(stream, MemorySink())
        assert closed == []  # the refused run took nothing from the one that runs
        stream.close()
    assert closed == ["closed"]
    with pytest.raises(StreamStateError, match="in state FINISHED: an SseStream can be run only"):
        await run_stream(stream, MemorySink())


async def test_close_keeps_the_first_reason_and_takes_only_a_producers_reasons() -> None:
    stream = SseStream()
    with pytest.raises(ValueError, match=r"CloseReason\.CLOSED or CloseReason\.OVERFLOW"):
        stream.close(reason=CloseReason.CLIENT_GONE)
    assert not stream.is_closed
    stream.close(reason=CloseReason.OVERFLOW)
    stream.close()
    assert stream.close_reason is CloseReason.OVERFLOW
    assert await run_stream(stream, MemorySink()) is CloseReason.OVERFLOW
    assert stream.close_reason is CloseReason.OVERFLOW


async def test_a_sink_that_calls_back_ends_the_stream_without_a_task() -> None:
    class CallingSink(MemorySink):
        leave: Callable[[], object]

        def notify_disconnect(
            self, callback: Callable[[], object], start_soon: TaskStarter
        ) -> None:
            self.leave = callback  # as our server does: no task waits for the client

    stream = SseStream()
    sink = CallingSink()
    reasons: list[CloseReason] = []

    async def run() -> None:
        reasons.append(await run_stream(stream, sink))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.state is RUNNING
        sink.leave()
    assert reasons == [CloseReason.CLIENT_GONE]


def test_the_tracker_ends_what_registered_until_it_unregisters() -> None:
    class Run:
        lease: StreamLease | None = None

        def __init__(self) -> None:
            self.ended: list[CloseReason] = []

        def end(self, reason: CloseReason) -> None:
            self.ended.append(reason)

        def end_at(self, reason: CloseReason, deadline: float) -> None:
            self.ended.append(reason)

    tracker = StreamTracker()
    first, second = Run(), Run()
    tracker.register(first)
    tracker.register(second)
    tracker.unregister(second, CloseReason.CLOSED)
    assert tracker.open_count == 1
    tracker.close_all()
    assert (first.ended, second.ended) == ([CloseReason.SHUTDOWN], [])
    tracker.unregister(first, CloseReason.SHUTDOWN)
    assert tracker.stats() == {
        "open": 0,
        "opened": 2,
        "closed": {reason.value: 0 for reason in CloseReason} | {"closed": 1, "shutdown": 1},
        "events": 0,
        "bytes": 0,
    }


# -- a stream that the source wraps belongs to the response -------------------------------------


def make_stream(order: list[str], *, close: bool) -> SseStream:
    """A handler's stream: a task that sends two events, and an ``on_close`` callback."""
    stream = SseStream()

    async def produce() -> None:
        try:
            await stream.send({"n": 1})
            await stream.send({"n": 2})
            if close:
                stream.close()
            else:
                await trio.sleep_forever()
        finally:
            order.append("task ended")

    stream.start_soon(produce)
    stream.on_close(lambda: order.append("on_close"))
    return stream


async def test_a_generator_of_its_own_that_iterates_a_stream_runs_its_tasks_and_callbacks() -> None:
    """What an interceptor writes without `map_events`: the stream still belongs to the response."""
    order: list[str] = []
    stream = make_stream(order, close=True)

    async def doubled() -> AsyncIterator[SseEvent]:
        async for event in stream:
            yield SseEvent(data={"n": event.data["n"] * 2})

    sink = MemorySink()
    with trio.fail_after(WITHIN):
        assert await run_stream(doubled(), sink) is CloseReason.COMPLETED
    assert sink.events() == [{"n": 2}, {"n": 4}]
    assert order == ["task ended", "on_close"]
    assert stream.state is FINISHED


async def test_a_mapped_stream_ends_with_its_response_when_the_client_leaves() -> None:
    order: list[str] = []
    stream = make_stream(order, close=False)
    sink = MemorySink()
    with trio.fail_after(WITHIN):
        await leave_after_the_first_write(map_events(stream, lambda event: event), sink)
    assert order == ["task ended", "on_close"]
    assert (stream.state, stream.close_reason) == (FINISHED, CloseReason.CLIENT_GONE)


async def test_a_mapped_stream_that_overflowed_ends_its_response_as_an_overflow() -> None:
    stream = SseStream(buffer_size=1)
    assert stream.send_nowait({"n": 1})
    assert not stream.send_nowait({"n": 2})  # OverflowPolicy.CLOSE
    sink = MemorySink()
    assert await run_stream(map_events(stream, lambda event: event), sink) is CloseReason.OVERFLOW
    assert sink.events() == [{"n": 1}]


async def test_a_stream_iterated_outside_any_response_stays_new() -> None:
    stream = SseStream()
    stream.send_nowait({"n": 1})
    stream.close()
    assert [event.data async for event in stream] == [{"n": 1}]
    assert stream.state is NEW
