"""Our HTTP/2 protocol: Hypercorn's, with bounded send buffers and no crash on late frames.

**Late frames.** Hypercorn 0.18's ``H2Protocol`` forgets a stream (``self.streams``) as soon as
its response has ended. HTTP/2 lets the client keep sending on it: a stream whose response ended
is only half closed, so a client may still send its request body, for instance after the server
answered early with a 401 or 413 without reading it. Upstream then looks the stream up with
``self.streams[stream_id]`` and raises ``KeyError``, which nothing catches: it ends the
connection's task and, through the server's nursery, the whole server. `DwexH2Protocol` keeps
its streams in `_StreamTable`, a ``dict`` whose lookup of a missing stream gives `_FORGOTTEN`,
a stream that drops what it is handed; Hypercorn then acknowledges the data (so the
connection's flow-control window is not eaten by bytes nobody reads) and discards it.

**Unbounded buffers.** Upstream's ``StreamBuffer`` holds a stream's unsent bytes and makes the
app's ``send`` wait above a high-water mark until a write pops it below the low-water mark.
But a client that grants no flow-control window (``SETTINGS_INITIAL_WINDOW_SIZE=0``, or no
``WINDOW_UPDATE``) makes every write pop zero bytes, and a zero-byte pop counts as "below low
water": each ``send`` is let through at once and the buffer grows without bound (1.2 GB for
20 streams in the attack of issue 18), while the app's send timeout never fires because no send
ever waits. `_BoundedBuffer` lets a ``send`` through only once the bytes still held drop below
the low-water mark, so a stream holds at most ``buffer_bytes`` plus the one write in progress,
and a connection at most ``h2_max_concurrent_streams`` times that.

**Stalled streams.** A ``send`` (or the end of a response) that waits ``stall_timeout`` seconds
(our server's ``write_timeout``, by default the app's ``send_timeout``) without a single byte
of its stream going out raises `_Stalled`. The stream is then reset (``RST_STREAM`` with
``CANCEL``), its buffer dropped, and the app told ``http.disconnect``, so a stream's runner
ends it and runs its cleanup; the connection and its other streams go on. A stream the app
abandons mid-response is reset the same way, so its unsent bytes are not kept until the
connection closes.

**Rapid reset** (CVE-2023-44487). Opening a stream and resetting it at once costs the client
two frames and the server a request's whole setup (a task, the app's routing, guards): 300,000
of them in 11 s kept the loop busy, and other clients waited seconds. A connection may open
`H2Limits.streams_per_second` streams a second, and a client address (all its connections
together, `ResetBudgets`) may reset `H2Limits.resets_per_second`, each with a burst allowance
(token buckets); a connection past either gets ``GOAWAY`` with ``ENHANCE_YOUR_CALM`` and is
closed, before the frames that broke the limit are acted on.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import trio
from hypercorn.events import Closed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.h2 import BufferCompleteError, H2Protocol, StreamBuffer
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.typing import Event as IOEvent
from priority.priority import MissingStreamError

__all__ = ["DEFAULT_H2_BUFFER_BYTES", "DwexH2Protocol", "H2Limits", "ResetBudgets"]

logger = logging.getLogger("trio_dwex.serving")

#: Bytes an HTTP/2 stream may hold unsent before the app's ``send`` waits for the client.
#: Upstream's high-water mark is two default frames (32 KiB); SSE writes are small and frequent,
#: so a little more lets a burst out without a wait per frame, and 100 stalled streams of one
#: connection still hold only 6.4 MiB.
DEFAULT_H2_BUFFER_BYTES = 64 * 1024


@dataclass(frozen=True)
class H2Limits:
    """How much a client may ask of one HTTP/2 connection before it is closed.

    Browsers open at most a page's worth of streams at once (``h2_max_concurrent_streams``,
    100 by default, caps them too) and cancel a few when a page changes; the defaults leave
    them a wide margin while a rapid-reset attacker, who needs thousands a second, hits them
    within a second.

    Attributes:
        streams_per_second: new streams a connection may open each second, on average.
        stream_burst: new streams it may open at once above that average.
        resets_per_second: streams a client address may reset (``RST_STREAM``) each second,
            over all its connections.
        reset_burst: resets it may send at once above that average.
    """

    streams_per_second: float = 200.0
    stream_burst: int = 400
    resets_per_second: float = 100.0
    reset_burst: int = 200

    def __post_init__(self) -> None:
        for name in ("streams_per_second", "resets_per_second"):
            value = getattr(self, name)
            if not value > 0:  # also refuses NaN
                raise ValueError(f"H2Limits.{name} must be > 0, got {value!r}")
        for name in ("stream_burst", "reset_burst"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"H2Limits.{name} must be an int >= 1, got {value!r}")


class _TokenBucket:
    """Allows ``rate`` actions a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = trio.current_time()

    def take(self, count: int) -> bool:
        """Spend ``count`` tokens; ``False`` if there are not that many."""
        now = trio.current_time()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= count
        return self._tokens >= 0

    def full(self) -> bool:
        """Whether the bucket has refilled to its burst: its owner has been quiet."""
        elapsed = trio.current_time() - self._last
        return self._tokens + elapsed * self._rate >= self._burst


class ResetBudgets:
    """The reset allowance of each client address, shared by all its connections.

    A per-connection allowance alone does not stop a rapid-reset attacker, who reconnects
    when closed and gets a fresh burst each time (170,000 streams in 6 s over 74 connections,
    measured with ``python -m bench.attacks``). Legitimate clients reset few streams, so
    the reset allowance is kept per address; new streams stay per connection, since many
    users may share one address behind a NAT. Addresses whose allowance is full again are
    forgotten once more than `MAX_TRACKED` are known, so the table stays bounded.
    """

    #: Addresses tracked before the idle ones are forgotten.
    MAX_TRACKED = 10_000

    def __init__(self, limits: H2Limits) -> None:
        self._limits = limits
        self._buckets: dict[str, _TokenBucket] = {}

    def for_client(self, host: str) -> _TokenBucket:
        """The bucket of ``host``, made full on first sight."""
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self.MAX_TRACKED:
                self._forget_idle()
            bucket = _TokenBucket(self._limits.resets_per_second, self._limits.reset_burst)
            self._buckets[host] = bucket
        return bucket

    def _forget_idle(self) -> None:
        for host in [host for host, bucket in self._buckets.items() if bucket.full()]:
            del self._buckets[host]


class _Stalled(Exception):
    """A stream's client accepted no byte of it for ``stall_timeout`` seconds."""


class _BoundedBuffer(StreamBuffer):
    """A stream's unsent bytes, at most ``high_water`` before ``push`` waits (see module doc)."""

    def __init__(self, event_class: type[IOEvent], high_water: int, stall_timeout: float) -> None:
        super().__init__(event_class)
        self._high_water = high_water
        self._low_water = high_water // 2
        self._stall_timeout = stall_timeout
        #: Bytes handed to the connection so far: a waiter's measure of progress.
        self._sent = 0

    async def push(self, data: bytes) -> None:
        if self._complete:
            raise BufferCompleteError()
        self.buffer.extend(data)
        await self._is_empty.clear()
        while len(self.buffer) >= self._high_water and not self._complete:
            await self._paused.clear()
            await self._wait_for_progress(self._paused)

    async def drain(self) -> None:
        while self.buffer and not self._complete_and_closed():
            await self._wait_for_progress(self._is_empty)

    def _complete_and_closed(self) -> bool:
        return self._complete and not self.buffer

    async def _wait_for_progress(self, event: IOEvent) -> None:
        """Wait for ``event``; raise `_Stalled` if no byte went out for ``stall_timeout``."""
        sent_before = self._sent
        with trio.move_on_after(self._stall_timeout):
            await event.wait()
            return
        if self._sent == sent_before:
            raise _Stalled()

    async def pop(self, max_length: int) -> bytes:
        length = min(len(self.buffer), max_length)
        data = bytes(self.buffer[:length])
        del self.buffer[:length]
        self._sent += length
        # Upstream resumes the writer when the *popped chunk* is small, which a zero window
        # (a zero-byte pop) always is; what matters is how much is still held.
        if len(self.buffer) < self._low_water:
            await self._paused.set()
        if not self.buffer:
            await self._is_empty.set()
        return data


class _ForgottenStream:
    """What a frame for a finished stream is handed to: it drops it."""

    async def handle(self, event: StreamEvent) -> None:
        pass  # the stream's response has ended; its late request data has no reader


_FORGOTTEN = _ForgottenStream()


class _StreamTable(dict[int, HTTPStream | WSStream]):
    """``H2Protocol.streams``, where looking up a finished stream gives `_FORGOTTEN`."""

    def __missing__(self, stream_id: int) -> Any:
        return _FORGOTTEN


class DwexH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol with bounded stream buffers, reset when stalled.

    Args:
        stall_timeout: seconds a stream's send may wait with no byte going out before the
            stream is reset.
        buffer_bytes: bytes a stream may hold unsent before its app's ``send`` waits.
        limits: the rates of new streams a connection, and resets a client address, may
            send.
        reset_budgets: the server's table of reset allowances per client address; a table
            of this connection's own when ``None``.
    """

    def __init__(
        self,
        *args: Any,
        stall_timeout: float,
        buffer_bytes: int = DEFAULT_H2_BUFFER_BYTES,
        limits: H2Limits = H2Limits(),
        reset_budgets: ResetBudgets | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.streams = _StreamTable()
        self._new_streams = _TokenBucket(limits.streams_per_second, limits.stream_burst)
        # Resets are counted per client address across its connections (`ResetBudgets`).
        if reset_budgets is None:
            reset_budgets = ResetBudgets(limits)
        self._resets = reset_budgets.for_client(self.client[0] if self.client else "")
        self._new_buffer = partial(
            _BoundedBuffer,
            self.context.event_class,
            high_water=buffer_bytes,
            stall_timeout=stall_timeout,
        )

    async def _create_stream(self, request: Any) -> None:
        await super()._create_stream(request)
        # Upstream made a plain `StreamBuffer` for the new stream; nothing is in it yet.
        self.stream_buffers[request.stream_id] = self._new_buffer()

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        opened = reset = 0
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                opened += 1
            elif isinstance(event, h2.events.StreamReset) and event.remote_reset:
                reset += 1
        # Both buckets are charged, so that neither check hides the other's count.
        within = self._new_streams.take(opened) & self._resets.take(reset)
        if not within:
            await self._calm_down(opened, reset)
            return
        await super()._handle_events(events)

    async def _calm_down(self, opened: int, reset: int) -> None:
        """GOAWAY (ENHANCE_YOUR_CALM) and close: the client broke `H2Limits`."""
        logger.warning(
            "closing an HTTP/2 connection from %s that opened or reset streams faster than "
            "H2Limits allows (this batch: %d opened, %d reset)",
            self.client,
            opened,
            reset,
        )
        with suppress(h2.exceptions.ProtocolError):
            self.connection.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        await self._flush()
        await self.send(Closed())

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, StreamClosed):
            await self._drop_unfinished(event.stream_id)
        try:
            await super().stream_send(event)
        except _Stalled:
            await self._reset(event.stream_id)
            await self._close_stream(event.stream_id)

    async def _drop_unfinished(self, stream_id: int) -> None:
        """Reset a stream the app closed with bytes unsent or its response unfinished."""
        buffer = self.stream_buffers.get(stream_id)
        if buffer is not None and not buffer.complete:
            await self._reset(stream_id)

    async def _reset(self, stream_id: int) -> None:
        """``RST_STREAM`` (CANCEL) for ``stream_id``, and forget its unsent bytes."""
        buffer = self.stream_buffers.pop(stream_id, None)
        if buffer is not None:
            await buffer.close()
        with suppress(MissingStreamError):  # the send task already removed it
            self.priority.remove_stream(stream_id)
        # A stream the client reset or closed first needs no word from us.
        with suppress(h2.exceptions.ProtocolError):
            self.connection.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        await self._flush()
