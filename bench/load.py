"""The load generator: raw non-blocking sockets, one epoll loop, and our WHATWG decoder.

Every byte the server sends is parsed: the HTTP/1.1 status line and headers (200 and
``text/event-stream`` required), the chunked framing, then the events by
`trio_dwex.wire._decoder.SseDecoder`. Each event's ``id`` must be the next integer, and a stream
counts only if it delivered exactly the events asked for and then ended its response properly.
So a broken server (lost, duplicated or reordered events, bad framing, an early close) fails
instead of scoring.

No event loop library on this side: a selector and plain sockets cost the least CPU per byte,
which keeps the load generator ahead of the fastest server on the other core.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from trio_dwex.wire._decoder import SseDecoder

__all__ = ["BrokenServer", "Conn", "StreamResult", "first_event", "open_idle", "run_streams"]

RECV_SIZE = 256 * 1024
_LINGER_RST = struct.pack("ii", 1, 0)


class BrokenServer(Exception):
    """The server's answer is not a correct event stream: the row does not score."""


class Conn:
    """One client connection reading one event stream."""

    __slots__ = (
        "_buf",
        "_chunk_left",
        "_chunked",
        "_crlf_left",
        "_decoder",
        "_head_done",
        "done",
        "error",
        "events",
        "expected",
        "first_event_at",
        "request",
        "sock",
        "started_at",
    )

    def __init__(self, port: int, path: str, expected: int | None) -> None:
        self.expected = expected  # None: an idle stream, which never ends by itself
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.started_at = time.perf_counter()
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
        self._buf = bytearray()
        self._head_done = False
        self._chunked = False
        self._chunk_left = 0
        self._crlf_left = 0
        self._decoder = SseDecoder()
        self.events = 0
        self.first_event_at: float | None = None
        self.done = False
        self.error: str | None = None

    # -- protocol ----------------------------------------------------------------------------

    def on_connected(self) -> None:
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, "connect failed")
        self.sock.sendall(self.request)

    def on_readable(self) -> None:
        """Read what is there; sets ``done`` (and maybe ``error``) when the stream is over."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except ConnectionError as exc:
            self._fail(f"connection error: {exc}")
            return
        if not data:
            if not self._chunked and self._head_done and self.expected is not None:
                self._finish()  # close-delimited body: EOF is its end
            else:
                self._fail("the server closed the connection before the stream ended")
            return
        self._buf += data
        if not self._head_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > 65536:
                    self._fail("response head too large")
                return
            self._head(bytes(self._buf[:end]))
            del self._buf[: end + 4]
            if self.done:
                return
        body = self._dechunk() if self._chunked else self._take_all()
        if body:
            self._events(body)

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            self._fail(f"status line {lines[0]!r}")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if not headers.get("content-type", "").startswith("text/event-stream"):
            self._fail(f"content-type {headers.get('content-type')!r}")
            return
        self._chunked = headers.get("transfer-encoding") == "chunked"
        self._head_done = True

    def _take_all(self) -> bytes:
        body = bytes(self._buf)
        self._buf.clear()
        return body

    def _dechunk(self) -> bytes:
        buf = self._buf
        size = len(buf)
        pos = 0
        out: list[bytes] = []
        while pos < size:
            if self._chunk_left:
                end = min(size, pos + self._chunk_left)
                out.append(bytes(buf[pos:end]))
                self._chunk_left -= end - pos
                pos = end
                if not self._chunk_left:
                    self._crlf_left = 2
            elif self._crlf_left:
                take = min(self._crlf_left, size - pos)
                done = 2 - self._crlf_left
                if buf[pos : pos + take] != b"\r\n"[done : done + take]:
                    self._fail("bad chunked framing (no CRLF after a chunk)")
                    return b""
                self._crlf_left -= take
                pos += take
            else:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    break
                try:
                    length = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
                except ValueError:
                    self._fail("bad chunk size line")
                    return b""
                pos = line_end + 2
                if length == 0:
                    del buf[:pos]
                    body = b"".join(out)
                    if body:
                        self._events(body)
                    self._finish()
                    return b""
                self._chunk_left = length
        del buf[:pos]
        return b"".join(out)

    def _events(self, body: bytes) -> None:
        events = self._decoder.feed(body)
        if not events:
            return
        if self.first_event_at is None:
            self.first_event_at = time.perf_counter()
        expected_id = self.events
        for event in events:
            if event.id != str(expected_id):
                self._fail(f"event id {event.id!r}, expected {expected_id}: lost or reordered")
                return
            expected_id += 1
        self.events = expected_id
        if self.expected is not None and self.events > self.expected:
            self._fail(f"{self.events} events, more than the {self.expected} asked for")

    def _finish(self) -> None:
        if self.expected is not None and self.events != self.expected:
            self._fail(f"stream ended after {self.events} of {self.expected} events")
            return
        self.done = True

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
        self.done = True

    def close(self, *, reset: bool = True) -> None:
        if reset:
            # RST rather than FIN: no TIME_WAIT on our side, and the server sees it at once.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self.sock.close()


@dataclass
class StreamResult:
    events: int = 0
    wall: float = 0.0
    first_event_latencies: list[float] = field(default_factory=list)


def _drive(conns: Iterable[Conn], *, until_first_event: bool, deadline: float) -> list[Conn]:
    """Run the connections until each is done (or has its first event): the epoll loop."""
    selector = selectors.DefaultSelector()
    pending = 0
    connected: set[int] = set()
    conns = list(conns)
    try:
        for conn in conns:
            selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            pending += 1
        while pending:
            timeout = deadline - time.perf_counter()
            if timeout <= 0:
                raise TimeoutError(f"{pending} streams still running at the scenario's deadline")
            for key, _ in selector.select(timeout):
                conn = key.data  # the Conn registered with this socket
                fd = key.fd
                if fd not in connected:
                    connected.add(fd)
                    conn.on_connected()
                    selector.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                conn.on_readable()
                if conn.done or (until_first_event and conn.first_event_at is not None):
                    selector.unregister(conn.sock)
                    pending -= 1
    finally:
        selector.close()
    return conns


def _check(conns: Sequence[Conn]) -> None:
    broken = [conn.error for conn in conns if conn.error]
    if broken:
        raise BrokenServer(f"{len(broken)} of {len(conns)} streams broken; first: {broken[0]}")


def run_streams(port: int, path: str, streams: int, events: int, timeout: float) -> StreamResult:
    """``streams`` concurrent requests of ``path``, each expecting ``events`` events; all parsed."""
    start = time.perf_counter()
    conns = [Conn(port, path, events) for _ in range(streams)]
    try:
        _drive(conns, until_first_event=False, deadline=start + timeout)
        _check(conns)
    finally:
        for conn in conns:
            conn.close(reset=False)
    result = StreamResult(events=sum(conn.events for conn in conns))
    result.wall = time.perf_counter() - start
    result.first_event_latencies = [
        conn.first_event_at - conn.started_at for conn in conns if conn.first_event_at
    ]
    return result


def first_event(port: int, path: str, samples: int, timeout: float) -> list[float]:
    """Time from connect to the first event parsed, one connection at a time, ``samples`` times."""
    deadline = time.perf_counter() + timeout
    latencies = []
    for _ in range(samples):
        conn = Conn(port, path, 1)
        try:
            _drive([conn], until_first_event=True, deadline=deadline)
            _check([conn])
            assert conn.first_event_at is not None
            latencies.append(conn.first_event_at - conn.started_at)
        finally:
            conn.close()
    return latencies


def open_idle(port: int, path: str, count: int, timeout: float, wave: int = 250) -> list[Conn]:
    """Open ``count`` streams, ``wave`` at a time, each until its first event; keep them open."""
    deadline = time.perf_counter() + timeout
    opened: list[Conn] = []
    try:
        while len(opened) < count:
            batch = [Conn(port, path, None) for _ in range(min(wave, count - len(opened)))]
            opened.extend(batch)
            _drive(batch, until_first_event=True, deadline=deadline)
            _check(batch)
    except BaseException:
        close_all(opened)
        raise
    return opened


def close_all(conns: list[Conn]) -> None:
    for conn in conns:
        conn.close()
