"""The hub itself, on each backend: ids, replay, resets, overflow, and lifetimes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import trio

from tests.broadcast.conftest import BackendFactory
from tests.helpers import wait_until
from trio_dwex import HttpException, OverflowPolicy, StreamSettings
from trio_dwex.broadcast import (
    RESET_EVENT,
    Broadcast,
    EventTooLarge,
    MemoryBackend,
    Subscription,
)
from trio_dwex.broadcast._backend import parse_stream_id
from trio_dwex.lowlevel import CloseReason, run_stream
from trio_dwex.streams._runner import TaskStarter
from trio_dwex.wire._decoder import SseDecoder
from trio_dwex.wire._sse import SseEvent


async def take(subscription: Subscription, count: int, seconds: float = 5.0) -> list[SseEvent]:
    events: list[SseEvent] = []
    with trio.fail_after(seconds):
        async for event in subscription:
            events.append(event)
            if len(events) == count:
                break
    return events


def ordered(ids: list[str]) -> bool:
    keys = [parse_stream_id(i) for i in ids]
    return None not in keys and keys == sorted(keys) and len(set(keys)) == len(keys)  # type: ignore[type-var]


async def test_publish_assigns_increasing_ids_and_fans_out(make_backend: BackendFactory) -> None:
    async with Broadcast(make_backend()) as hub:
        async with hub.subscribe("t") as first, hub.subscribe("t") as second:
            ids = [await hub.publish("t", {"n": n}) for n in range(5)]
            got_first = await take(first, 5)
            got_second = await take(second, 5)
    assert ordered(ids)
    assert [e.id for e in got_first] == ids
    # One object per event, shared by the subscribers: encoded once, not once per subscriber.
    assert all(a is b for a, b in zip(got_first, got_second, strict=True))
    assert [json.loads(e.data) for e in got_first] == [{"n": n} for n in range(5)]
    assert got_first[0].encode() == f'id: {ids[0]}\ndata: {{"n":0}}\n\n'.encode()


async def test_event_fields_survive_the_backend(make_backend: BackendFactory) -> None:
    async with Broadcast(make_backend()) as hub, hub.subscribe("t") as subscription:
        event_id = await hub.publish(
            "t", SseEvent(data="two\nlines", event="note", retry=1500, comment="c")
        )
        (got,) = await take(subscription, 1)
    assert got.encode() == (
        f": c\nevent: note\nid: {event_id}\nretry: 1500\ndata: two\ndata: lines\n\n".encode()
    )


async def test_publish_refuses_an_event_with_its_own_id(make_backend: BackendFactory) -> None:
    async with Broadcast(make_backend()) as hub:
        with pytest.raises(ValueError, match="assigns event ids"):
            await hub.publish("t", SseEvent(data="x", id="7"))


async def test_a_closed_hub_says_how_to_open_it() -> None:
    hub = Broadcast()
    with pytest.raises(RuntimeError, match="async with Broadcast"):
        await hub.publish("t", "x")
    with pytest.raises(RuntimeError, match="async with Broadcast"):
        async with hub.subscribe("t"):
            pass


async def test_replay_then_live_with_no_gap_and_no_duplicate(make_backend: BackendFactory) -> None:
    async with Broadcast(make_backend()) as hub:
        ids = [await hub.publish("t", n) for n in range(10)]
        done = trio.Event()

        async def publish_during_replay() -> None:
            # Races the subscription's registration and replay: each event must come once.
            for n in range(10, 30):
                await hub.publish("t", n)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_during_replay)
            async with hub.subscribe("t", last_event_id=ids[3]) as subscription:
                events = await take(subscription, 26)
        assert done.is_set()
    assert [int(e.data) for e in events] == list(range(4, 30))
    assert ordered([e.id or "" for e in events])
    assert [e.id for e in events[:6]] == ids[4:]


async def test_replay_of_the_latest_id_gives_only_live_events(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend()) as hub:
        latest = [await hub.publish("t", n) for n in range(3)][-1]
        async with hub.subscribe("t", last_event_id=latest) as subscription:
            await hub.publish("t", 3)
            (event,) = await take(subscription, 1)
    assert event.data == "3"


async def test_an_id_too_old_to_replay_gets_a_reset_then_live_events(
    make_backend: BackendFactory,
) -> None:
    # Redis trims approximately, in whole nodes of about 100 entries: publish well past that.
    async with Broadcast(make_backend(retain_count=10)) as hub:
        ids = [await hub.publish("t", n) for n in range(300)]
        async with hub.subscribe("t", last_event_id=ids[0]) as subscription:
            await hub.publish("t", "live")
            reset, live = await take(subscription, 2)
    assert reset.event == RESET_EVENT
    assert reset.id == ids[-1]  # the client's Last-Event-ID moves on: no reset loop
    assert json.loads(reset.data)["reason"] == "too_old"
    assert json.loads(reset.data)["lastEventId"] == ids[0]
    assert live.data == "live"


@pytest.mark.parametrize("bad_id", ["garbage", "99999999999999-0", "1-1"])
async def test_an_unknown_id_gets_a_reset(make_backend: BackendFactory, bad_id: str) -> None:
    async with Broadcast(make_backend()) as hub:
        latest = [await hub.publish("t", n) for n in range(3)][-1]
        async with hub.subscribe("t", last_event_id=bad_id) as subscription:
            await hub.publish("t", "live")
            reset, live = await take(subscription, 2)
    assert (reset.event, reset.id) == (RESET_EVENT, latest)
    assert json.loads(reset.data)["reason"] == "unknown"
    assert live.data == "live"


async def test_memory_ids_from_before_a_restart_are_unknown() -> None:
    async with Broadcast(MemoryBackend()) as before:
        old = await before.publish("t", "x")
    async with Broadcast(MemoryBackend()) as after:
        await after.publish("t", "y")
        async with after.subscribe("t", last_event_id=old) as subscription:
            (reset,) = await take(subscription, 1)
    assert json.loads(reset.data)["reason"] == "unknown"


async def test_memory_retention_by_age() -> None:
    backend = MemoryBackend(retain_seconds=0.05)
    async with Broadcast(backend) as hub:
        first = await hub.publish("t", 1)
        await hub.publish("t", 2)
        await trio.sleep(0.1)
        async with hub.subscribe("t", last_event_id=first) as subscription:
            (reset,) = await take(subscription, 1)
    assert json.loads(reset.data)["reason"] == "too_old"


async def test_a_slow_subscriber_is_closed_and_the_others_get_everything(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend(), subscriber_buffer=8) as hub:
        async with hub.subscribe("t") as slow, hub.subscribe("t") as fast:
            received: list[str] = []
            for n in range(20):
                await hub.publish("t", n)
                received.extend(e.data for e in await take(fast, 1))
            # The slow one still gets what it had buffered, then its iteration ends.
            buffered = [event.data async for event in slow]
            assert slow.overflowed
            assert not fast.overflowed
            assert hub.subscriber_count("t") == 1
    assert received == [str(n) for n in range(20)]
    assert buffered == [str(n) for n in range(8)]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(OverflowPolicy.DROP_NEWEST, range(0, 4)), (OverflowPolicy.DROP_OLDEST, range(6, 10))],
)
async def test_drop_policies(policy: OverflowPolicy, expected: range) -> None:
    async with Broadcast(subscriber_buffer=4, overflow=policy) as hub:
        async with hub.subscribe("t") as slow:
            for n in range(10):
                await hub.publish("t", n)
            events = await take(slow, 4)
            assert not slow.overflowed
    assert [int(e.data) for e in events] == list(expected)


async def test_subscriptions_end_with_their_scope_and_with_the_hub(
    make_backend: BackendFactory,
) -> None:
    hub = Broadcast(make_backend())
    async with hub:
        async with hub.subscribe("t"):
            assert hub.subscriber_count("t") == 1
        assert hub.subscriber_count("t") == 0
    ended = trio.Event()

    async def consume() -> None:
        async with hub.subscribe("t") as subscription:
            async for _ in subscription:
                pass
        ended.set()

    async with trio.open_nursery() as nursery:
        # The hub can be entered again, as an app served twice enters its providers twice.
        async with hub:
            assert await hub.publish("t", "again")
            nursery.start_soon(consume)
            await wait_until(lambda: hub.subscriber_count("t") == 1)
        # Leaving the hub (the app's shutdown) ended the consumer's iteration.
        with trio.fail_after(5):
            await ended.wait()


async def test_a_backend_serves_one_hub_at_a_time(make_backend: BackendFactory) -> None:
    backend = make_backend()
    async with Broadcast(backend) as first:
        sent = await first.publish("t", "x")
        with pytest.raises(RuntimeError, match="already open: a backend serves one Broadcast"):
            async with Broadcast(backend):
                pass
        # The refused hub left the open one as it was: it still delivers.
        async with first.subscribe("t") as subscription:
            await first.publish("t", "still")
            assert [e.data for e in await take(subscription, 1)] == ["still"]
    # Once the first hub has left it, another may enter it, and finds the topic as it was.
    async with Broadcast(backend) as second:
        async with second.subscribe("t", last_event_id=sent) as subscription:
            await second.publish("t", "y")
            assert [e.data for e in await take(subscription, 2)] == ["still", "y"]


async def test_an_error_in_the_hubs_block_comes_out_as_raised(make_backend: BackendFactory) -> None:
    # The backend's block (for Redis, a nursery with the topic's reader in it) ends as a normal
    # exit: the error is not thrown into it, so it does not come out in an ExceptionGroup.
    with pytest.raises(KeyError, match="mine"):
        async with Broadcast(make_backend()) as hub, hub.subscribe("t"):
            raise KeyError("mine")


class StallingSink:
    """A client that takes the headers and then nothing: its socket buffer is full."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.stall = False
        self.gone = trio.Event()

    async def start(self, first: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if first:
            await self.write(first)

    async def write(self, data: bytes) -> None:
        if self.stall:
            await trio.sleep_forever()
        self.writes.append(data)

    def notify_disconnect(self, callback: Callable[[], object], start_soon: TaskStarter) -> None:
        start_soon(self.watch_disconnect, callback)  # as a sink that can only wait does

    async def watch_disconnect(self, callback: Callable[[], object]) -> None:
        await self.gone.wait()
        callback()


async def test_hub_stream_replays_then_streams_and_unsubscribes_on_disconnect(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend()) as hub:
        ids = [await hub.publish("t", n) for n in range(5)]
        sink = StallingSink()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_stream, hub.stream("t", ids[1]), sink)
            await wait_until(lambda: hub.subscriber_count("t") == 1)
            await hub.publish("t", 5)
            await wait_until(lambda: len(SseDecoder().feed(b"".join(sink.writes))) == 4)
            sink.gone.set()
        assert hub.subscriber_count("t") == 0
    events = SseDecoder().feed(b"".join(sink.writes))
    assert [e.data for e in events] == ["2", "3", "4", "5"]
    assert [e.id for e in events[:3]] == ids[2:]


async def test_hub_stream_of_a_stalled_client_ends_as_overflow(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend(), subscriber_buffer=4) as hub:
        sink = StallingSink()
        sink.stall = True
        async with trio.open_nursery() as nursery:
            reasons: list[CloseReason] = []

            async def run() -> None:
                settings = StreamSettings(send_timeout=0.3)
                reasons.append(await run_stream(hub.stream("t"), sink, settings))

            nursery.start_soon(run)
            await wait_until(lambda: hub.subscriber_count("t") == 1)
            for n in range(20):
                await hub.publish("t", n)
            await wait_until(lambda: bool(reasons))
        assert reasons == [CloseReason.OVERFLOW]
        assert hub.subscriber_count("t") == 0


async def test_idle_topics_whose_events_aged_out_are_forgotten() -> None:
    memory = MemoryBackend(retain_seconds=0.2)
    async with Broadcast(memory) as hub, hub.subscribe("live") as subscription:
        before = await hub.publish("live", "kept")
        old = [await hub.publish(f"user-{n}", n) for n in range(500)]
        assert len(memory._topics) == 501
        await trio.sleep(1.1)  # past retain_seconds and the once-a-second sweep
        await hub.publish("other", "x")
        # The subscribed topic stays, and keeps counting; the idle ones are gone.
        assert sorted(memory._topics) == ["live", "other"]
        after = await hub.publish("live", "more")
        assert [e.id for e in await take(subscription, 2)] == [before, after]
        assert parse_stream_id(after)[0] == parse_stream_id(before)[0]  # type: ignore[index]
        # A client coming back with an id of a forgotten topic is told, not given a gap.
        async with hub.subscribe("user-7", last_event_id=old[7]) as late:
            (reset,) = await take(late, 1)
        assert reset.event == RESET_EVENT


# -- bytes ------------------------------------------------------------------------------------


def text_of(size: int, n: int) -> str:
    """Data whose event is about ``size`` bytes, starting with ``n`` to tell them apart."""
    return f"{n}:".ljust(size, "x")


async def test_retention_is_bounded_in_bytes(make_backend: BackendFactory) -> None:
    # 40 events of 1 kB, and a topic that keeps 8 kB: an early id is too old, a recent one is
    # replayed whole. (Redis trims after a quarter of retain_bytes published, and keeps its
    # newest entries by bytes: what it holds varies a little, within the bound.)
    async with Broadcast(make_backend(retain_bytes=8_000)) as hub:
        ids = [await hub.publish("t", text_of(1_000, n)) for n in range(40)]
        async with hub.subscribe("t", last_event_id=ids[0]) as old:
            await hub.publish("t", "live")
            reset, live = await take(old, 2)
        async with hub.subscribe("t", last_event_id=ids[36]) as recent:
            replayed = await take(recent, 4)
    assert (reset.event, json.loads(reset.data)["reason"]) == (RESET_EVENT, "too_old")
    assert live.data == "live"
    assert [e.id for e in replayed[:3]] == ids[37:]
    assert replayed[3].data == "live"


async def test_an_event_larger_than_a_topic_keeps_is_refused_with_a_413(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend(retain_bytes=4_000)) as hub:
        before = [await hub.publish("t", text_of(500, n)) for n in range(3)]
        async with hub.subscribe("t") as subscription:
            with pytest.raises(EventTooLarge) as refused:
                await hub.publish("t", text_of(5_000, 99))
            after = await hub.publish("t", "small")
            (live,) = await take(subscription, 1)
        # Nothing was published, and nothing was evicted to make room.
        async with hub.subscribe("t", last_event_id=before[0]) as replaying:
            replayed = await take(replaying, 3)
    assert isinstance(refused.value, HttpException)
    assert refused.value.status == 413
    assert (refused.value.topic, refused.value.limit) == ("t", 4_000)
    assert refused.value.size > 5_000
    assert "retain_bytes" in refused.value.message
    assert live.id == after
    assert [e.id for e in replayed] == [*before[1:], after]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (OverflowPolicy.CLOSE, [0, 1, 2]),
        (OverflowPolicy.DROP_NEWEST, [0, 1, 2]),
        (OverflowPolicy.DROP_OLDEST, [7, 8, 9]),
    ],
)
async def test_a_subscriber_buffer_is_bounded_in_bytes_under_each_policy(
    policy: OverflowPolicy, expected: list[int]
) -> None:
    # Room for 100 events, but only 3 of these in 1,000 bytes: the bytes decide.
    async with Broadcast(
        subscriber_buffer=100, subscriber_buffer_bytes=1_000, overflow=policy
    ) as hub:
        async with hub.subscribe("t") as slow:
            for n in range(10):
                await hub.publish("t", text_of(300, n))
            events = await take(slow, 3)
            assert slow.overflowed is (policy is OverflowPolicy.CLOSE)
            if policy is OverflowPolicy.CLOSE:
                assert [e async for e in slow] == []  # it ended after what it had
    assert [int(e.data.split(":")[0]) for e in events] == expected


async def test_an_empty_subscriber_buffer_takes_any_one_event() -> None:
    async with Broadcast(subscriber_buffer_bytes=100) as hub, hub.subscribe("t") as slow:
        await hub.publish("t", text_of(5_000, 0))
        await hub.publish("t", "x")  # no room behind it: the subscription ends
        events = [event async for event in slow]
    assert [len(e.data) for e in events] == [5_000]
    assert slow.overflowed


@pytest.mark.parametrize(
    "setting",
    [{"subscriber_buffer_bytes": 0}, {"subscriber_buffer_bytes": 1.5}],
)
def test_the_byte_bound_of_a_subscriber_is_checked(setting: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="subscriber_buffer_bytes"):
        Broadcast(**setting)  # type: ignore[arg-type]


def test_the_byte_bound_of_a_memory_topic_is_checked() -> None:
    with pytest.raises(ValueError, match="retain_bytes"):
        MemoryBackend(retain_bytes=0)


async def test_a_reset_repeats_at_most_a_hundred_characters_of_the_id(
    make_backend: BackendFactory,
) -> None:
    async with Broadcast(make_backend()) as hub:
        await hub.publish("t", "x")
        async with hub.subscribe("t", last_event_id="z" * 10_000) as subscription:
            (reset,) = await take(subscription, 1)
    assert json.loads(reset.data)["lastEventId"] == "z" * 100 + "..."
    assert len(reset.encode()) < 400
