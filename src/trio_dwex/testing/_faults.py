"""Clients that misbehave on purpose: one that vanishes (TCP RST) and one that stalls.

Cleanup code runs when a client leaves, and the two ways clients leave in production are hard
to produce with a well-behaved HTTP client:

* **Vanishing**: a phone that loses its network, or a killed browser tab, sends no polite FIN
  or nothing at all; with ``SO_LINGER`` set to zero, ``close()`` sends a TCP RST, the rudest
  (and most informative) variant. `RawStream.vanish` does that.
* **Stalling**: a client that keeps the connection but stops reading. Its receive window
  fills, then the server's send buffer, and then the server's writes block. A tiny receive
  buffer, set before connecting so that the advertised window stays small, makes that happen
  after a few kilobytes instead of megabytes. `open_stalled_stream` does that.

Both speak HTTP/1.1 through h11 over a plain socket, so nothing between the test and the
socket buffers or retries: what the server sees is exactly what the test did.
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import h11
import httpx
import trio

from ..wire._decoder import MessageEvent, SseDecoder

__all__ = ["STALL_RECEIVE_BUFFER", "RawStream", "open_raw_stream", "open_stalled_stream"]

#: The receive buffer of a stalled client, in bytes. Linux raises it to its minimum (about
#: 2 KiB, then doubled for bookkeeping), which is what we want: the smallest window it allows.
STALL_RECEIVE_BUFFER = 1024

_RECV_SIZE = 2**16


class RawStream:
    """One HTTP/1.1 request (a ``GET`` unless told) on a socket the test controls, with its
    response head read.

    Made by `open_raw_stream` or `open_stalled_stream`. Nothing here has a timeout: wrap
    waits in ``trio.fail_after`` so that a test fails rather than hangs.

    Attributes:
        status: the response's status code.
        headers: the response's headers, names in lower case (repeated ones joined by ``,``).
        raw: every body byte received so far (the chunked framing removed).
    """

    def __init__(self, sock: trio.socket.SocketType, connection: h11.Connection) -> None:
        self._sock = sock
        self._h11 = connection
        self._decoder = SseDecoder()
        self._ready: deque[MessageEvent] = deque()
        self._ended = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.raw = bytearray()

    @property
    def closed(self) -> bool:
        """Whether this side has closed (or reset) the socket."""
        return self._sock.fileno() == -1

    async def next_event(self) -> MessageEvent | None:
        """The next event of the body, or ``None`` once the response or connection ended."""
        while not self._ready:
            data = await self.receive_some()
            if not data:
                return None
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    async def receive_some(self) -> bytes:
        """Body bytes as they come; ``b""`` once the response or the connection ended.

        The events among them are still returned by `next_event`.
        """
        while not self._ended:
            event = self._next_h11_event()
            if event is h11.NEED_DATA:
                await self._receive_into_h11()
            elif isinstance(event, h11.Data):
                data = bytes(event.data)
                self.raw += data
                return data
            elif event is h11.PAUSED or isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                # PAUSED: h11's way to say this response is over and we sent no next request.
                self._ended = True
        return b""

    async def wait_closed(self) -> None:
        """Read (and drop) everything until the server ends the response or the connection.

        This drains the socket, so it also un-stalls a stalled client.
        """
        while await self.receive_some():
            pass

    def vanish(self) -> None:
        """Disappear now: close the socket with a TCP RST, as a killed client's kernel does.

        The server gets ``ECONNRESET`` (or end of file) on its next read or write, and any
        bytes still in flight to us are discarded.
        """
        if not self.closed:
            # SO_LINGER on with a zero timeout turns close() into an abortive close (RST).
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._sock.close()

    def close(self) -> None:
        """Close the socket normally: a FIN, or a RST if received bytes were left unread."""
        self._sock.close()

    def _next_h11_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError:
            # The server closed in the middle of the body: for a stream, that is its end.
            return h11.ConnectionClosed()

    async def _receive_into_h11(self) -> None:
        try:
            data = await self._sock.recv(_RECV_SIZE)
        except (ConnectionResetError, BrokenPipeError):
            data = b""  # a reset from the server is an end of the connection, too
        self._h11.receive_data(data)

    async def _read_head(self) -> None:
        while True:
            event = self._next_h11_event()
            if event is h11.NEED_DATA:
                await self._receive_into_h11()
            elif isinstance(event, h11.Response):
                self.status = event.status_code
                for name, value in event.headers:
                    key = name.decode("latin-1")
                    text = value.decode("latin-1")
                    self.headers[key] = (
                        f"{self.headers[key]}, {text}" if key in self.headers else text
                    )
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection before answering")
            # An informational response (1xx) is skipped, as HTTP clients do.


@asynccontextmanager
async def open_raw_stream(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    receive_buffer: int | None = None,
    method: str = "GET",
    body: bytes = b"",
) -> AsyncIterator[RawStream]:
    """Send ``GET url`` over a fresh TCP connection and yield it once the head has arrived.

    ::

        async with open_raw_stream(url + "/events/countdown") as stream:
            assert (await stream.next_event()).type == "countdown"
            stream.vanish()     # RST: the server must notice and clean up

    Only ``http://`` URLs: the point is to own the socket. ``receive_buffer`` sets
    ``SO_RCVBUF`` before connecting (see `open_stalled_stream`). ``method`` and ``body`` send
    another request, such as a ``POST`` whose answer streams (give its ``Content-Type`` in
    ``headers``; ``Content-Length`` is added). The socket is closed when the block exits, if
    the test did not close or reset it first.
    """
    target = httpx.URL(url)
    if target.scheme != "http":
        raise ValueError(f"open_raw_stream() speaks plain HTTP/1.1 only, not {target.scheme}://")
    port = target.port or 80
    family, type_, proto, _, address = (
        await trio.socket.getaddrinfo(target.host, port, type=socket.SOCK_STREAM)
    )[0]
    sock = trio.socket.socket(family, type_, proto)
    with sock:
        if receive_buffer is not None:
            # Before connect: the window scale is agreed in the handshake, so a buffer shrunk
            # later would still be advertised as large.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect(address)
        connection = h11.Connection(h11.CLIENT)
        request_headers = [
            ("Host", target.netloc.decode("ascii")),
            ("Accept", "text/event-stream"),
            *(headers or {}).items(),
        ]
        if body or method not in ("GET", "HEAD"):
            request_headers.append(("Content-Length", str(len(body))))
        target_path = target.raw_path.decode("ascii")
        data = connection.send(
            h11.Request(method=method, target=target_path, headers=request_headers)
        )
        if body:
            data += connection.send(h11.Data(data=body))
        data += connection.send(h11.EndOfMessage())
        view = memoryview(data)
        while view:
            view = view[await sock.send(view) :]
        stream = RawStream(sock, connection)
        await stream._read_head()
        yield stream


@asynccontextmanager
async def open_stalled_stream(
    url: str, *, headers: Mapping[str, str] | None = None, method: str = "GET", body: bytes = b""
) -> AsyncIterator[RawStream]:
    """Open a stream, read its response head, and never read again while the block runs.

    ::

        async with open_stalled_stream(url + "/feed"):
            await closed.wait()     # the server must give up on us (send timeout)

    The receive buffer is as small as the kernel allows (`STALL_RECEIVE_BUFFER`), so the
    server's writes block after a few kilobytes plus its own send buffer. Until then a server
    has no way to tell a stalled client from a slow network, which is why its send timeout
    only starts to count once a write blocks. Do not call the reading methods in the block:
    that would un-stall it. ``method`` and ``body`` are as for `open_raw_stream`.
    """
    async with open_raw_stream(
        url, headers=headers, receive_buffer=STALL_RECEIVE_BUFFER, method=method, body=body
    ) as stream:
        yield stream
