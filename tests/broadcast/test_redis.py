"""What only the Redis backend does: outages, restarts without persistence, one reader per topic."""

from __future__ import annotations

import json

import pytest
import trio

from tests.broadcast.conftest import RedisServer
from tests.broadcast.test_hub import take
from tests.helpers import wait_until
from trio_dwex.streams.broadcast import RESET_EVENT, Broadcast, BroadcastUnavailable
from trio_dwex.streams.redis_backend import RedisBackend


def backend(server: RedisServer, **options: object) -> RedisBackend:
    settings: dict[str, object] = {"backoff_max": 0.2, "block_seconds": 0.3, "reader_linger": 0.2}
    settings.update(options)
    return RedisBackend(server.url, **settings)  # type: ignore[arg-type]


async def test_one_reader_per_topic_whatever_the_subscribers_and_it_stops_when_unused(
    redis_server: RedisServer,
) -> None:
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
            await hub.publish("t", "after")
            (event,) = await take(subscription, 1, seconds=10)
            assert event.data == "after"
        # Redis lost the stream: an id from before is unknown, and said so.
        async with hub.subscribe("t", last_event_id=old) as subscription:
            (reset,) = await take(subscription, 1)
    assert reset.event == RESET_EVENT
    assert json.loads(reset.data)["reason"] == "unknown"


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
