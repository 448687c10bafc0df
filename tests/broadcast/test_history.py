"""History for new subscribers: the retained events first, then the live ones, on each backend.

A page that opens has no ``Last-Event-ID`` yet, and still wants to show what happened before it
(Mercure's ``lastEventID=earliest``): ``subscribe(topic, history=True)``.
"""

from __future__ import annotations

import trio

from tests.broadcast.conftest import BackendFactory
from tests.broadcast.test_hub import StallingSink, ordered, take
from tests.helpers import wait_until
from trio_dwex.broadcast import RESET_EVENT, Broadcast
from trio_dwex.lowlevel import run_stream
from trio_dwex.wire._decoder import SseDecoder


async def test_history_then_live_with_no_gap_and_no_duplicate(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend()) as hub:
        ids = [await hub.publish("t", n) for n in range(10)]
        done = trio.Event()

        async def publish_during_history() -> None:
            # Races the subscription's registration and its read of the history.
            for n in range(10, 30):
                await hub.publish("t", n)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_during_history)
            async with hub.subscribe("t", history=True) as subscription:
                events = await take(subscription, 30)
        assert done.is_set()
    assert [int(e.data) for e in events] == list(range(30))
    assert [e.id for e in events[:10]] == ids
    assert ordered([e.id or "" for e in events])


async def test_history_is_what_the_topic_retains_and_never_a_reset(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend(retain_count=10)) as hub:
        for n in range(300):
            await hub.publish("t", n)
        async with hub.subscribe("t", history=True) as subscription:
            await hub.publish("t", "live")
            events = []
            with trio.fail_after(5):
                async for event in subscription:
                    events.append(event)
                    if event.data == "live":
                        break
    assert RESET_EVENT not in [event.event for event in events]
    # Redis trims in whole nodes, so it may keep more than retain_count: the newest.
    numbers = [int(e.data) for e in events[:-1]]
    assert 10 <= len(numbers) <= 200
    assert numbers == list(range(300 - len(numbers), 300))


async def test_history_of_a_topic_without_events_and_an_id_that_wins(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend()) as hub:
        async with hub.subscribe("empty", history=True) as subscription:
            await hub.publish("empty", "first")
            (event,) = await take(subscription, 1)
        assert event.data == "first"
        ids = [await hub.publish("t", n) for n in range(5)]
        # With a Last-Event-ID the client resumes: history does not repeat what it has.
        async with hub.subscribe("t", last_event_id=ids[2], history=True) as subscription:
            events = await take(subscription, 2)
        assert [e.data for e in events] == ["3", "4"]


async def test_history_in_pages(make_backend: BackendFactory, backend_kind: str) -> None:
    # Redis answers in pages of read_count entries; every page follows on without a gap.
    options = {"read_count": 7} if backend_kind == "redis" else {}
    async with Broadcast(make_backend(**options)) as hub:
        for n in range(50):
            await hub.publish("t", n)
        async with hub.subscribe("t", history=True) as subscription:
            events = await take(subscription, 50)
    assert [int(e.data) for e in events] == list(range(50))


async def test_hub_stream_with_history(make_backend: BackendFactory) -> None:
    async with Broadcast(make_backend()) as hub:
        for n in range(3):
            await hub.publish("t", n)
        sink = StallingSink()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_stream, hub.stream("t", history=True), sink)
            await wait_until(lambda: len(SseDecoder().feed(b"".join(sink.writes))) == 3)
            sink.gone.set()
    assert [e.data for e in SseDecoder().feed(b"".join(sink.writes))] == ["0", "1", "2"]
