"""`KeepaliveClock`: the one task that wakes an app's idle writers for their keep-alives."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from tests.streams.test_runner import MemorySink
from trio_dwex import SseStream, StreamSettings
from trio_dwex.lowlevel import KeepaliveClock, StreamTracker, run_stream
from trio_dwex.streams._budget import ByteBudget
from trio_dwex.streams._clock import KEEPALIVE_SLACK
from trio_dwex.streams._runner import KEEPALIVE_COMMENT


def quiet_bells(count: int) -> list[ByteBudget]:
    """Budgets whose bell has not rung (a new one has: its writer looks first)."""
    bells = [ByteBudget(1024) for _ in range(count)]
    for bell in bells:
        bell.drained(0, more=False)
    return bells


def keepalive_times(sink: MemorySink) -> list[float]:
    return [at for at, data in sink.written_at if data == KEEPALIVE_COMMENT]


async def test_writers_keep_their_keepalives_when_the_clock_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A writer waiting on the clock has no deadline of its own: the stopping clock must wake
    # it, or it would never send another keep-alive.
    tracker = StreamTracker()
    stream = SseStream()
    sink = MemorySink()
    async with trio.open_nursery() as streams:
        async with trio.open_nursery() as clock:
            await clock.start(tracker.clock.run)
            streams.start_soon(run_stream, stream, sink, StreamSettings(keepalive=10), tracker)
            await trio.sleep(25)
            assert len(keepalive_times(sink)) == 2  # by the clock
            clock.cancel_scope.cancel()
        assert not tracker.clock.running
        await trio.sleep(20)
        stream.close()
    # by the clock at 10 and 20, then by the writer's own deadline at 30 and 40
    assert len(keepalive_times(sink)) == 4


async def test_a_second_run_of_the_clock_takes_over_when_the_first_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # An app served by two servers at once runs its lifespan, and so its clock, twice.
    clock = KeepaliveClock()
    [budget] = quiet_bells(1)
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as first:
            await first.start(clock.run)
            await nursery.start(clock.run)  # waits: one run rings the alarms
            alarm = clock.alarm(budget)
            clock.set(alarm, trio.current_time() + 5)
            first.cancel_scope.cancel()
        # The first run's end rang the alarm: its writer looks, and sets it again.
        assert budget.rung
        budget.drained(0, more=False)
        await trio.sleep(1)
        assert clock.running  # the second run took over
        clock.set(alarm, trio.current_time() + 5)
        start = trio.current_time()
        await budget.wait_for_ring()  # as the writer waits
        assert trio.current_time() - start == pytest.approx(5, abs=KEEPALIVE_SLACK)
        nursery.cancel_scope.cancel()


def reachable(root: object, depth: int) -> Iterator[object]:
    """The objects ``root`` refers to, and theirs, ``depth`` levels down."""
    level = [root]
    for _ in range(depth):
        level = gc.get_referents(*level)
        yield from level


async def test_an_ended_stream_lets_go_of_its_buffer_though_its_alarm_is_still_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Alarms leave the clock's heap only when their time comes: an hour for a quiet stream.
    # The clock must not keep the stream's buffer that long.
    tracker = StreamTracker()
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.clock.run)
        stream = SseStream()
        settings = StreamSettings(keepalive=3600)
        nursery.start_soon(run_stream, stream, MemorySink(), settings, tracker)
        await trio.sleep(1)
        assert any(isinstance(item, ByteBudget) for item in reachable(tracker.clock, 6))
        stream.close()
        await trio.sleep(1)
        assert not any(isinstance(item, ByteBudget) for item in reachable(tracker.clock, 6))
        nursery.cancel_scope.cancel()


@pytest.fixture
async def running_clock(nursery: trio.Nursery) -> KeepaliveClock:
    clock = KeepaliveClock()
    await nursery.start(clock.run)
    return clock


async def test_alarms_due_close_together_ring_in_one_pass(
    autojump_clock: trio.testing.MockClock, running_clock: KeepaliveClock
) -> None:
    # Due 10 µs apart, over a millisecond: the clock wakes once, a little late, for them all.
    budgets = quiet_bells(100)
    start = trio.current_time()
    for n, budget in enumerate(budgets):
        running_clock.set(running_clock.alarm(budget), start + 1 + n * 0.00001)
    await trio.sleep_until(start + 1.0005)
    assert not any(budget.rung for budget in budgets)  # half of them are due already
    await trio.sleep_until(start + 1 + KEEPALIVE_SLACK + 0.0001)
    assert all(budget.rung for budget in budgets)


async def test_the_alarms_of_ended_streams_do_not_pile_up_in_the_heap(
    autojump_clock: trio.testing.MockClock, running_clock: KeepaliveClock
) -> None:
    # Streams that come and go by the thousand, with an hour's keep-alive: their entries are
    # dropped long before their time, and the alarms still set ring as set.
    clock = running_clock
    live = quiet_bells(10)
    start = trio.current_time()
    for budget in live:
        clock.set(clock.alarm(budget), start + 3600)
    most = 0
    for _ in range(20_000):
        alarm = clock.alarm(ByteBudget(1024))
        clock.set(alarm, start + 3600)
        clock.release(alarm)
        most = max(most, clock.entries)
    assert most < 2_000
    await trio.sleep(3600 + KEEPALIVE_SLACK * 2)
    assert all(budget.rung for budget in live)
    assert clock.entries == 0
