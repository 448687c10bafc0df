"""What only the Redis backend does: outages, restarts without persistence, one reader per topic."""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack

import coredis
import pytest
import trio
from coredis.tokens import PureToken

from tests.broadcast.conftest import RedisServer
from tests.broadcast.proxy import TcpProxy
from tests.broadcast.test_hub import take
from tests.helpers import wait_until
from trio_dwex.broadcast import (
    RESET_EVENT,
    Broadcast,
    BroadcastUnavailable,
    EventTooLarge,
    RedisBackend,
)
from trio_dwex.broadcast import _redis as redis_backend

SETTINGS: dict[str, object] = {"backoff_max": 0.2, "block_seconds": 0.3, "reader_linger": 0.2}


def backend(server: RedisServer | str, **options: object) -> RedisBackend:
    """A backend with the suite's short timings, on a server or a URL (a proxy's)."""
    url = server if isinstance(server, str) else server.url
    return RedisBackend(url, **{**SETTINGS, **options})  # type: ignore[arg-type]


async def reading_connections(raw: coredis.Redis[str]) -> tuple[int, int]:
    """(connections other than ``raw``'s own, of them in a blocking ``XREAD``) per CLIENT LIST."""
    clients = [c for c in await raw.client_list() if c["cmd"] not in ("client", "client|list")]
    return len(clients), sum(c["cmd"] == "xread" for c in clients)


async def test_one_reading_connection_per_topic_whatever_the_subscribers(
    redis_server: RedisServer,
) -> None:
    redis = backend(redis_server)
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=True)
    async with Broadcast(redis) as hub, raw, AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(hub.subscribe("a")) for _ in range(30)]
        subscriptions += [await stack.enter_async_context(hub.subscribe("b")) for _ in range(5)]
        for n in range(20):
            await hub.publish("a", n)
            await hub.publish("b", n)
        for subscription in subscriptions:
            assert len(await take(subscription, 20)) == 20
        # As Redis sees it: two connections in XREAD (one per topic), for 35 subscribers,
        # and few connections in all (the readers' and the publishers').
        counts = []
        for _ in range(10):
            counts.append(await reading_connections(raw))
            await trio.sleep(0.05)
        assert max(reading for _, reading in counts) == 2, counts
        assert max(total for total, _ in counts) <= 4, counts
    # The readers stop when their topics have no subscriber, and their connections go.
    async with raw:
        for _ in range(100):
            left = await reading_connections(raw)
            if left[0] == 0:
                break
            await trio.sleep(0.05)
        assert left == (0, 0)


async def test_a_topics_reader_stops_when_unused(redis_server: RedisServer) -> None:
    redis = backend(redis_server)
    async with Broadcast(redis) as hub:
        async with hub.subscribe("a") as first, hub.subscribe("a"), hub.subscribe("b"):
            assert sorted(redis._readers) == ["a", "b"]
            await hub.publish("a", "x")
            assert [e.data for e in await take(first, 1)] == ["x"]
        await wait_until(lambda: not redis._readers, seconds=5)


async def test_live_subscribers_survive_a_restart_without_persistence(
    redis_server: RedisServer,
) -> None:
    async with Broadcast(backend(redis_server)) as hub:
        old = await hub.publish("t", "before")
        async with hub.subscribe("t") as subscription:
            redis_server.kill()
            with pytest.raises(BroadcastUnavailable):
                async with Broadcast(backend(redis_server, publish_timeout=0.3)) as other:
                    await other.publish("t", "lost")
            redis_server.start()
            after = await hub.publish("t", "after")
            # The reader cannot know what Redis lost: it says so before reading on.
            reset, event = await take(subscription, 2, seconds=10)
            assert (reset.event, json.loads(reset.data)["reason"]) == (RESET_EVENT, "unknown")
            assert (event.id, event.data) == (after, "after")
        # Redis lost the stream: an id from before is unknown, and said so.
        async with hub.subscribe("t", last_event_id=old) as subscription:
            (reset,) = await take(subscription, 1)
    assert reset.event == RESET_EVENT
    assert json.loads(reset.data)["reason"] == "unknown"


@pytest.mark.parametrize("read_before", [0, 2])
async def test_a_reader_that_started_on_an_empty_topic_is_told_of_a_restart_without_persistence(
    redis_server: RedisServer, read_before: int
) -> None:
    # The topic has no stream when its reader starts; after the restart, more events are
    # added to the new stream than the reader had read, so counting entries cannot tell.
    async with Broadcast(backend(redis_server)) as hub, hub.subscribe("t") as subscription:
        before = [await hub.publish("t", f"before{n}") for n in range(read_before)]
        if before:
            assert [e.id for e in await take(subscription, len(before))] == before
        redis_server.kill()
        redis_server.start()
        after = [await hub.publish("t", f"after{n}") for n in range(5)]
        reset, *events = await take(subscription, 6, seconds=10)
    assert reset.event == RESET_EVENT
    assert json.loads(reset.data)["reason"] == "unknown"
    assert json.loads(reset.data)["lastEventId"] == (before[-1] if before else reset.id)
    assert [e.id for e in events] == after


async def test_subscribing_while_redis_is_down_fails_within_the_timeout(
    redis_server: RedisServer,
) -> None:
    async with Broadcast(backend(redis_server), replay_timeout=0.5) as hub:
        redis_server.kill()
        with trio.fail_after(5), pytest.raises(BroadcastUnavailable, match="replay_timeout"):
            async with hub.subscribe("t"):
                pass
        assert hub.subscriber_count("t") == 0


async def test_age_retention_uses_the_servers_clock(redis_server: RedisServer) -> None:
    redis = backend(redis_server, retain_seconds=0.2)
    async with Broadcast(redis) as hub:
        first = await hub.publish("t", 1)
        # Approximate trimming removes whole nodes: fill one, then let it age out.
        for n in range(150):
            await hub.publish("t", n)
        await trio.sleep(1.3)  # past retain_seconds and the once-a-second trim pacing
        await hub.publish("t", "trigger")
        async with hub.subscribe("t", last_event_id=first) as subscription:
            (reset,) = await take(subscription, 1)
    assert json.loads(reset.data)["reason"] == "too_old"


async def test_a_partition_longer_than_retention_is_told_with_a_reset_not_a_silent_gap(
    redis_server: RedisServer,
) -> None:
    proxy = TcpProxy(redis_server.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        options: dict[str, object] = {"retain_count": 10, "backoff_initial": 0.02}
        async with (
            Broadcast(backend(redis_server, **options)) as publisher,
            Broadcast(backend(proxy.url, **options)) as cut_off,
            cut_off.subscribe("t") as subscription,
        ):
            seen = await publisher.publish("t", "first")
            assert [e.data for e in await take(subscription, 1)] == ["first"]
            proxy.partition()
            # Far more than retain_count (MAXLEN ~ trims whole nodes of 100): what the cut
            # off reader had not read is trimmed before it can read it.
            for n in range(300):
                await publisher.publish("t", n)
            proxy.heal()
            last = await publisher.publish("t", "last")
            events = []
            with trio.fail_after(10):
                async for event in subscription:
                    events.append(event)
                    if event.id == last:
                        break
        nursery.cancel_scope.cancel()
    reset = events[0]
    assert (reset.event, reset.id) == (RESET_EVENT, seen)
    assert json.loads(reset.data)["reason"] == "too_old"
    assert json.loads(reset.data)["lastEventId"] == seen
    # Then what Redis still had, in order, and the live events.
    rest = [e.data for e in events[1:]]
    assert rest[-1] == "last"
    assert rest[:-1] == [str(n) for n in range(300 - len(rest) + 1, 300)]
    assert [e.event for e in events[1:]] == [None] * len(rest)


async def test_a_short_partition_resumes_from_the_last_id_read_with_no_reset(
    redis_server: RedisServer,
) -> None:
    proxy = TcpProxy(redis_server.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        async with (
            Broadcast(backend(redis_server, backoff_initial=0.02)) as publisher,
            Broadcast(backend(proxy.url)) as cut_off,
            cut_off.subscribe("t") as subscription,
        ):
            await publisher.publish("t", "first")
            await take(subscription, 1)
            proxy.partition()
            unread = [await publisher.publish("t", n) for n in range(20)]
            proxy.heal()
            events = await take(subscription, 20, seconds=10)
        nursery.cancel_scope.cancel()
    assert [e.id for e in events] == unread


async def test_an_entry_that_cannot_be_decoded_is_logged_and_skipped(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis = backend(redis_server)
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with Broadcast(redis) as hub, raw, hub.subscribe("t") as subscription:
        await hub.publish("t", "ok1")
        # Not UTF-8: coredis hands the value over as bytes, which the reader cannot decode.
        bad = str(await raw.xadd(redis._key("t"), {b"d": b"\xff\xfe"}) or b"", "ascii")
        await hub.publish("t", "ok2")
        events = await take(subscription, 2)
        assert [e.data for e in events] == ["ok1", "ok2"]
        assert hub.is_open
    (record,) = [r for r in caplog.records if bad in r.getMessage()]
    assert record.levelname == "ERROR"
    assert "skipping stream entry" in record.getMessage()
    assert record.exc_info is not None  # with its traceback


async def test_a_reader_crash_ends_that_topics_subscribers_not_the_hub(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_entries = redis_backend._entries

    def buggy(result: object, key: str) -> object:
        if key.endswith("bad") and result:
            raise RuntimeError("a bug in the reader")
        return real_entries(result, key)

    redis = backend(redis_server)
    async with Broadcast(redis) as hub:
        async with hub.subscribe("bad") as first, hub.subscribe("bad") as second:
            async with hub.subscribe("good") as good:
                monkeypatch.setattr(redis_backend, "_entries", buggy)
                await hub.publish("bad", "x")
                # Both subscriptions of the topic end (a stream would close, and its client
                # reconnect); the other topic and the hub go on.
                assert await take(first, 1) == []
                assert await take(second, 1) == []
                assert hub.subscriber_count("bad") == 0
                await hub.publish("good", "still")
                assert [e.data for e in await take(good, 1)] == ["still"]
        monkeypatch.setattr(redis_backend, "_entries", real_entries)
        async with hub.subscribe("bad") as again:
            await hub.publish("bad", "y")
            assert [e.data for e in await take(again, 1)] == ["y"]
    crashes = [r for r in caplog.records if "reader crashed" in r.getMessage()]
    assert len(crashes) == 1
    assert crashes[0].exc_info is not None


async def test_per_topic_pacing_state_does_not_grow_with_dynamic_topics(
    redis_server: RedisServer,
) -> None:
    redis = backend(redis_server)
    async with Broadcast(redis) as hub:
        for n in range(300):
            await hub.publish(f"user-{n}", n)
        assert len(redis._last_trim) == 300
        await trio.sleep(1.1)  # past the once-a-second age-trim pacing
        await hub.publish("other", "x")
        assert list(redis._last_trim) == ["other"]


async def test_a_retried_publish_whose_first_xadd_was_applied_is_delivered_once(
    redis_server: RedisServer,
) -> None:
    proxy = TcpProxy(redis_server.port)
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        publishing = backend(proxy.url, backoff_initial=0.02)
        async with (
            Broadcast(publishing) as publisher,
            Broadcast(backend(redis_server)) as hub,
            raw,
            hub.subscribe("t") as subscription,
        ):
            ids = [await publisher.publish("t", "first")]
            assert [e.data for e in await take(subscription, 1)] == ["first"]
            # Redis runs the XADD, the reply is lost with its connection, the publish retries.
            proxy.lose_reply(b"XADD")
            ids.append(await publisher.publish("t", "second"))
            assert proxy.lost == {b"XADD": 1}
            ids.append(await publisher.publish("t", "third"))
            events = await take(subscription, 2)
            assert [e.data for e in events] == ["second", "third"]
            # Nothing more: one more event comes next, not a second "second".
            ids.append(await publisher.publish("t", "last"))
            assert [e.data for e in await take(subscription, 1)] == ["last"]
            stored = await raw.xrange(publishing._key("t"))
            async with hub.subscribe("t", last_event_id=ids[0]) as replaying:
                replayed = await take(replaying, 3)
        nursery.cancel_scope.cancel()
    assert [e.id for e in events] == ids[1:3]
    assert [entry.identifier for entry in stored] == ids
    assert [e.data for e in replayed] == ["second", "third", "last"]


async def test_failing_age_trims_warn_once_per_spell(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=redis_backend.logger.name)
    proxy = TcpProxy(redis_server.port)

    def trim_logs() -> list[tuple[str, str]]:
        return [
            (r.levelname, r.getMessage())
            for r in caplog.records
            if r.name == redis_backend.logger.name and "age trim" in r.getMessage()
        ]

    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        async with Broadcast(backend(proxy.url)) as hub:
            # Age trims are paced per topic: one publish to a new topic is one trim.
            await hub.publish("t0", "trimmed")
            assert trim_logs() == []
            proxy.lose_reply(b"XTRIM", times=3)
            for n in range(1, 4):
                await hub.publish(f"t{n}", "published, not trimmed")
            assert proxy.lost == {b"XTRIM": 3}
            spell = trim_logs()
            assert [level for level, _ in spell] == ["WARNING", "DEBUG", "DEBUG"]
            assert "'t1'" in spell[0][1]
            assert "retain_seconds" in spell[0][1]
            await hub.publish("t4", "trimmed again")
            assert [level for level, _ in trim_logs()[3:]] == ["INFO"]
            proxy.lose_reply(b"XTRIM")
            await hub.publish("t5", "a new spell")
            assert [level for level, _ in trim_logs()[4:]] == ["WARNING"]
        nursery.cancel_scope.cancel()


# -- bytes ------------------------------------------------------------------------------------


def numbered(size: int, n: int) -> str:
    return f"{n}:".ljust(size, "x")


async def test_a_replay_is_read_in_pages_of_read_bytes(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = backend(redis_server, read_bytes=5_000)
    pages: list[tuple[int, int]] = []
    real = RedisBackend._read_page

    async def spy(self: RedisBackend, client: object, key: str, after: str) -> object:
        page = await real(self, client, key, after)
        pages.append((len(page.entries), sum(int(fields["n"]) for _, fields in page.entries)))
        return page

    async with Broadcast(redis) as hub:
        ids = [await hub.publish("t", numbered(1_000, n)) for n in range(60)]
        monkeypatch.setattr(RedisBackend, "_read_page", spy)
        async with hub.subscribe("t", last_event_id=ids[0]) as subscription:
            await hub.publish("t", "live")
            events = await take(subscription, 60)
    assert [e.id for e in events[:59]] == ids[1:]
    assert events[59].data == "live"
    # The replay's pages, each within read_bytes: 59 events of about 1 kB, four a page, the
    # next one read once the subscriber has taken the one before. The last one also has the
    # live event, retained by then (the subscriber gets it once).
    assert [count for count, _ in pages] == [4] * 15
    assert all(4_000 < size <= 5_000 for _, size in pages[:-1])


async def test_a_replay_whose_next_page_was_trimmed_meanwhile_gets_a_reset(
    redis_server: RedisServer,
) -> None:
    redis = backend(redis_server, read_bytes=5_000)
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=True)
    async with Broadcast(redis) as hub, raw:
        ids = [await hub.publish("t", numbered(1_000, n)) for n in range(30)]
        async with hub.subscribe("t", last_event_id=ids[0]) as subscription:
            first_page = await take(subscription, 4)
            # Everything retained goes before the subscriber asks for the next page.
            await raw.xtrim(redis._key("t"), PureToken.MAXLEN, 0)
            (reset,) = await take(subscription, 1)
            await hub.publish("t", "live")
            (live,) = await take(subscription, 1)
    assert [e.id for e in first_page] == ids[1:5]
    assert (reset.event, reset.id) == (RESET_EVENT, ids[-1])
    assert json.loads(reset.data)["reason"] == "too_old"
    assert json.loads(reset.data)["lastEventId"] == ids[4]
    assert live.data == "live"


async def test_a_topic_in_redis_is_trimmed_to_retain_bytes(redis_server: RedisServer) -> None:
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=True)
    redis = backend(redis_server, retain_bytes=20_000)
    async with Broadcast(redis) as hub, raw:
        for n in range(200):
            await hub.publish("t", numbered(2_000, n))
        entries = await raw.xrange(redis._key("t"))
    sizes = [int(entry.field_values["n"]) + len(entry.identifier) + 5 for entry in entries]
    # About retain_bytes, plus what was published since the last trim (a quarter of it at
    # most); the newest entries, in order.
    assert 20_000 - 2_100 < sum(sizes) <= 20_000 + 5_000 + 2_100
    assert [int(str(e.field_values["d"]).split(":")[0]) for e in entries] == list(
        range(200 - len(entries), 200)
    )


async def test_a_byte_trim_keeps_the_newest_entries_whatever_their_size(
    redis_server: RedisServer,
) -> None:
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=True)
    redis = backend(redis_server, retain_bytes=10_000)
    async with Broadcast(redis) as hub, raw:
        for n in range(10):
            await hub.publish("t", numbered(9_000, n))
        length = await raw.xlen(redis._key("t"))
    assert length == redis_backend._TRIM_KEEPS


async def test_an_event_larger_than_redis_keeps_is_refused_before_it_is_sent(
    redis_server: RedisServer,
) -> None:
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=True)
    redis = backend(redis_server, retain_bytes=4_000)
    async with Broadcast(redis) as hub, raw:
        with pytest.raises(EventTooLarge):
            await hub.publish("t", "x" * 4_000)
        assert await raw.exists([redis._key("t")]) == 0


#: What other processes do while a reader waits, in one script so that the reader reads only
#: after it (Redis serves a blocked XREAD after the script): add ``ARGV[3]`` entries of data
#: ``ARGV[4]`` and trim by bytes as a publisher does (``ARGV[1]`` bytes, ``ARGV[2]`` kept).
BURST_THEN_TRIM = (
    "local function trim()\n"
    + redis_backend._TRIM_BYTES
    + "\nend\n"
    + """
for i = 1, tonumber(ARGV[3]) do
  redis.call('XADD', KEYS[1], '*', 'n', tostring(#ARGV[4] + 8), 'd', ARGV[4])
end
return trim()
"""
)


async def test_a_waiting_reader_that_a_byte_trim_went_past_is_told_not_given_a_gap(
    redis_server: RedisServer,
) -> None:
    raw = coredis.Redis.from_url(redis_server.url, decode_responses=True)
    redis = backend(redis_server, retain_bytes=6_000)
    async with Broadcast(redis) as hub, raw, hub.subscribe("t") as subscription:
        first = await hub.publish("t", "first")
        assert [e.id for e in await take(subscription, 1)] == [first]
        trimmed = await raw.eval(
            BURST_THEN_TRIM,
            keys=[redis._key("t")],
            args=["6000", str(redis_backend._TRIM_KEEPS), "20", "y" * 1_000],
        )
        kept = [entry.identifier for entry in await raw.xrange(redis._key("t"))]
        events = await take(subscription, 1 + len(kept))
    # The trim went past the reader's last id, and left more entries than a blocking read
    # asks for: the reader looks again, in pages that tell the gap.
    assert trimmed == 21 - len(kept)
    assert redis_backend._TRIM_KEEPS < len(kept) < 20
    reset, *rest = events
    assert (reset.event, reset.id) == (RESET_EVENT, first)
    assert json.loads(reset.data)["reason"] == "too_old"
    assert [e.id for e in rest] == kept
