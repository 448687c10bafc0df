"""A route's own ``send_timeout`` drops a stalled HTTP/1.1 client, even one shorter than the
server's ``write_timeout`` (the app's send timeout), which guards the shielded write."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import trio

from trio_dwex import Controller, Module, Sse, SseEvent, create_app
from trio_dwex.testing import serve_app

ROUTE_SEND_TIMEOUT = 1.0


@Controller()
class FastController:
    @Sse("fast", send_timeout=ROUTE_SEND_TIMEOUT)
    async def fast(self) -> AsyncIterator[SseEvent]:
        n = 0
        while True:  # as fast as the client (and the buffer) allows
            n += 1
            yield SseEvent(data=f"{n:08d}" + "x" * 1000)


@Module(controllers=[FastController])
class FastModule:
    pass


async def test_a_stalled_client_is_dropped_at_the_routes_send_timeout() -> None:
    # The app's send timeout (30 s) is the server's write_timeout; the route's is 1 s. Before,
    # the shielded write hid the route's deadline: the stream stayed open for the 30 s.
    app = create_app(FastModule)
    async with serve_app(app) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect((host, int(port)))
            client.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")  # and never reads
            with trio.fail_after(ROUTE_SEND_TIMEOUT + 9):
                # The app offers counts, not an event to wait on: poll them.
                while app.stats()["open"] or not app.stats()["opened"]:  # noqa: ASYNC110
                    await trio.sleep(0.05)
    assert app.stats()["closed"]["slow_client"] == 1
