"""The fast write path: a response body's bytes straight to the socket, when it takes them now.

Through Hypercorn, every ``send`` of a body chunk goes app → ``HTTPStream.app_send`` →
``H11Protocol.stream_send`` → h11 → ``TCPServer.protocol_send``, which takes a ``trio.Lock``,
opens a shielded ``CancelScope`` with a deadline, and calls ``SocketStream.send_all``, whose
socket ``send`` then passes through Trio's scheduler once more. Measured on the fan-out
benchmark (``docs/performance.md``, "Where a send's time goes"): half of the server's CPU per
delivery was that path, a quarter of it the cancel scope alone, when the socket had room for
the bytes all along, as it nearly always has for an SSE stream of small events.

`DirectWriter` skips all of it for the common case. Once the response's headers are out, a
body chunk is framed here (HTTP/1.1 chunked encoding, or as is for HTTP/1.0) and written with
one non-blocking ``write(2)``; when the socket takes every byte, that is the whole send. What
it cannot do at once goes the old way, and nothing is lost or reordered:

* the socket takes part of the bytes: the rest goes through ``protocol_send`` as raw bytes,
  with the lock, the shield and the deadlines (``_fixes.py``), so a slow client is handled
  exactly as before;
* the socket takes nothing, or the connection is no longer writing this response (another
  write holds the lock, the client left, the response ended, TLS, HTTP/2, ``HEAD``): the
  caller sends the chunk the ASGI way, through Hypercorn, as if there were no fast path.

It keeps every guarantee of the slow path: a write is still a cancellation point; it never
blocks, so ``send_timeout`` bounds only the slow path, which keeps its deadlines; a failed
write reports nothing here and lets the ASGI send find the broken connection and tell the app;
nothing is written once the response has ended, since h11's state says so first.

A stream's producer may also write an event itself, without waiting, from its own task
(`RequestWriter.write_now`, used by ``streams/_outlet.py``): the same write, except that the
rest of a frame the socket took only in part is kept, and sent first by whoever writes next
(the stream's writer, which the producer then wakes, or the server before the response's next
ASGI message).

The server's own bytes take the same write (`DirectWriter.send_now`, from ``_h11.py``): every
head and body end that h11 makes, for any response, goes straight out when the socket takes it
and the bounded way otherwise. A stream's head may even wait for its first events
(`RequestWriter.hold_head`), so that both leave in one ``write(2)``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import trio

__all__ = ["DirectWriteCounts", "DirectWriter", "RequestWriter", "direct_write_counts"]


@dataclass
class DirectWriteCounts:
    """What the fast path did with the chunks it was offered, in this process (never reset)."""

    #: Written whole by one ``write(2)``.
    whole: int = 0
    #: The socket took part; the rest went the bounded way.
    partial: int = 0
    #: Not written here (another write held the lock, a full socket, a closed connection):
    #: sent through Hypercorn instead.
    declined: int = 0
    #: Of the chunks written (whole or in part), those a stream's producer wrote itself
    #: (`RequestWriter.write_now`), not the stream's writer task.
    by_producers: int = 0
    #: Responses whose head was kept to leave with their first chunk (`RequestWriter.hold_head`).
    with_head: int = 0
    #: Bytes h11 made for the server itself (heads, the ends of bodies), written here (whole
    #: or in part) rather than through the lock and the shielded send; not counted above.
    by_server: int = 0


direct_write_counts = DirectWriteCounts()


class DirectWriter:
    """One connection's direct access to its socket; `for_request` gives a request its writer.

    ``sock`` is the plain TCP socket (``None`` under TLS: no fast path); ``lock`` the send
    lock every other write of the connection takes; ``send_raw`` writes bytes the slow way
    (``protocol_send`` of ``RawData``).
    """

    __slots__ = ("_lock", "_send_raw", "_sock")

    def __init__(
        self,
        sock: trio.socket.SocketType | None,
        lock: trio.Lock,
        send_raw: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._sock = sock
        self._lock = lock
        self._send_raw = send_raw

    def for_request(self, connection: h11.Connection, method: str) -> RequestWriter | None:
        """The writer for the response h11 is about to send on ``connection``; ``None`` when
        it cannot have one (TLS, a ``HEAD`` request, whose response has no body)."""
        if self._sock is None or method == "HEAD":
            return None
        return RequestWriter(self, connection)

    @property
    def send_raw(self) -> Callable[[bytes], Awaitable[None]]:
        """Bytes already framed (the rest of a frame), the slow and bounded way."""
        return self._send_raw

    def write_now(
        self, connection: h11.Connection, data: bytes, before: bytes = b""
    ) -> bytes | None:
        """Write body ``data`` as one frame, after the bytes ``before`` (already framed: the
        head, or the rest of a frame), without waiting: what the socket did not take (``b""``:
        all of it was written), or ``None``: nothing was written, send it the ASGI way. The
        rest of a frame must follow before anything else (`send_raw`)."""
        if connection.our_state is not h11.SEND_BODY:
            direct_write_counts.declined += 1
            return None
        if not data:
            frame = b""  # an empty chunk means nothing in chunked framing (0 would end it)
        elif connection.their_http_version == b"1.0":
            frame = data  # HTTP/1.0: the body as is, ended by closing the connection
        else:
            frame = b"%x\r\n%b\r\n" % (len(data), data)
        if before:
            frame = before + frame
        elif not frame:
            return b""
        counts = direct_write_counts
        rest = self._write(frame)
        if rest is None:
            counts.declined += 1
        elif rest:
            counts.partial += 1
        else:
            counts.whole += 1
        return rest

    def send_now(self, data: bytes) -> bytes | None:
        """Write ``data``, bytes h11 made for the server (a head, the body's end), without
        waiting: what the socket did not take (``b""``: all of it was written), or ``None``:
        nothing was written, send it the bounded way."""
        rest = self._write(data)
        if rest is not None:
            direct_write_counts.by_server += 1
        return rest

    def _write(self, data: bytes) -> bytes | None:
        """One non-blocking ``write(2)`` of ``data``: what the socket did not take, or ``None``
        if it took nothing (another write holds the connection, a full or closed socket)."""
        if self._sock is None or self._lock.locked():
            return None
        # Read now, with no await before the write: a closed socket says -1, and its old number
        # may already be another connection's.
        fileno = self._sock.fileno()
        if fileno < 0:
            return None
        try:
            written = os.write(fileno, data)
        except OSError:
            # A full socket (BlockingIOError), or a client gone (EPIPE, ECONNRESET): the
            # bounded way waits for room, or meets the same error and says so.
            return None
        return data[written:]


class RequestWriter:
    r"""The fast path of one response.

    An app (the ASGI layer's stream sink) finds it in ``scope["extensions"]`` under
    ``DIRECT_WRITE_EXTENSION`` and uses it for body chunks only after it sent
    ``http.response.start``: ``await write(data)`` is ``True`` when it wrote ``data``, and
    ``write_now(data)`` does the same without waiting, for a producer that writes from its own
    task. When either answers ``False``, the app sends the chunk as usual. It is `close`\ d
    when the response's last message goes out, and writes nothing after: h11 would be sending
    the next request's response by then.

    A frame that ``write_now`` could write only in part has its rest held here (`pending`),
    and nothing else is written before it: `write` and `flush` send it first, the bounded
    way, and the server flushes it before any ASGI message of the response.
    """

    __slots__ = ("_connection", "_rest", "_writer", "app_send", "closed", "head_wanted")

    def __init__(self, writer: DirectWriter, connection: h11.Connection) -> None:
        self._writer = writer
        self._connection = connection
        # What must be written before anything else: the unwritten end of a frame `write_now`
        # began, or the response's head kept for the first write (`hold_head`).
        self._rest = b""
        self.closed = False
        #: Whether the server should give the response's head to `keep_head` rather than
        #: send it (`hold_head`).
        self.head_wanted = False
        #: The ASGI ``send`` the server gives the app along with this writer. An app that was
        #: given another one (an ASGI middleware wrapped it) must not use the writer: its body
        #: would skip whatever the middleware does to the body.
        self.app_send: object = None

    def hold_head(self) -> None:
        """Ask the server to keep the head of the response the app starts next, and send it
        with the first `write`, in the same ``write(2)``. Only for an app that writes at once:
        the server also sends it before the response's next ASGI message, but not otherwise."""
        self.head_wanted = True

    def keep_head(self, head: bytes) -> None:
        """The server's side of `hold_head`: ``head`` is the response's head as h11 made it;
        it is `pending` until the next write."""
        self.head_wanted = False
        self._rest = head
        direct_write_counts.with_head += 1

    @property
    def pending(self) -> bool:
        """Whether part of a frame waits to be written (`flush`)."""
        return bool(self._rest)

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` now, without waiting; ``False``: nothing was written.

        ``True`` means ``data`` is the connection's: all written, or the rest of its frame
        `pending`, which whoever writes next sends first. The caller makes sure someone does.
        """
        if self.closed or self._rest:
            return False
        rest = self._writer.write_now(self._connection, data)
        if rest is None:
            return False
        direct_write_counts.by_producers += 1
        self._rest = rest
        return True

    async def write(self, data: bytes) -> bool:
        """Write ``data``, after a `pending` rest, in one ``write(2)`` when the socket takes
        both; ``False``: ``data`` was not written (the rest was, the slow way)."""
        if self.closed:
            return False  # closed after its last message, so nothing is pending
        await trio.lowlevel.checkpoint_if_cancelled()
        before = self._rest
        rest = self._writer.write_now(self._connection, data, before)
        if rest is None:
            await self.flush()
            return False
        # Part of a frame may be on the wire: the rest must follow it, byte for byte, before
        # anything else; the slow path's lock makes sure of that, its deadlines do the rest.
        self._rest = rest
        await self.flush()
        return True

    async def flush(self) -> None:
        """Send the `pending` rest of a frame, the slow and bounded way."""
        if self._rest:
            await self._writer.send_raw(self._rest)
            # Cleared only once sent: until then `write_now` writes nothing past it.
            self._rest = b""

    def close(self) -> None:
        self.closed = True
