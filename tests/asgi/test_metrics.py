"""``GET /metrics``: an app's streams in the Prometheus text format, read by prometheus-client's
own parser from a real server (issue 19, item 3). ``tests/serving/test_metrics_workers.py``
checks the sums under ``--workers 2``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
import trio

from tests.helpers import open_stream, value, wait_until
from trio_dwex import (
    ConfigurationError,
    Controller,
    Get,
    Headers,
    Module,
    OverflowPolicy,
    Provider,
    Settings,
    Sse,
    SseEvent,
    SseStream,
    create_app,
)
from trio_dwex.broadcast import Broadcast
from trio_dwex.testing import serve_app


@Controller()
class MetricsController:
    def __init__(self, hub: Broadcast) -> None:
        self.hub = hub

    @Sse("three")
    async def three(self) -> AsyncIterator[SseEvent]:
        for n in range(3):
            yield SseEvent(data=f"event {n}")
        await trio.sleep_forever()

    @Sse("done")
    async def done(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="the only one")

    @Sse("flood")
    def flood(self) -> SseStream:
        # Far more than the buffer holds, at once: the policy drops the newest.
        stream = SseStream(buffer_size=4, overflow=OverflowPolicy.DROP_NEWEST)
        for n in range(50):
            stream.send_nowait(SseEvent(data=str(n)))
        stream.close()
        return stream

    @Sse("news")
    async def news(
        self, last_event_id: Annotated[str | None, Headers("last-event-id")] = None
    ) -> AsyncIterator[SseEvent]:
        async with self.hub.subscribe("news", last_event_id=last_event_id) as subscription:
            async for event in subscription:
                yield event
                return


@Module(controllers=[MetricsController], providers=[Provider(Broadcast, use_class=Broadcast)])
class MetricsModule:
    pass


async def scrape(client: httpx.AsyncClient, path: str = "/metrics") -> str:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert response.headers["cache-control"] == "no-store"
    return response.text


async def test_open_streams_their_ends_events_and_bytes() -> None:
    app = create_app(MetricsModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        text = await scrape(client)
        assert value(text, "trio_dwex_streams_open") == 0
        assert value(text, "trio_dwex_streams_closed_total", reason="client_gone") == 0
        streams = []
        async with open_stream(client, "/three") as one, open_stream(client, "/three") as two:
            for stream in (one, two):
                await stream.events(3)
                streams.append(stream)
            text = await scrape(client)
            assert value(text, "trio_dwex_streams_open") == 2
            assert value(text, "trio_dwex_events_sent_total") == 6
            sent = sum(len(stream.raw) for stream in streams)
            assert value(text, "trio_dwex_stream_bytes_sent_total") == sent
            assert value(text, "trio_dwex_stream_first_event_seconds_count") == 2
        await wait_until(lambda: app.streams.open_count == 0)
        assert (await client.get("/done")).status_code == 200
        text = await scrape(client)
    assert value(text, "trio_dwex_streams_open") == 0
    assert value(text, "trio_dwex_streams_opened_total") == 3
    assert value(text, "trio_dwex_streams_closed_total", reason="client_gone") == 2
    assert value(text, "trio_dwex_streams_closed_total", reason="completed") == 1
    assert value(text, "trio_dwex_events_sent_total") == 7
    # Durations in their own histogram, with buckets from a second to a day.
    assert value(text, "trio_dwex_stream_duration_seconds_count") == 3
    assert value(text, "trio_dwex_stream_duration_seconds_bucket", le="1.0") == 3
    assert value(text, "trio_dwex_stream_duration_seconds_bucket", le="86400.0") == 3
    assert value(text, "trio_dwex_stream_first_event_seconds_bucket", le="0.001") >= 0


async def test_dropped_events_and_broadcast_replays_and_resets() -> None:
    app = create_app(MetricsModule)
    hub = app.plan.container.get(Broadcast)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        flood = await client.get("/flood")
        assert flood.text.count("data: ") == 4  # the buffer's worth; 46 dropped
        first = await hub.publish("news", SseEvent(data="one"))
        await hub.publish("news", SseEvent(data="two"))
        resumed = await client.get("/news", headers={"last-event-id": first})
        assert "data: two" in resumed.text
        reset = await client.get("/news", headers={"last-event-id": "no-such-id"})
        assert "event: reset" in reset.text
        text = await scrape(client)
    assert value(text, "trio_dwex_events_dropped_total", policy="drop_newest") == 46
    assert value(text, "trio_dwex_events_dropped_total", policy="drop_oldest") == 0
    assert value(text, "trio_dwex_broadcast_replays_total") == 2
    assert value(text, "trio_dwex_broadcast_resets_total") == 1
    assert value(text, "trio_dwex_streams_closed_total", reason="closed") == 1


async def test_the_path_is_a_setting_and_can_be_switched_off() -> None:
    moved = create_app(MetricsModule, settings=Settings(metrics_path="/internal/metrics"))
    off = create_app(MetricsModule, settings=Settings(metrics_path=None))
    async with serve_app(moved) as url, httpx.AsyncClient(base_url=url) as client:
        assert "trio_dwex_streams_open" in await scrape(client, "/internal/metrics")
        assert (await client.head("/internal/metrics")).status_code == 200
        assert (await client.get("/metrics")).status_code == 404
    async with serve_app(off) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/metrics")).status_code == 404
    assert off.metrics is None


def test_a_route_the_metrics_path_would_hide_is_a_configuration_error() -> None:
    @Controller()
    class Mine:
        @Get("metrics")
        def metrics(self) -> str:
            return "my own"

    @Module(controllers=[Mine])
    class MineModule:
        pass

    with pytest.raises(ConfigurationError, match=r"hidden by Settings.metrics_path='/metrics'"):
        create_app(MineModule)
    assert create_app(MineModule, settings=Settings(metrics_path="/m")).metrics is not None


def test_the_metrics_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="metrics_path must be a path"):
        Settings(metrics_path="metrics")
    for bad in (0, -1.0, True, float("nan")):
        with pytest.raises(ValueError, match="metrics_interval"):
            Settings(metrics_interval=bad)
