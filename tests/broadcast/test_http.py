"""The hub over HTTP: the activity example on two app instances, as two workers would run it.

With Redis the two instances have their own hubs on one redis-server, as two worker processes
(or hosts) would; with the in-memory backend both "instances" are one app, the only setup in
which memory can share a topic.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
import trio
from examples.activity_broadcast import make_app

from tests.broadcast.conftest import RedisServer
from tests.helpers import LiveStream, open_stream
from trio_dwex.testing.client import EventSource
from trio_dwex.testing.server import serve_app
from trio_dwex.wire.decoder import MessageEvent


class Cluster:
    """Where to publish (``a``) and where to listen (``b``)."""

    def __init__(self, a: httpx.AsyncClient, b: httpx.AsyncClient, b_url: str) -> None:
        self.a = a
        self.b = b
        self.b_url = b_url

    async def publish(self, n: int) -> str:
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
    """Publish probes until the listener sees one: its subscription is then live."""
    with trio.fail_after(10):
        while True:
            await cluster.publish(-1)
            with trio.move_on_after(0.3):
                while True:
                    if activity(await stream.next_event()) == "a-1":
                        return


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
    # every acknowledged XADD survive the crash (SIGKILL) of redis-server.
    server = redis_factory(persistent=True)
    async with AsyncExitStack() as stack:
        _, a = await _serve(stack, server.url)
        b_url, b = await _serve(stack, server.url)
        cluster = Cluster(a, b, b_url)
        published: list[str] = []
        async with open_stream(b, "/activity/stream") as stream:
            await until_subscribed(cluster, stream)

            twenty = trio.Event()

            async def publish_through_the_outage() -> None:
                for n in range(60):
                    if n == 20:
                        twenty.set()
                    # Blocks while Redis is down: publish retries within publish_timeout.
                    published.append(await cluster.publish(n))
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_through_the_outage)
                with trio.fail_after(10):
                    await twenty.wait()
                server.kill()
                await trio.sleep(0.5)
                server.start()
            events: list[MessageEvent] = []
            with trio.fail_after(20):
                while not events or events[-1].id != published[-1]:
                    events.append(await stream.next_event())
        replayed: list[MessageEvent] = []
        async with EventSource(
            b_url + "/activity/stream",
            last_event_id=published[4],
            max_events=len(events) - 5,
            timeout=15,
        ) as source:
            replayed = [event async for event in source]
    # A retried XADD whose reply the crash swallowed can be applied twice (at-least-once):
    # then an activity repeats under a new id. Nothing acknowledged is missing, nothing is
    # out of order, and the replay from before the crash is whole.
    received = [e.id for e in events]
    assert set(published) <= set(received)
    assert ordered(received)
    assert dedupe([activity(e) for e in events]) == [f"a{n}" for n in range(60)]
    assert [e.id for e in replayed] == [i for i in received if i not in published[:5]]


def ordered(ids: list[str | None]) -> bool:
    keys = [tuple(map(int, (i or "").split("-"))) for i in ids]
    return keys == sorted(set(keys))


def dedupe(values: list[str]) -> list[str]:
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]
