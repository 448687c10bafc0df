"""Our fixes to Hypercorn's Trio worker: three connection-level leaks of long-lived streams.

An SSE response is a request that never ends on its own, so the server must notice when the
client goes away, and must never let one client pin a task forever. Hypercorn 0.18's Trio
worker (``hypercorn/trio/tcp_server.py``) gets this wrong in specific cases:

**1. Missed disconnects (hypercorn issue 210).** ``TCPServer._read_data`` reads the socket and
calls ``await self.protocol.handle(RawData(data))`` *in the same task*, before the next
``receive_some``. For HTTP/1.1 that lands in ``H11Protocol._handle_events``: once the request
is complete and the client sends anything more (a pipelined request, stray bytes), h11 answers
``PAUSED`` and hypercorn waits on ``self.can_read`` until the current response ends. While it
waits, nobody reads the socket, so a later FIN or RST is never seen and an idle stream (say an
SSE stream between events) stays open forever; only a later failed write would end it. A FIN or
RST from a client that sent nothing after its request *is* seen at once, because the reader is
then parked in ``receive_some``.

**2. Shielded writes.** ``TCPServer.protocol_send`` runs ``send_all`` in a shielded cancel
scope without a deadline (so that a cancelled sender cannot leave half a frame on the wire).
A client that stops reading fills the socket buffers, and ``send_all`` then waits forever: the
task that called it (the app's ``await send(...)`` for HTTP/1.1, the connection's send task
for HTTP/2) is pinned and cannot be cancelled, so an app-level send timeout cannot free the
stream.

**3. A lost disconnect after a failed write** (found while testing 2). When ``send_all``
raises ``BrokenResourceError``, ``protocol_send`` tells the protocol ``Closed()`` in the task
that wrote, unshielded. If that is the app's task inside its own, already expired, send
timeout, the cancellation lands halfway through the close (``HTTPStream.handle(StreamClosed)``
sets ``closed`` before its ``app_put`` of ``http.disconnect`` raises ``Cancelled``): the app is
never told, and its later sends are silently dropped, forever.

**What we change**, for our server only (nothing in hypercorn is patched, so other Hypercorn
servers in the same process keep upstream behaviour): :func:`serve_hypercorn` runs
``_upstream.worker_serve`` (upstream's, copied to take a server class) with
:class:`_DwexTCPServer`, a subclass of upstream's ``TCPServer`` that

* keeps reading while the protocol is busy: ``_read_data`` becomes a reader task that moves
  socket bytes into a read-ahead buffer bounded by :data:`READ_AHEAD_LIMIT`, and a feeder task,
  started only while there are bytes to hand over, that hands them to the protocol in order.
  The reader therefore sees EOF/RST even while h11 is paused. At that point the feeder gets
  :data:`EOF_DRAIN_GRACE` seconds to deliver the bytes that came before the EOF (so a request
  sent together with a FIN is still handled exactly as upstream handles it); a feeder still
  busy after that is waiting on a response to a client that has left, so it is cancelled and
  the protocol is told ``Closed()`` (the app sees ``http.disconnect``). A client that
  pipelines more than ``READ_AHEAD_LIMIT`` bytes gets upstream's back-pressure: we stop
  reading, and its disconnect is then only noticed by a failing write (SSE keep-alives make
  that bounded), which also stops the reader, so that the connection ends.
* bounds every shielded write: the data goes out in chunks of at most :data:`WRITE_CHUNK`
  bytes, each inside ``trio.CancelScope(shield=True, deadline=now + write_timeout)``. A chunk
  that the client does not accept within ``write_timeout`` seconds aborts the connection (RST,
  discarding the unsent bytes), and the protocol is told ``Closed()``: the pinned send returns,
  the app sees ``http.disconnect``, and every task of the connection ends. Since the deadline
  is renewed per chunk, a slow client that keeps accepting data is not dropped. A writer with
  a deadline of its own (a stream's ``send_timeout``, which a route may set below the server's
  ``write_timeout``) gets it honoured too: the chunk's deadline is the earlier of the two, and
  a write that misses it aborts the connection the same way. Without this the shield hid the
  route's deadline, and a stalled client of a route with ``send_timeout=10`` was kept for the
  server's 30 s, its buffers full, measured with ``python -m bench.stalled``.
* tells the protocol ``Closed()`` after a failed write in a shielded scope (bounded by
  ``write_timeout`` too), so that the close cannot be cancelled halfway.
* speaks HTTP/1 with ``_h11.DwexH11Protocol``, which refuses ambiguous requests and heads
  larger than ``h11_max_incomplete_size`` however they arrived (h11 enforces that limit only
  on a head still incomplete, so one that came in a single read of up to 64 KiB got through).
* gives each HTTP request the `DisconnectNotice` of ``_notice.py``, through its task group
  (``_upstream.TCPServer.run`` is upstream's, copied to take the task group's class), so a
  stream hears of its client's departure without a task parked in ``receive()``.
* takes a free send lock without a scheduler pass (``fast_send_lock``).
* closes an idle connection by a deadline on its read rather than with a task per idle spell
  (``_idle.py``): the same ``keep_alive_timeout`` and the same close at shutdown, for about
  12% less CPU per short connection.
* writes an HTTP/1 response's body chunks straight to the socket when it takes them at once
  (``direct_writes``, ``_direct.py``): no lock round trip, no shield, no scheduler pass.
* counts the writes that found the connection gone (:data:`dropped_writes`, and a debug log
  line each): upstream drops them silently, and "nothing is written to a closed socket at
  shutdown" is a promise a test must be able to check.

**With the plain ``hypercorn`` command** (or ``hypercorn.trio.serve``) a user gets upstream
behaviour: the leak of case 1, the pinned task of case 2 and the race of case 3. Only the
app-level mitigations of trio-dwex apply there: keep-alive comments (hypercorn never raises
from the app's ``send`` for a gone client, but the first write that fails delivers
``http.disconnect``), and the stream's send timeout, which can cancel an HTTP/2 send waiting on
flow control but not a shielded HTTP/1.1 ``send_all``.

``tests/serving/test_hypercorn_pitfalls.py`` has canary tests that fail the day upstream fixes
case 1 or 2; then revisit this module and maybe drop that part of the fix. (Case 3 is a race,
so it has a regression test for our server but no canary.)

Code copied from upstream lives in ``_upstream.py``, apart from these fixes, so that a diff
against a new Hypercorn release reads cleanly; its docstring says how to move to one.
"""

from __future__ import annotations

import enum
import logging
import math
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import trio
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.tcp_server import MAX_RECV
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, LifespanState

from ._direct import DirectWriter
from ._h2 import DwexH2Protocol, ResetBudgets
from ._h11 import DwexH11Protocol
from ._idle import DwexWorkerContext, IdleDeadline, TerminatedEvent
from ._limits import LimitedListener, ServerLimits
from ._memory import trim_memory_every
from ._notice import NoticeTaskGroup, ServerApp
from ._upstream import ProtocolWrapper, TCPServer, worker_serve

__all__ = [
    "EOF_DRAIN_GRACE",
    "READ_AHEAD_LIMIT",
    "WRITE_CHUNK",
    "ASGIApp",
    "DroppedWrites",
    "dropped_writes",
    "serve_hypercorn",
]

logger = logging.getLogger("trio_dwex.serving")

#: The limits used when none are given (`ServerLimits`' defaults).
DEFAULT_LIMITS = ServerLimits()

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
"""Any ASGI 3 application.

Deliberately loose: hypercorn's own ``ASGIFramework`` spells scopes and messages as TypedDict
unions, which an app typed without hypercorn (as trio-dwex's lower layers must be) cannot
match under ``mypy --strict``."""

READ_AHEAD_LIMIT = MAX_RECV
"""Bytes read from a client that the protocol has not taken yet, at most (64 KiB).

At this limit we stop reading that client (upstream's back-pressure), so a client cannot make
us buffer without limit. Stray or pipelined bytes behind a running stream are far fewer."""

EOF_DRAIN_GRACE = 0.25
"""Seconds the protocol gets, after the client's EOF or reset, to take the bytes read before it.

A protocol still busy after that is waiting for a response to end (h11's pause) and will never
take them: the client has left, so we stop waiting and close the connection."""

WRITE_CHUNK = 2**14
"""Bytes handed to ``send_all`` under one ``write_timeout`` deadline (16 KiB, one TLS record).

The deadline is renewed per chunk, so ``write_timeout`` bounds a lack of progress, not the
duration of a large write: a client is dropped only if it accepts less than this many bytes in
``write_timeout`` seconds."""

_ReadEnd = Literal["eof", "error"]


@dataclass
class DroppedWrites:
    """Writes our server dropped because the connection was gone, in this process.

    Upstream swallows these (the bytes were for nobody); we drop them too, and count them, so
    that a test can check that, say, a shutdown writes nothing to a socket it has closed.
    Counts are per process (each ``--workers`` process has its own) and never reset.
    """

    #: The socket was closed already, by us (``ClosedResourceError``): a write that came
    #: after the connection was torn down.
    closed: int = 0
    #: The client had gone (``BrokenResourceError``: a reset or a broken pipe). Expected
    #: whenever clients vanish mid-stream; a failed write is how such a client is noticed.
    broken: int = 0

    @property
    def total(self) -> int:
        return self.closed + self.broken


dropped_writes = DroppedWrites()
"""The process's `DroppedWrites`; ``trio_dwex.serving.dropped_writes`` is the same object."""


class _Write(enum.Enum):
    """How a bounded write ended (`_DwexTCPServer._send_all_with_progress_deadline`)."""

    SENT = "sent"
    #: A chunk made no progress for ``write_timeout`` seconds.
    STALLED = "stalled"
    #: The writer's own deadline (a stream's ``send_timeout``) passed first.
    WRITER_DEADLINE = "writer deadline"


class _ReadAhead:
    """Bytes read from the socket and not yet taken by the protocol, and how reading ended.

    The reader task puts, a feeder task takes. The reader asks :meth:`room` how much it may
    read, which waits while the buffer is full: that is where back-pressure on the client
    comes from, and why the buffer never holds more than ``limit`` bytes.
    """

    __slots__ = ("_data", "_limit", "_room", "end")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()
        self.end: _ReadEnd | None = None
        # Made only while the reader waits for room: most connections never fill the buffer.
        self._room: trio.Event | None = None

    def __bool__(self) -> bool:
        return bool(self._data)

    async def room(self) -> int:
        while len(self._data) >= self._limit:
            self._room = trio.Event()
            await self._room.wait()
        return self._limit - len(self._data)

    def put(self, data: bytes | bytearray) -> None:
        self._data += data

    def take(self) -> bytes:
        """All buffered bytes (``b""`` if none), which makes room for the reader."""
        data = bytes(self._data)
        self._data.clear()
        if self._room is not None:
            self._room.set()
            self._room = None
        return data


class _DwexProtocols(ProtocolWrapper):
    """Hypercorn's protocol selector, with our HTTP/1 and HTTP/2 protocols (``_h11.py``,
    ``_h2.py``).

    ``h2_protocol`` makes `DwexH2Protocol` with the server's options; ``direct`` is the
    connection's fast write path for HTTP/1 responses, if any; ``unread_body_bytes`` is
    `ServerLimits.unread_body_bytes`.
    """

    def __init__(
        self,
        *args: Any,
        h2_protocol: Callable[..., DwexH2Protocol],
        direct: DirectWriter | None,
        unread_body_bytes: int,
        **kwargs: Any,
    ) -> None:
        self.h2_protocol_class = h2_protocol
        self._direct = direct
        self._unread_body_bytes = unread_body_bytes
        super().__init__(*args, **kwargs)

    # A method, not a ``partial`` per connection: what a connection holds, it holds for as
    # long as its stream lasts.
    def h11_protocol_class(self, *args: Any) -> DwexH11Protocol:
        return DwexH11Protocol(
            *args, direct=self._direct, unread_body_bytes=self._unread_body_bytes
        )


class _DwexTCPServer(TCPServer):
    """Hypercorn's per-connection server, reading past h11's pause and with bounded writes.

    See the module docstring for the leaks this fixes. The idle timeout is a deadline on the
    read (``_idle.py``); everything else not overridden here (TLS handshake, read timeout,
    protocol selection) is upstream's.
    """

    #: Runs each request's app with a `DisconnectNotice` in its scope (see ``_notice.py``).
    task_group_class = NoticeTaskGroup

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SSLStream[trio.SocketStream],
        *,
        write_timeout: float,
        h2_protocol: Callable[..., DwexH2Protocol],
        fast_send_lock: bool = True,
        direct_writes: bool = True,
        connection_slots: trio.Semaphore | None = None,
        unread_body_bytes: int,
    ) -> None:
        super().__init__(app, config, context, state, stream)
        self._unread_body_bytes = unread_body_bytes
        # HTTP/1 body chunks straight to a plain TCP socket when it takes them at once
        # (``_direct.py``); TLS keeps the full path.
        sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._direct = DirectWriter(sock, self.send_lock, self._send_raw) if direct_writes else None
        self._h2_protocol = h2_protocol
        # The slot `LimitedListener` took for this connection, given back when it ends.
        self._connection_slots = connection_slots
        self._write_timeout = write_timeout
        self._fast_send_lock = fast_send_lock
        # The running feeder's scope (see `_start_feeder`), and the event the reader waits on
        # for it to finish once the client has left.
        self._feeder: trio.CancelScope | None = None
        self._feeder_done: trio.Event | None = None
        # Cancelled once a write found the client gone (see `_connection_lost`), and when the
        # connection has been idle for keep_alive_timeout (its deadline, ``_idle.py``).
        self._reading = trio.CancelScope()
        if not isinstance(context.terminated, TerminatedEvent):
            raise TypeError("_DwexTCPServer needs a DwexWorkerContext (see _idle.py)")
        self._idle = IdleDeadline(self._reading, config.keep_alive_timeout, context.terminated)
        self.idle_task = self._idle  # type: ignore[assignment]

    def protocol_wrapper_class(self, *args: Any) -> ProtocolWrapper:
        return _DwexProtocols(
            *args,
            h2_protocol=self._h2_protocol,
            direct=self._direct,
            unread_body_bytes=self._unread_body_bytes,
        )

    def ended(self) -> None:
        self._idle.forget()
        if self._connection_slots is not None:
            self._connection_slots.release()

    async def _read_data(self) -> None:
        read_ahead = _ReadAhead(READ_AHEAD_LIMIT)
        end: _ReadEnd = "error"  # unless reading ends by itself: a failed write stops it
        with self._reading:
            end = await self._read_until_end(read_ahead)
        read_ahead.end = end
        if self._feeder is None and (read_ahead or read_ahead.end == "eof"):
            self._start_feeder(read_ahead)  # the rest of the bytes, and the EOF for h11
        if (feeder := self._feeder) is not None:
            done = self._feeder_done = trio.Event()
            with trio.move_on_after(EOF_DRAIN_GRACE):
                await done.wait()
            # The client has left; bytes the protocol could not take by now are for a
            # response that nobody will read, so the feeder may stop wherever it waits. It
            # must be done before the protocol hears Closed().
            feeder.cancel()
            await done.wait()
        await self.protocol.handle(Closed())

    async def _read_until_end(self, read_ahead: _ReadAhead) -> _ReadEnd:
        read_timeout = self.config.read_timeout
        while True:
            max_bytes = min(MAX_RECV, await read_ahead.room())
            try:
                if not read_timeout:
                    # None (Hypercorn's default) or 0 mean no timeout, as upstream reads them;
                    # then no cancel scope either: it would cost every idle connection about
                    # 1 KiB while it waits (``python -m bench.memory``).
                    data = await self.stream.receive_some(max_bytes)
                else:
                    with trio.fail_after(read_timeout):
                        data = await self.stream.receive_some(max_bytes)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                # A reset, our own close (idle timeout, aborted write) or the read timeout:
                # upstream treats all of them as the end of the connection, and so do we.
                return "error"
            if not data:
                return "eof"
            read_ahead.put(data)
            if self._feeder is None:
                self._start_feeder(read_ahead)

    def _start_feeder(self, read_ahead: _ReadAhead) -> None:
        # A feeder runs only while there are bytes to hand over, so an idle connection (an SSE
        # stream between events) parks no task for it, and it runs in the connection's task
        # group rather than a nursery of its own: each would cost an idle stream ~1-2 KiB.
        self._feeder = trio.CancelScope()
        self._task_group.spawn(self._feed_protocol, read_ahead, self._feeder)

    async def _feed_protocol(self, read_ahead: _ReadAhead, scope: trio.CancelScope) -> None:
        """Hand the buffered bytes to the protocol, in order, until none are left; then end.

        Only one feeder runs at a time (the reader starts one only when none is running), and
        it checks for more bytes and ends without a checkpoint in between, so no bytes are
        left behind without a feeder to take them.
        """
        try:
            with scope:
                while data := read_ahead.take():
                    await self.protocol.handle(RawData(data))
                if read_ahead.end == "eof":
                    # Upstream hands the empty read to the protocol, which lets h11 see the EOF.
                    await self.protocol.handle(RawData(b""))
        finally:
            self._feeder = None
            if self._feeder_done is not None:
                self._feeder_done.set()

    async def _send_raw(self, data: bytes) -> None:
        """Bytes already framed (the rest of a direct write), the bounded way."""
        await self.protocol_send(RawData(data))

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        await self._lock_for_send()
        try:
            try:
                sent = await self._send_all_with_progress_deadline(event.data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                # The client is gone, or the connection was already closed: upstream's path.
                closed = isinstance(error, trio.ClosedResourceError)
                if closed:
                    dropped_writes.closed += 1
                else:
                    dropped_writes.broken += 1
                logger.debug(
                    "dropped a write of %d bytes to a %s socket",
                    len(event.data),
                    "closed" if closed else "broken",
                )
                await self._connection_lost(abort=False)
                return
            if sent is _Write.STALLED:
                await self.config.log.warning(
                    f"Closing a connection whose client accepted no data for "
                    f"{self._write_timeout} seconds"
                )
            if sent is not _Write.SENT:
                # The writer's own deadline is its to report (a stream's send_timeout).
                await self._connection_lost(abort=True)
        finally:
            self.send_lock.release()

    async def _lock_for_send(self) -> None:
        """Take the send lock; with ``fast_send_lock``, a free one without a scheduler pass.

        ``trio.Lock.acquire`` yields to the scheduler even when the lock is free, and every
        SSE write pays for that pass (docs/performance.md measures it). A free lock has no
        waiters to be fair to, so taking it at once changes nothing else; it stays a cancel
        point.
        """
        if self._fast_send_lock and not self.send_lock.locked():
            await trio.lowlevel.checkpoint_if_cancelled()
            self.send_lock.acquire_nowait()
        else:
            await self.send_lock.acquire()

    async def _connection_lost(self, *, abort: bool) -> None:
        """Tell the protocol, after a failed write, that the connection is gone.

        This runs in the task that wrote, often the app's, and often inside the app's own send
        timeout, which may have expired while the write was shielded. Upstream tells the
        protocol unshielded, and then the pending cancellation interrupts the close halfway:
        ``HTTPStream.handle(StreamClosed)`` marks the stream closed, then its ``app_put`` of
        ``http.disconnect`` raises ``Cancelled``, so the app is never told and a second
        ``Closed()`` finds the stream already closed. The shield makes the close complete;
        its deadline keeps it from pinning the task should the app's queue be full.
        """
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self._write_timeout):
            if abort:
                await self._abort()
            await self.protocol.handle(Closed())
        # The reader may be waiting for room in a full read-ahead buffer behind a paused
        # protocol, where it would never see the client leave: the connection (its socket,
        # its tasks) would outlive the client until the server stops.
        self._reading.cancel()

    async def _send_all_with_progress_deadline(self, data: bytes) -> _Write:
        """Send ``data``; or say which deadline a chunk missed.

        The shield stays, as upstream wants it: cancelling the sender must not leave half a
        frame on the wire. The deadline is what upstream lacks: ``write_timeout`` per chunk,
        or the writer's own deadline if that comes first (then the connection is aborted, as
        the write cannot be finished). A writer already cancelled (``-inf``: shutdown, the
        client gone) still gets ``write_timeout`` to finish its chunk, as upstream intends.
        """
        own_deadline = trio.current_effective_deadline()
        if own_deadline == -math.inf:
            own_deadline = math.inf
        with memoryview(data) as view:
            # range(..., max(len, 1)) still sends an empty write once, as upstream does, so
            # that a write on a closed stream raises ClosedResourceError here as well.
            for start in range(0, max(len(view), 1), WRITE_CHUNK):
                deadline = min(trio.current_time() + self._write_timeout, own_deadline)
                with trio.CancelScope(shield=True, deadline=deadline) as scope:
                    await self.stream.send_all(view[start : start + WRITE_CHUNK])
                if scope.cancelled_caught:
                    return _Write.STALLED if deadline < own_deadline else _Write.WRITER_DEADLINE
        return _Write.SENT

    async def _abort(self) -> None:
        """Close the connection with a reset, dropping the bytes the client never read.

        A plain close would keep them queued in the kernel for a client that does not read;
        a linger time of zero makes the close send RST and free them now. Closing the stream
        also wakes the reader task with ``ClosedResourceError``, which ends the connection.
        """
        stream = self.stream
        sock = stream.transport_stream.socket if isinstance(stream, trio.SSLStream) else None
        if sock is None:
            # Without TLS hypercorn hands us a plain SocketStream despite the annotation.
            sock = getattr(stream, "socket", None)
        if sock is not None and sock.fileno() != -1:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()


async def serve_hypercorn(
    app: ASGIApp,
    config: Config,
    *,
    write_timeout: float,
    fast_send_lock: bool = True,
    direct_writes: bool = True,
    limits: ServerLimits = DEFAULT_LIMITS,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    sockets: Sockets | None = None,
) -> None:
    """Serve the ASGI ``app`` with Hypercorn's Trio worker and the fixes of this module.

    This is ``hypercorn.trio.serve`` with ``TCPServer`` replaced by :class:`_DwexTCPServer`
    and HTTP/1 spoken by ``_h11.DwexH11Protocol``:
    the same lifespan handling, binds (``config.bind``, ``insecure_bind``, ``quic_bind``),
    TLS and graceful shutdown (after ``shutdown_trigger`` returns, open connections get
    ``config.graceful_timeout`` seconds). Options about processes (``workers``, ``debug``,
    reloading) are ignored, as ``hypercorn.trio.serve`` ignores them.

    ``fast_send_lock`` takes a free connection send lock without a pass through the
    scheduler (fewer context switches per write; ``False`` restores upstream's behaviour).

    ``direct_writes`` writes an HTTP/1 response's body chunks straight to a plain TCP socket
    when it takes them at once (``_direct.py``); ``False``: every chunk through Hypercorn.

    ``write_timeout`` (seconds, > 0; ``math.inf`` disables it) drops a client that accepts
    no data for that long while we write to it (for HTTP/2: resets the stream).

    ``limits`` caps connections and what one HTTP/2 connection may ask (`ServerLimits`).

    ``sockets`` are already bound and listening sockets (shared by worker processes); by
    default they are made from ``config``.

    ``task_status.started`` receives the bound addresses as hypercorn's ``serve`` reports
    them, e.g. ``["http://127.0.0.1:54321"]``, so a caller can bind port 0 and learn the port.
    """
    if not write_timeout > 0:  # also rejects NaN
        raise ValueError(f"write_timeout must be a positive number of seconds, not {write_timeout}")
    # One slot per connection served at once, shared by every listener (see ``_limits.py``).
    slots = None if limits.max_connections is None else trio.Semaphore(limits.max_connections)
    async with trio.open_nursery() as housekeeping:
        if limits.memory_trim_interval is not None:
            housekeeping.start_soon(trim_memory_every, limits.memory_trim_interval)
        await worker_serve(
            ServerApp(app),
            config,
            sockets=sockets,
            shutdown_trigger=shutdown_trigger,
            task_status=task_status,
            tcp_server=partial(
                _DwexTCPServer,
                write_timeout=write_timeout,
                fast_send_lock=fast_send_lock,
                direct_writes=direct_writes,
                connection_slots=slots,
                unread_body_bytes=limits.unread_body_bytes,
                # HTTP/2 streams get bounded buffers, and a stream stalled for as long as a
                # write may wait is reset (see ``_h2.py``).
                h2_protocol=partial(
                    DwexH2Protocol,
                    stall_timeout=write_timeout,
                    buffer_bytes=limits.h2_buffer_bytes,
                    limits=limits.h2,
                    reset_budgets=ResetBudgets(limits.h2),
                ),
            ),
            worker_context=DwexWorkerContext,
            wrap_listeners=lambda listeners: [
                LimitedListener(listener, slots, limits.accept_error_log_interval)
                for listener in listeners
            ],
        )
        housekeeping.cancel_scope.cancel()
