"""Hypercorn's ``read_timeout`` on our server: a connection whose client sends nothing for
that long is closed, even mid-stream; without it (the default) a quiet client keeps its stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from trio_dwex import Controller, Module, Sse, SseEvent, create_app
from trio_dwex.testing import serve_app


@Controller()
class Ticks:
    @Sse("ticks")
    async def ticks(self) -> AsyncIterator[SseEvent]:
        while True:
            yield SseEvent(data="tick")
            await trio.sleep(0.02)


@Module(controllers=[Ticks])
class TicksModule:
    pass


async def seconds_until_closed(url: str, limit: float) -> float:
    """Open the stream, read it without sending a byte; seconds until the server closed it
    (``limit`` if it did not)."""
    port = int(url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /ticks HTTP/1.1\r\nHost: x\r\n\r\n")
        started = trio.current_time()
        with trio.move_on_after(limit):
            while await stream.receive_some():
                pass
            return trio.current_time() - started
    return limit


async def test_a_silent_client_is_dropped_after_read_timeout() -> None:
    async with serve_app(create_app(TicksModule), read_timeout=0.3) as url:
        assert 0.25 < await seconds_until_closed(url, 5.0) < 2.0


async def test_without_read_timeout_a_silent_client_keeps_its_stream() -> None:
    async with serve_app(create_app(TicksModule)) as url:
        assert await seconds_until_closed(url, 1.0) == 1.0
