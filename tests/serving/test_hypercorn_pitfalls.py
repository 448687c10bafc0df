"""Pitfalls of Hypercorn's Trio worker, beaten by ``serve_hypercorn`` and pinned upstream.

Each scenario runs a tiny raw ASGI app on a real server bound to a free loopback port, and a
raw trio socket (or a raw ``h2`` connection) as the client, so nothing between the client's
bytes and Hypercorn hides the behaviour under test. ``src/trio_dwex/serving/_fixes.py``
explains the mechanisms; the canary tests at the end assert that plain upstream Hypercorn is
still broken, so that we notice when we can drop our fix.
"""

from __future__ import annotations

import math
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as upstream_serve

from trio_dwex.serving._fixes import serve_hypercorn

WRITE_TIMEOUT = 1.0
"""Our server's write timeout in these tests: short, to keep the suite fast."""

NOTICE_WITHIN = 1.0
"""The requirement: a client that leaves an idle stream is noticed within this many seconds."""

UPSTREAM_MISSES_FOR = 1.5
"""How long the canaries watch upstream fail to notice: comfortably past our own bound."""

TEST_DEADLINE = 10.0
"""No test may run longer than this, whatever the server does."""

FIRST_EVENT = b": connected\n\n"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Server = Callable[..., Awaitable[None]]

FLOOD_MESSAGE: Message = {
    "type": "http.response.body",
    "body": b"x" * 2**16,
    "more_body": True,
}
STUCK_AFTER = 0.2
"""A send that has not returned for this long is stuck (loopback moves data in microseconds)."""

OURS: Server = partial(serve_hypercorn, write_timeout=WRITE_TIMEOUT)
UPSTREAM: Server = upstream_serve


class StreamingApp:
    """A raw ASGI app with two endless responses, recording what one stream task lives through.

    ``GET /idle`` sends one SSE comment, then waits for ``http.disconnect`` like an SSE stream
    between events. ``GET /flood`` writes 64 KiB chunks as fast as the server takes them,
    each send under an app-level timeout of ``send_timeout`` seconds, until it is told of the
    disconnect. One such stream per app instance. ``GET /short?n`` answers ``short n`` at once
    and is not recorded.
    """

    def __init__(self, *, send_timeout: float = math.inf) -> None:
        self.send_timeout = send_timeout
        self.disconnected = trio.Event()
        self.ended = trio.Event()
        self.sends_returned = 0
        self.last_send_started = math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert scope["type"] == "http"
        if scope["path"] == "/short":
            body = b"short " + scope["query_string"]
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            if scope["path"] == "/flood":
                await self._flood(receive, send)
            else:
                await send({"type": "http.response.body", "body": FIRST_EVENT, "more_body": True})
                await self._wait_for_disconnect(receive)
        finally:
            self.ended.set()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return

    async def _wait_for_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()

    async def _flood(self, receive: Receive, send: Send) -> None:
        async def watch_disconnect() -> None:
            await self._wait_for_disconnect(receive)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect)
            while True:
                self.last_send_started = trio.current_time()
                with trio.move_on_after(self.send_timeout):
                    await send(FLOOD_MESSAGE)
                self.sends_returned += 1


@asynccontextmanager
async def running(server: Server, app: StreamingApp) -> AsyncIterator[int]:
    """Serve ``app`` on a free loopback port for the block; yields the port."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(server, app, config))
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client_socket(*, rcvbuf: int | None = None) -> AsyncIterator[trio.socket.SocketType]:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        if rcvbuf is not None:
            # Before connect, so that the window the client advertises stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        yield sock


async def send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    # The requests here are a few hundred bytes at most, which loopback takes in one send.
    assert await sock.send(data) == len(data)


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


async def receive_until(sock: trio.socket.SocketType, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        data = await sock.recv(2**16)
        assert data, f"the server closed the connection before sending {marker!r}"
        received += data
    return received


async def receive_until_closed(sock: trio.socket.SocketType) -> None:
    """Read and drop everything until the server's FIN or RST."""
    try:
        while await sock.recv(2**16):
            pass
    except ConnectionResetError:
        pass  # The server aborted the connection, which is also a close.


def reset_on_close(sock: trio.socket.SocketType) -> None:
    """Make ``close()`` send RST instead of FIN, as a crashed or killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def open_idle_stream(sock: trio.socket.SocketType, port: int) -> None:
    await sock.connect(("127.0.0.1", port))
    await send_all(sock, request("/idle"))
    await receive_until(sock, FIRST_EVENT)


async def leave_idle_stream(sock: trio.socket.SocketType, how: str) -> None:
    """The client leaves an idle stream: ``[pipelined-]fin`` or ``[pipelined-]rst``."""
    if how.startswith("pipelined-"):
        await send_all(sock, request("/next"))
        # Let the server read the pipelined request, so that h11 is paused before the client
        # leaves: the case upstream misses.
        await trio.sleep(0.1)
    if how.endswith("rst"):
        reset_on_close(sock)
        sock.close()
    else:
        # shutdown, not close: closing with unread bytes in the buffer would send RST instead.
        sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("how", ["fin", "rst", "pipelined-fin", "pipelined-rst"])
async def test_client_leaving_an_idle_stream_is_noticed(how: str) -> None:
    app = StreamingApp()
    with trio.fail_after(TEST_DEADLINE):
        async with running(OURS, app) as port, client_socket() as sock:
            await open_idle_stream(sock, port)
            await leave_idle_stream(sock, how)
            with trio.fail_after(NOTICE_WITHIN):
                await app.disconnected.wait()
                await app.ended.wait()
            if how.endswith("fin"):
                with trio.fail_after(NOTICE_WITHIN):
                    await receive_until_closed(sock)


def h2_client(*, window: int | None = None) -> h2.connection.H2Connection:
    """A client-side h2 connection; ``window`` raises every flow-control window to that size."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    if window is not None:
        conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
    conn.initiate_connection()
    if window is not None:
        conn.increment_flow_control_window(window - conn.inbound_flow_control_window)
    return conn


def h2_get(conn: h2.connection.H2Connection, path: bytes) -> int:
    stream_id: int = conn.get_next_available_stream_id()
    headers = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", path),
    ]
    conn.send_headers(stream_id, headers, end_stream=True)
    return stream_id


async def test_http2_stream_reset_is_noticed() -> None:
    """RST_STREAM ends that stream only; the HTTP/2 connection (prior-knowledge h2c) lives on."""
    app = StreamingApp()
    with trio.fail_after(TEST_DEADLINE):
        async with running(OURS, app) as port, client_socket() as sock:
            await sock.connect(("127.0.0.1", port))
            conn = h2_client()
            stream_id = h2_get(conn, b"/idle")
            await send_all(sock, conn.data_to_send())

            received = b""
            while FIRST_EVENT not in received:
                data = await sock.recv(2**16)
                assert data, "the server closed the HTTP/2 connection"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        received += event.data
                # Our SETTINGS acknowledgement and flow-control updates.
                await send_all(sock, conn.data_to_send())

            conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
            await send_all(sock, conn.data_to_send())
            with trio.fail_after(NOTICE_WITHIN):
                await app.disconnected.wait()
                await app.ended.wait()

            conn.ping(b"12345678")
            await send_all(sock, conn.data_to_send())
            with trio.fail_after(NOTICE_WITHIN):
                acked = False
                while not acked:
                    data = await sock.recv(2**16)
                    assert data, "the reset of one stream closed the whole connection"
                    events = conn.receive_data(data)
                    acked = any(isinstance(e, h2.events.PingAckReceived) for e in events)


async def test_pipelined_requests_are_still_answered_in_order() -> None:
    """Reading ahead while h11 is paused must not change what a pipelining client gets."""
    app = StreamingApp()
    with trio.fail_after(TEST_DEADLINE):
        async with running(OURS, app) as port, client_socket() as sock:
            await sock.connect(("127.0.0.1", port))
            await send_all(sock, b"".join(request(f"/short?{n}") for n in range(3)))
            received = await receive_until(sock, b"short 2")
            assert received.index(b"short 0") < received.index(b"short 1")
            assert received.index(b"short 1") < received.index(b"short 2")


async def open_stalled_flood(sock: trio.socket.SocketType, port: int, app: StreamingApp) -> None:
    """Request ``/flood`` and never read; return once the app's send stopped returning."""
    await sock.connect(("127.0.0.1", port))
    await send_all(sock, request("/flood"))
    await wait_until_send_is_stuck(app)


async def wait_until_send_is_stuck(app: StreamingApp) -> None:
    # Polling on purpose: what we wait for is the absence of progress.
    while True:
        returned = app.sends_returned
        await trio.sleep(STUCK_AFTER)
        if app.sends_returned == returned and app.last_send_started < math.inf:
            return


async def test_stalled_reader_is_dropped_after_write_timeout() -> None:
    app = StreamingApp()
    with trio.fail_after(TEST_DEADLINE):
        async with running(OURS, app) as port, client_socket(rcvbuf=4096) as sock:
            await open_stalled_flood(sock, port, app)
            stuck_since = app.last_send_started
            with trio.fail_after(WRITE_TIMEOUT + 1.0):
                await app.disconnected.wait()
                await app.ended.wait()
            assert WRITE_TIMEOUT <= trio.current_time() - stuck_since <= WRITE_TIMEOUT + 1.0
            with trio.fail_after(NOTICE_WITHIN):
                await receive_until_closed(sock)


async def test_stalled_http2_reader_is_dropped_after_write_timeout() -> None:
    """With HTTP/2 the stuck write is the connection's send task's; the app waits behind it.

    The client opens its flow-control windows wide, so that flow control (which an app-level
    send timeout can handle) is not what stops the data: the socket is.
    """
    app = StreamingApp()
    with trio.fail_after(TEST_DEADLINE):
        async with running(OURS, app) as port, client_socket(rcvbuf=4096) as sock:
            await sock.connect(("127.0.0.1", port))
            conn = h2_client(window=2**31 - 1)
            h2_get(conn, b"/flood")
            await send_all(sock, conn.data_to_send())
            await wait_until_send_is_stuck(app)
            stuck_since = app.last_send_started
            with trio.fail_after(WRITE_TIMEOUT + 1.0):
                await app.disconnected.wait()
                await app.ended.wait()
            assert WRITE_TIMEOUT <= trio.current_time() - stuck_since <= WRITE_TIMEOUT + 1.0
            with trio.fail_after(NOTICE_WITHIN):
                await receive_until_closed(sock)


async def test_reset_during_a_stuck_send_tells_the_app_despite_its_send_timeout() -> None:
    """The client resets while the app's send is stuck and the app's own timeout has expired.

    Whichever task sees the reset first (the app's failing write or the connection's reader),
    the app must be told: upstream sometimes loses ``http.disconnect`` here, when the expired
    timeout cancels the write path's close halfway.
    """
    app = StreamingApp(send_timeout=STUCK_AFTER / 2)
    with trio.fail_after(TEST_DEADLINE):
        async with running(OURS, app) as port, client_socket(rcvbuf=4096) as sock:
            await open_stalled_flood(sock, port, app)
            reset_on_close(sock)
            sock.close()
            with trio.fail_after(NOTICE_WITHIN):
                await app.disconnected.wait()
                await app.ended.wait()


@pytest.mark.parametrize("write_timeout", [0.0, -1.0, math.nan])
async def test_write_timeout_must_be_positive(write_timeout: float) -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await serve_hypercorn(StreamingApp(), Config(), write_timeout=write_timeout)


async def test_canary_upstream_still_misses_fin_after_pipelined_bytes() -> None:
    """Upstream Hypercorn still misses a FIN that follows pipelined bytes (issue 210).

    This test fails the day upstream fixes it; then revisit
    ``trio_dwex/serving/_fixes.py`` and maybe drop the read-ahead fix.
    """
    app = StreamingApp()
    with trio.fail_after(TEST_DEADLINE):
        async with running(UPSTREAM, app) as port, client_socket() as sock:
            await open_idle_stream(sock, port)
            await leave_idle_stream(sock, "pipelined-fin")
            with trio.move_on_after(UPSTREAM_MISSES_FOR):
                await app.disconnected.wait()
            assert not app.disconnected.is_set(), "upstream now notices: see the docstring"


async def test_canary_upstream_still_pins_a_stalled_writer() -> None:
    """Upstream Hypercorn still pins a task sending to a client that does not read.

    The app even wraps each send in its own timeout, which cannot cancel upstream's shielded
    ``send_all``. This test fails the day upstream bounds that write; then revisit
    ``trio_dwex/serving/_fixes.py`` and maybe drop the write-timeout fix.
    """
    app = StreamingApp(send_timeout=WRITE_TIMEOUT)
    with trio.fail_after(TEST_DEADLINE):
        async with running(UPSTREAM, app) as port, client_socket(rcvbuf=4096) as sock:
            await open_stalled_flood(sock, port, app)
            stuck_since = app.last_send_started
            sends_returned = app.sends_returned
            with trio.move_on_after(WRITE_TIMEOUT + 1.0):
                await app.ended.wait()
            assert not app.ended.is_set(), "upstream now frees the send: see the docstring"
            assert app.sends_returned == sends_returned
            assert trio.current_time() - stuck_since > WRITE_TIMEOUT + 1.0
            # Only the client can free the pinned task: its reset fails the shielded send, so
            # that the server's shutdown can end the stream.
            reset_on_close(sock)
