"""HTTP/2 frame sequences that must never take the server down, sent as raw ``h2`` frames.

Each test speaks h2c with prior knowledge over a plain socket, so the exact frames and their
order are the test's, then checks that the server still serves a fresh client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import httpx
import pytest
import trio

from trio_dwex import (
    Controller,
    Get,
    H2Limits,
    Module,
    Post,
    ServerLimits,
    Sse,
    SseEvent,
    create_app,
)
from trio_dwex.testing import serve_app

pytestmark = pytest.mark.filterwarnings("error")

DEADLINE = 10


@Controller()
class EarlyController:
    @Post("early")
    async def early(self) -> dict[str, bool]:
        """Answers at once, without reading the request's body."""
        return {"ok": True}

    @Get("ping")
    async def ping(self) -> dict[str, bool]:
        return {"ok": True}


@Module(controllers=[EarlyController])
class EarlyModule:
    pass


#: Seconds a stream may go without its client accepting a byte (server and route alike).
SEND_TIMEOUT = 0.5
#: One event's data: 1 KiB.
KIB = "x" * 1024


@dataclass
class Flood:
    """What the flooding route did: events produced, and whether its cleanup ran."""

    produced: int = 0
    cleaned_up: trio.Event = field(default_factory=trio.Event)


def flood_module(flood: Flood) -> type:
    @Controller()
    class FloodController:
        @Sse("flood", send_timeout=SEND_TIMEOUT)
        async def flood(self) -> AsyncIterator[SseEvent]:
            try:
                while True:
                    flood.produced += 1
                    yield SseEvent(data=KIB)
            finally:
                flood.cleaned_up.set()

        @Get("ping")
        async def ping(self) -> dict[str, bool]:
            return {"ok": True}

    @Module(controllers=[FloodController])
    class FloodModule:
        pass

    return FloodModule


class RawH2:
    """A client-side ``h2`` connection over a trio socket: frames out, events in."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, *, window: int | None = None) -> AsyncIterator[RawH2]:
        """Connect; with ``window``, announce that initial stream window (0: grant nothing)."""
        host, port = url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            client = cls(stream)
            client.conn.initiate_connection()
            if window is not None:
                client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            await client.flush()
            yield client

    async def get(self, stream_id: int, path: str) -> None:
        headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "t")]
        self.conn.send_headers(stream_id, headers, end_stream=True)
        await self.flush()

    async def flush(self) -> None:
        await self.stream.send_all(self.conn.data_to_send())

    async def events_until(
        self, kind: type[h2.events.Event] | tuple[type[h2.events.Event], ...]
    ) -> list[h2.events.Event]:
        """Read and answer frames until an event of ``kind`` arrives; all events so far."""
        seen: list[h2.events.Event] = []
        while not any(isinstance(event, kind) for event in seen):
            data = await self.stream.receive_some(65536)
            if not data:
                raise AssertionError(f"the server closed the connection; events: {seen}")
            seen += self.conn.receive_data(data)
            await self.flush()
        return seen


async def still_serving(url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(url + "/ping")
    assert response.json() == {"ok": True}


async def test_data_after_the_response_ended_is_dropped_not_fatal() -> None:
    # The server answered before reading the body (as for a 401 or 413), so it has finished and
    # forgotten the stream; the client, which may send its body until it sees END_STREAM and
    # beyond (the stream is only half closed), sends DATA for it. Upstream Hypercorn looked
    # the stream up, raised KeyError, and that took down the whole server.
    async with serve_app(create_app(EarlyModule)) as url:
        with trio.fail_after(DEADLINE):
            async with RawH2.open(url) as client:
                headers = [
                    (":method", "POST"),
                    (":path", "/early"),
                    (":scheme", "http"),
                    (":authority", "test"),
                    ("content-type", "application/json"),
                ]
                client.conn.send_headers(1, headers)
                await client.flush()
                events = await client.events_until(h2.events.StreamEnded)
                assert any(isinstance(e, h2.events.ResponseReceived) for e in events)
                client.conn.send_data(1, b'{"late": true}', end_stream=True)
                await client.flush()
                # The same connection still serves another request.
                client.conn.send_headers(
                    3,
                    [
                        (":method", "GET"),
                        (":path", "/ping"),
                        (":scheme", "http"),
                        (":authority", "test"),
                    ],
                    end_stream=True,
                )
                await client.flush()
                events = await client.events_until(h2.events.StreamEnded)
                body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
                assert body == b'{"ok":true}'
            await still_serving(url)


async def test_a_stream_whose_client_grants_no_window_is_bounded_then_reset() -> None:
    # The client grants no flow-control window, so the server can send none of the stream's
    # bytes. Upstream let every send through regardless and buffered without bound; now the
    # route's sends wait once 64 KiB are held, its send timeout passes, and the server resets
    # the stream (RST_STREAM CANCEL) and ends the route, whose cleanup runs.
    flood = Flood()
    app = create_app(flood_module(flood))
    async with serve_app(app, write_timeout=SEND_TIMEOUT) as url:
        with trio.fail_after(DEADLINE):
            async with RawH2.open(url, window=0) as client:
                await client.get(1, "/flood")
                events = await client.events_until(h2.events.StreamReset)
                [reset] = [e for e in events if isinstance(e, h2.events.StreamReset)]
                assert (reset.stream_id, reset.error_code) == (1, h2.errors.ErrorCodes.CANCEL)
                await flood.cleaned_up.wait()
                # Bounded: what 64 KiB of HTTP/2 buffer and the stream's own event buffer
                # hold, not what a tight loop makes in half a second (tens of thousands).
                assert flood.produced < 2_000, flood.produced
                # The connection itself lives on: another stream, with a window, is served.
                await client.get(3, "/ping")
                client.conn.increment_flow_control_window(65535, stream_id=3)
                await client.flush()
                events = await client.events_until(h2.events.StreamEnded)
                body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
                assert body == b'{"ok":true}'
        assert app.stats()["open"] == 0


def request_headers(path: str) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "t")]


async def test_a_rapid_reset_flood_gets_goaway_and_the_connection_closed() -> None:
    # CVE-2023-44487: open a stream, reset it at once, again and again. Past H2Limits the
    # server answers GOAWAY (ENHANCE_YOUR_CALM) and closes, before acting on that batch.
    limits = ServerLimits(h2=H2Limits(stream_burst=50, reset_burst=50))
    flood = Flood()
    async with serve_app(create_app(flood_module(flood)), limits=limits) as url:
        with trio.fail_after(DEADLINE):
            async with RawH2.open(url) as client:
                for stream_id in range(1, 2 * 500, 2):
                    client.conn.send_headers(stream_id, request_headers("/ping"), end_stream=True)
                    client.conn.reset_stream(stream_id)
                await client.flush()
                terminated = await client.events_until(h2.events.ConnectionTerminated)
                [goaway] = [e for e in terminated if isinstance(e, h2.events.ConnectionTerminated)]
                assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
                assert await client.stream.receive_some(65536) == b""  # and closed
            await still_serving(url)


async def test_a_browser_like_burst_of_streams_and_resets_is_served() -> None:
    # Within the defaults: a page's worth of streams at once (the concurrency cap, 100), half
    # of them cancelled, as when a page is left; the connection is not closed.
    async with serve_app(create_app(EarlyModule)) as url:
        with trio.fail_after(DEADLINE):
            async with RawH2.open(url) as client:
                streams = list(range(1, 2 * 100, 2))
                for stream_id in streams:
                    client.conn.send_headers(stream_id, request_headers("/ping"), end_stream=True)
                for stream_id in streams[::2]:
                    client.conn.reset_stream(stream_id)
                await client.flush()
                ended: set[int] = set()
                kept = set(streams[1::2])
                while not kept <= ended:
                    events = await client.events_until(h2.events.StreamEnded)
                    ended |= {e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)}
                    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in events)


async def test_reconnecting_does_not_refill_the_reset_allowance() -> None:
    # The reset allowance belongs to the client address, not the connection: an attacker
    # closed for resetting too much gets no fresh burst by reconnecting.
    limits = ServerLimits(h2=H2Limits(resets_per_second=1, reset_burst=50))

    async def open_and_reset(client: RawH2, count: int) -> list[h2.events.Event]:
        for stream_id in range(1, 2 * count, 2):
            client.conn.send_headers(stream_id, request_headers("/ping"), end_stream=True)
            client.conn.reset_stream(stream_id)
        last = 2 * count + 1
        client.conn.send_headers(last, request_headers("/ping"), end_stream=True)
        await client.flush()
        return await client.events_until((h2.events.StreamEnded, h2.events.ConnectionTerminated))

    async with serve_app(create_app(EarlyModule), limits=limits) as url:
        with trio.fail_after(DEADLINE):
            async with RawH2.open(url) as first:
                events = await open_and_reset(first, 40)  # within the burst of 50
                assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
            async with RawH2.open(url) as second:
                events = await open_and_reset(second, 40)  # 80 in all: past it
                [goaway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
                assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


@pytest.mark.parametrize(("settings", "cap"), [({}, 100), ({"h2_max_concurrent_streams": 7}, 7)])
async def test_the_stream_cap_per_connection_is_announced_and_settable(
    settings: dict[str, Any], cap: int
) -> None:
    # docs/clients.md: 100 streams per HTTP/2 connection unless set; a browser queues the next.
    async with serve_app(create_app(EarlyModule), **settings) as url:
        with trio.fail_after(DEADLINE):
            async with RawH2.open(url) as client:
                await client.events_until(h2.events.RemoteSettingsChanged)
                assert client.conn.remote_settings.max_concurrent_streams == cap
