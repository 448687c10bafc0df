"""`EventQueue`, the generator route's buffer: its bounds, what the writer takes, its end."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from trio_dwex.streams._queue import EventQueue


def test_it_holds_up_to_max_events_and_limit_bytes() -> None:
    by_count = EventQueue(max_events=2, limit=1000)
    assert by_count.put(b"a\n\n")
    assert by_count.put(b"b\n\n")
    assert not by_count.put(b"c\n\n")
    assert not by_count.fits(3)
    by_bytes = EventQueue(max_events=100, limit=10)
    assert by_bytes.put(b"123456\n\n")
    assert not by_bytes.put(b"789\n\n")  # 8 + 5 bytes > 10
    assert (by_bytes.queued, by_count.queued) == (8, 6)


def test_an_empty_queue_takes_one_event_of_any_size() -> None:
    queue = EventQueue(max_events=1, limit=10)
    assert queue.put(b"x" * 100)
    assert queue.take(10) == (b"x" * 100, 1)
    assert queue.queued == 0


def test_the_writer_takes_everything_at_once_or_up_to_its_limit() -> None:
    queue = EventQueue(max_events=100, limit=10_000)
    for n in range(10):
        assert queue.put(b"%d\n\n" % n)
    assert queue.take(8) == (b"0\n\n1\n\n2\n\n", 3)  # stops once 8 bytes are reached
    assert queue.rung, "more is queued: the writer must look again before it waits"
    assert queue.take(1000) == (b"".join(b"%d\n\n" % n for n in range(3, 10)), 7)
    assert not queue.rung
    assert queue.queued == 0
    assert queue.take(1000) is None


def test_a_wake_counts_for_nothing() -> None:
    queue = EventQueue(max_events=100, limit=10_000)
    queue.wake()
    assert queue.take(1000) == (b"", 0)
    queue.wake()
    assert queue.put(b"a\n\n")
    assert queue.take(1000) == (b"a\n\n", 1)


def test_a_closed_queue_is_emptied_then_ends() -> None:
    queue = EventQueue(max_events=100, limit=10_000)
    assert queue.put(b"a\n\n")
    queue.close()
    assert queue.take(1000) == (b"a\n\n", 1)
    assert queue.rung, "the writer must look once more to find the end"
    with pytest.raises(trio.EndOfChannel):
        queue.take(1000)


async def test_a_producer_waits_for_room_until_the_writer_takes() -> None:
    queue = EventQueue(max_events=1, limit=10_000)
    assert queue.put(b"a\n\n")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.put_waiting, b"b\n\n")
        await trio.testing.wait_all_tasks_blocked()
        assert queue.queued == 3, "the second event waits outside"
        assert queue.take(1000) == (b"a\n\n", 1)
    assert queue.take(1000) == (b"b\n\n", 1)


async def wait_for_ring_while(queue: EventQueue, ring: Callable[[], object]) -> None:
    """Park a writer on ``queue``'s bell, then ``ring``: returns only once the writer woke."""

    async def writer() -> None:
        await queue.wait_for_ring()  # in the writer's own task, which it parks

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            ring()


async def test_the_writer_is_woken_by_a_put_and_by_close() -> None:
    queue = EventQueue(max_events=10, limit=10_000)
    assert queue.take(1000) is None
    await wait_for_ring_while(queue, lambda: queue.put(b"a\n\n"))
    assert queue.take(1000) == (b"a\n\n", 1)
    await wait_for_ring_while(queue, queue.close)
    with pytest.raises(trio.EndOfChannel):
        queue.take(1000)
