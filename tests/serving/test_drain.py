"""A shutdown without a reconnect storm: readiness says 503 at once, new streams are refused,
and the open streams end spread over ``Settings.drain_window``, each told when to come back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import httpx
import trio

from tests.helpers import open_stream
from trio_dwex import Controller, Module, Settings, Sse, SseEvent, create_app, serve
from trio_dwex.serving._serve import make_config

STREAMS = 30
WINDOW = 1.0


@Controller()
class FeedController:
    @Sse("feed")
    async def feed(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="hello")
        await trio.sleep_forever()


@Module(controllers=[FeedController])
class FeedModule:
    pass


async def test_streams_end_spread_over_the_window_and_readiness_says_so() -> None:
    app = create_app(FeedModule, settings=Settings(drain_window=WINDOW, readiness_path="/ready"))
    stop = trio.Event()
    ends: list[float] = []
    farewells: list[bytes] = []

    async def follow(client: httpx.AsyncClient, opened: trio.Event) -> None:
        async with open_stream(client, "/feed") as stream:
            await stream.next_event()
            opened.set()
            farewells.append(await stream.rest())
            ends.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        config = make_config(host="127.0.0.1", port=0, graceful_timeout=5.0)
        binds = await nursery.start(partial(serve, app, config=config, shutdown_trigger=stop.wait))
        url = binds[0]
        limits = httpx.Limits(max_connections=STREAMS + 5)
        async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
            assert (await client.get("/ready")).json() == {"ready": True}
            async with trio.open_nursery() as streams:
                for _ in range(STREAMS):
                    opened = trio.Event()
                    streams.start_soon(follow, client, opened)
                    await opened.wait()
                stopping = trio.current_time()
                stop.set()
                await trio.sleep(0.05)
                ready = await client.get("/ready")
                assert (ready.status_code, ready.json()) == (503, {"ready": False})
                assert ready.headers["retry-after"] == "5"
                refused = await client.get("/feed")  # new streams are refused while draining
                assert refused.status_code == 503
    offsets = sorted(end - stopping for end in ends)
    assert len(offsets) == STREAMS
    assert offsets[-1] <= WINDOW + 0.5
    assert offsets[-1] - offsets[0] > WINDOW / 3  # spread, not all in one moment
    for farewell in farewells:
        assert farewell.startswith(b"retry: ")
    assert app.stats()["closed"]["shutdown"] == STREAMS
