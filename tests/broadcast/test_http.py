"""The hub over HTTP: the activity example on two app instances, as two workers would run it.

With Redis the two instances have their own hubs on one redis-server, as two worker processes
(or hosts) would; with the in-memory backend both "instances" are one app, the only setup in
which memory can share a topic.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Annotated

import httpx
import pytest
import trio
from examples.activity_broadcast import make_app

from tests.broadcast.conftest import RedisServer
from tests.broadcast.proxy import TcpProxy
from tests.helpers import LiveStream, open_stream
from trio_dwex import Body, Controller, DwexApp, Module, Post, Provider, create_app
from trio_dwex.broadcast import Broadcast, MemoryBackend, RedisBackend
from trio_dwex.testing._client import EventSource
from trio_dwex.testing._server import serve_app
from trio_dwex.wire._decoder import MessageEvent


class Cluster:
    """Where to publish (``a``) and where to listen (``b``)."""

    def __init__(self, a: httpx.AsyncClient, b: httpx.AsyncClient, b_url: str) -> None:
        self.a = a
        self.b = b
        self.b_url = b_url
        self.probes = 0

    async def publish(self, n: int | str) -> str:
        response = await self.a.post("/activity", json={"userId": "u", "activity": f"a{n}"})
        assert response.status_code in (200, 201), response.text
        event_id: str = response.json()["id"]
        return event_id


async def _serve(stack: AsyncExitStack, broadcast: str) -> tuple[str, httpx.AsyncClient]:
    url = await stack.enter_async_context(serve_app(make_app(broadcast)))
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=20))
    return url, client


@pytest.fixture
async def cluster(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        if backend_kind == "memory":
            url, client = await _serve(stack, "memory://")
            yield Cluster(client, client, url)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            _, a = await _serve(stack, server.url)
            b_url, b = await _serve(stack, server.url)
            yield Cluster(a, b, b_url)


def activity(event: MessageEvent) -> str:
    value: str = json.loads(event.data)["activity"]
    return value


async def until_subscribed(cluster: Cluster, stream: LiveStream) -> None:
    """Publish probes until the listener sees one: its subscription is then live.

    Each probe is distinct, and once one arrives the listener reads on to the last one sent:
    a probe that was slower than the wait for it arrives before this returns, not among the
    events the test counts next.
    """
    seen = ""
    with trio.fail_after(10):
        while not seen:
            cluster.probes += 1
            await cluster.publish(f"-probe{cluster.probes}")
            with trio.move_on_after(0.3):
                while not seen.startswith("a-probe"):
                    seen = activity(await stream.next_event())
        last = f"a-probe{cluster.probes}"
        while seen != last:
            seen = activity(await stream.next_event())


async def test_a_client_on_one_instance_sees_everything_published_through_the_other(
    cluster: Cluster,
) -> None:
    async with open_stream(cluster.b, "/activity/stream") as stream:
        await until_subscribed(cluster, stream)
        ids = [await cluster.publish(n) for n in range(50)]
        with trio.fail_after(10):
            events = await stream.events(50)
    assert [activity(e) for e in events] == [f"a{n}" for n in range(50)]
    assert [e.id for e in events] == ids
    assert {e.type for e in events} == {"activity"}


async def test_reconnecting_with_last_event_id_gets_the_100_missed_then_live_ones(
    cluster: Cluster,
) -> None:
    async with open_stream(cluster.b, "/activity/stream") as stream:
        await until_subscribed(cluster, stream)
        seen = await cluster.publish(0)
        with trio.fail_after(10):
            while (await stream.next_event()).id != seen:
                pass
    missed = [await cluster.publish(n) for n in range(1, 101)]
    async with EventSource(
        cluster.b_url + "/activity/stream", last_event_id=seen, max_events=103, timeout=15
    ) as source:
        events: list[MessageEvent] = []
        async for event in source:
            events.append(event)
            if len(events) == 100:
                live = [await cluster.publish(n) for n in range(101, 104)]
    assert [e.id for e in events[:100]] == missed
    assert [activity(e) for e in events] == [f"a{n}" for n in range(1, 104)]
    assert [e.id for e in events[100:]] == live
    assert source.connections == 1


async def test_redis_killed_and_restarted_mid_stream_loses_no_retained_event(
    redis_factory: Callable[..., RedisServer],
) -> None:
    # "Retained" means acknowledged by Redis and within retention. appendfsync always makes
    # every acknowledged XADD survive the crash (SIGKILL) of redis-server. The listening
    # instance reaches Redis through a proxy that is cut first: what is published through the
    # other instance meanwhile is in Redis, and unread by the listener's reader, when Redis
    # dies. Only reading on from the last id it saw, once Redis is back, delivers it.
    server = redis_factory(persistent=True)
    proxy = TcpProxy(server.port)
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        await nursery.start(proxy.run)
        _, a = await _serve(stack, server.url)
        b_url, b = await _serve(stack, proxy.url)
        cluster = Cluster(a, b, b_url)
        async with open_stream(b, "/activity/stream") as stream:
            await until_subscribed(cluster, stream)
            before = [await cluster.publish(n) for n in range(5)]
            with trio.fail_after(10):
                assert [e.id for e in await stream.events(5)] == before
            proxy.partition()
            published = [await cluster.publish(n) for n in range(5, 25)]  # unread by b
            server.kill()

            async def publish_through_the_outage() -> None:
                # Blocks while Redis is down: publish retries within publish_timeout.
                for n in range(25, 35):
                    published.append(await cluster.publish(n))

            async with trio.open_nursery() as publishers:
                publishers.start_soon(publish_through_the_outage)
                await trio.sleep(0.3)
                server.start()
            proxy.heal()
            published += [await cluster.publish(n) for n in range(35, 40)]
            events: list[MessageEvent] = []
            with trio.fail_after(20):
                while not events or events[-1].id != published[-1]:
                    events.append(await stream.next_event())
        async with EventSource(
            b_url + "/activity/stream", last_event_id=before[-1], max_events=len(events), timeout=15
        ) as source:
            replayed = [event async for event in source]
        nursery.cancel_scope.cancel()
    # A retried XADD whose reply the crash swallowed is not applied twice (the retry looks
    # for its own entry first): every acknowledged activity arrives once, in order, with the
    # id its publish returned; no reset was needed, and the replay from before the crash is
    # whole.
    received = [e.id for e in events]
    assert {e.type for e in events} == {"activity"}
    assert received == published
    assert ordered(received)
    assert [activity(e) for e in events] == [f"a{n}" for n in range(5, 40)]
    assert [e.id for e in replayed] == received


def ordered(ids: Sequence[str | None]) -> bool:
    keys = [tuple(map(int, (i or "").split("-"))) for i in ids]
    return keys == sorted(set(keys))


HOSTILE_HEADERS = [
    "9" * 4301 + "-1",  # past Python's int-string conversion limit (both backends: a 500)
    "18446744073709551616-0",  # 2**64: past Redis's stream ids (Redis: a 500)
    "1-18446744073709551616",
    "garbage",
]


@pytest.mark.parametrize("last_event_id", HOSTILE_HEADERS, ids=lambda text: text[:24])
async def test_a_hostile_last_event_id_header_gets_a_reset_then_live_events(
    cluster: Cluster, last_event_id: str
) -> None:
    # An EventSource cannot change the header it reconnects with, so an id that is no id of
    # the topic gets what an id from before a restart gets: a reset, whose id replaces it.
    latest = await cluster.publish("before")
    async with open_stream(
        cluster.b, "/activity/stream", headers={"last-event-id": last_event_id}
    ) as stream:
        assert stream.response.status_code == 200
        with trio.fail_after(10):
            reset = await stream.next_event()
        assert reset.type == "reset"
        assert reset.id == latest
        assert json.loads(reset.data)["reason"] == "unknown"
        assert len(json.loads(reset.data)["lastEventId"]) <= 103
        await until_subscribed(cluster, stream)


async def test_a_non_ascii_last_event_id_header_gets_a_reset(cluster: Cluster) -> None:
    latest = await cluster.publish("before")
    async with open_stream(
        cluster.b, "/activity/stream", headers={"last-event-id": b"\xff\xfe-\x80"}
    ) as stream:
        with trio.fail_after(10):
            reset = await stream.next_event()
    assert (reset.type, reset.id) == ("reset", latest)


def small_topic_app(broadcast: str) -> DwexApp:
    """An app whose topic keeps 4,000 bytes: a larger event is refused."""

    @Controller("notes")
    class NotesController:
        def __init__(self, hub: Broadcast) -> None:
            self.hub = hub

        @Post()
        async def publish(self, body: Annotated[dict[str, str], Body()]) -> dict[str, str]:
            return {"id": await self.hub.publish("notes", body)}

    def hub() -> Broadcast:
        if broadcast == "memory://":
            return Broadcast(MemoryBackend(retain_bytes=4_000))
        return Broadcast(RedisBackend(broadcast, retain_bytes=4_000))

    @Module(controllers=[NotesController], providers=[Provider(Broadcast, use_factory=hub)])
    class NotesModule:
        pass

    return create_app(NotesModule)


async def test_an_event_larger_than_its_topic_keeps_is_a_413(
    backend_kind: str, request: pytest.FixtureRequest
) -> None:
    url = "memory://"
    if backend_kind == "redis":
        url = request.getfixturevalue("redis_server").url
    async with (
        serve_app(small_topic_app(url)) as base,
        httpx.AsyncClient(base_url=base, timeout=20) as client,
    ):
        refused = await client.post("/notes", json={"text": "x" * 5_000})
        kept = await client.post("/notes", json={"text": "x" * 1_000})
    assert refused.status_code == 413
    assert refused.json()["statusCode"] == 413
    assert "retain_bytes" in refused.json()["message"]
    assert kept.status_code in (200, 201)
