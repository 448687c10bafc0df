"""`RedisBackend` on a Redis Cluster: a coredis ``RedisCluster`` client given as ``client=``.

One 3-primary cluster (no replicas) per test, on free loopback ports (see ``redis_cluster`` in
the conftest). The topics are chosen so that their streams live on different primaries, and the
tests check it on the nodes themselves.
"""

from __future__ import annotations

import coredis
import trio
from coredis.retry import NoRetryPolicy

from tests.broadcast.conftest import RedisClusterNodes
from tests.broadcast.test_hub import ordered, take
from trio_dwex.broadcast import Broadcast, RedisBackend

PREFIX = "cluster-test:"


def client(cluster: RedisClusterNodes) -> coredis.RedisCluster[str]:
    # Retries are the backend's (with backoff, within its deadlines), as with a URL.
    return coredis.RedisCluster(
        "127.0.0.1", cluster.ports[0], decode_responses=True, retry_policy=NoRetryPolicy()
    )


def backend(cluster: RedisClusterNodes, **options: object) -> RedisBackend:
    settings: dict[str, object] = {
        "key_prefix": PREFIX,
        "backoff_max": 0.2,
        "block_seconds": 0.3,
        "reader_linger": 0.2,
    }
    settings.update(options)
    return RedisBackend(client=client(cluster), **settings)  # type: ignore[arg-type]


def slot_owners(cluster: RedisClusterNodes) -> dict[int, int]:
    """Each slot's primary's port, from ``CLUSTER NODES``."""
    owners: dict[int, int] = {}
    for line in cluster.command(cluster.ports[0], "CLUSTER", "NODES").splitlines():
        # <id> <ip:port@bus-port> <flags> <primary> <ping> <pong> <epoch> <link> <slots>...
        fields = line.split()
        if len(fields) < 9 or "master" not in fields[2].split(","):
            continue
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        for ranges in fields[8:]:
            start, _, end = ranges.partition("-")
            for slot in range(int(start), int(end or start) + 1):
                owners[slot] = port
    assert len(owners) == 16384, "every slot is assigned"
    assert set(owners.values()) == set(cluster.ports), "every node is a primary with slots"
    return owners


def topics_on_every_node(cluster: RedisClusterNodes, per_node: int = 1) -> dict[str, int]:
    """Topics whose streams land on each primary, ``per_node`` on each: topic -> port."""
    owners = slot_owners(cluster)
    chosen: dict[str, int] = {}
    for n in range(200):  # bounded; 3 nodes fill up within a few dozen candidates
        topic = f"topic-{n}"
        slot = int(cluster.command(cluster.ports[0], "CLUSTER", "KEYSLOT", PREFIX + topic))
        port = owners[slot]
        if sum(1 for p in chosen.values() if p == port) < per_node:
            chosen[topic] = port
        if len(chosen) == per_node * len(cluster.ports):
            return chosen
    raise AssertionError(f"no {per_node} topic(s) per node among 200 candidates: {chosen}")


def keys_on(cluster: RedisClusterNodes, port: int) -> set[str]:
    return set(cluster.command(port, "KEYS", PREFIX + "*").split())


async def test_topics_on_different_nodes_publish_and_subscribe(
    redis_cluster: RedisClusterNodes,
) -> None:
    topics = topics_on_every_node(redis_cluster, per_node=2)
    async with Broadcast(backend(redis_cluster)) as hub:
        async with trio.open_nursery() as nursery:
            received: dict[str, list[str]] = {}
            published: dict[str, list[str]] = {}

            async def follow(topic: str, task_status: trio.TaskStatus[None]) -> None:
                async with hub.subscribe(topic) as subscription:
                    task_status.started()
                    received[topic] = [e.id or "" for e in await take(subscription, 5)]

            for topic in topics:
                await nursery.start(follow, topic)
            for n in range(5):  # interleaved, so every node's reader is busy at once
                for topic in topics:
                    published.setdefault(topic, []).append(await hub.publish(topic, [topic, n]))
    for topic in topics:
        assert received[topic] == published[topic]
        assert ordered(published[topic])
    # Each stream is on the primary its slot says, and only there: six topics, three nodes.
    for port in redis_cluster.ports:
        expected = {PREFIX + topic for topic, owner in topics.items() if owner == port}
        assert len(expected) == 2
        assert keys_on(redis_cluster, port) == expected


async def test_replay_after_last_event_id(redis_cluster: RedisClusterNodes) -> None:
    topics = topics_on_every_node(redis_cluster)
    async with Broadcast(backend(redis_cluster)) as hub:
        for topic in topics:
            ids = [await hub.publish(topic, f"{topic}:{n}") for n in range(6)]
            async with hub.subscribe(topic, last_event_id=ids[2]) as subscription:
                replayed = await take(subscription, 3)
                live_id = await hub.publish(topic, "live")
                (live,) = await take(subscription, 1)
            assert [e.id for e in replayed] == ids[3:]
            assert [e.data for e in replayed] == [f"{topic}:{n}" for n in range(3, 6)]
            assert (live.id, live.data) == (live_id, "live")


async def test_two_hubs_see_each_others_events_in_order(redis_cluster: RedisClusterNodes) -> None:
    topics = list(topics_on_every_node(redis_cluster))
    async with (
        Broadcast(backend(redis_cluster)) as first,
        Broadcast(backend(redis_cluster)) as second,
    ):
        for topic in topics:
            async with first.subscribe(topic) as on_first, second.subscribe(topic) as on_second:
                ids = []
                for n in range(10):  # alternate publishers; one order, Redis's
                    hub = first if n % 2 == 0 else second
                    ids.append(await hub.publish(topic, n))
                got_first = await take(on_first, 10)
                got_second = await take(on_second, 10)
            assert ordered(ids)
            assert [e.id for e in got_first] == ids == [e.id for e in got_second]
            assert [e.data for e in got_first] == [str(n) for n in range(10)]
