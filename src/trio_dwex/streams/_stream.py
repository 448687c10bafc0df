"""`SseStream`: the imperative way to feed one client's event stream.

An `SseStream` is a bounded trio memory channel with the guide's API on top. Producers put
events in with `send` (waits for room) or `send_nowait` (for sync callbacks); the stream
runner takes them out and writes them to the client. Tasks started with `start_soon` run in
the stream's own nursery, so they are cancelled when the stream ends, whatever ends it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import trio

from .._errors import StreamClosed
from ..wire._sse import SseEvent, to_event

__all__ = ["DEFAULT_BUFFER_SIZE", "OverflowPolicy", "SseStream"]

logger = logging.getLogger("trio_dwex.streams")

#: How many events an `SseStream` holds for a client that is slower than its producer.
#: Small enough that a stalled client costs little memory, large enough to absorb bursts.
DEFAULT_BUFFER_SIZE = 256

_CLOSED = "cannot send on a closed SseStream; check stream.is_closed first"

CloseCallback = Callable[[], object]
"""An `on_close` callback: a plain function, or an async one (its awaitable is awaited)."""


class OverflowPolicy(enum.Enum):
    """What `SseStream.send_nowait` does when the stream's buffer is full.

    A full buffer means the client reads slower than the producer writes. Memory stays bounded
    whichever policy is chosen; they differ in what the client sees.
    """

    #: Close the stream (the default). The client's EventSource reconnects, and with
    #: ``Last-Event-ID`` it can resume where it stopped; nothing is silently skipped.
    CLOSE = "close"
    #: Discard the event that did not fit. For streams where only the latest state matters.
    DROP_NEWEST = "drop_newest"
    #: Discard the oldest buffered event to make room, so the client sees the latest ones.
    DROP_OLDEST = "drop_oldest"


class SseStream:
    """One client's stream of events, fed imperatively.

    Return it from an ``@Sse`` handler (or pass it to `EventSourceResponse`)::

        stream = SseStream()
        stream.start_soon(tick, stream)          # runs in the stream's nursery
        stream.on_close(lambda: print("bye"))    # runs once, whatever ends the stream
        return stream

    Args:
        buffer_size: events held for a client that reads slower than they are produced.
        overflow: what `send_nowait` does when that buffer is full (see `OverflowPolicy`).
    """

    def __init__(
        self,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        overflow: OverflowPolicy = OverflowPolicy.CLOSE,
    ) -> None:
        if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or buffer_size < 1:
            raise ValueError(f"SseStream buffer_size must be a positive int, got {buffer_size!r}")
        if not isinstance(overflow, OverflowPolicy):
            raise ValueError(f"SseStream overflow must be an OverflowPolicy, got {overflow!r}")
        self.buffer_size = buffer_size
        self.overflow = overflow
        # Events, or their bytes once the stream runs (see `_wire`).
        self._sender, self._receiver = trio.open_memory_channel[SseEvent | bytes](buffer_size)
        self._closed = False
        self._finished = False
        self._overflowed = False
        self._callbacks: list[CloseCallback] = []
        self._pending: list[tuple[Callable[..., Awaitable[object]], tuple[Any, ...]]] = []
        self._nursery: trio.Nursery | None = None
        # Set by the runner the moment the stream starts to end, before its scope is cancelled.
        self._ending = False
        # Set by the runner when it writes this stream's buffer to a client: events are then
        # queued as their encoded bytes, which the writer needs anyway. A buffered event then
        # costs a third of the memory and gives the garbage collector nothing to track, which
        # with hundreds of busy streams saves a fifth of the CPU per event
        # (docs/performance.md). A stream that an interceptor iterates keeps its events.
        self._wire = False

    # -- producing ----------------------------------------------------------------------------

    async def send(self, event: object) -> None:
        """Queue an event, waiting while the buffer is full.

        ``event`` is an `SseEvent`, a mapping of its fields, or plain data (see `to_event`).

        A cancel point for the stream's own end: once the stream is ending (client gone,
        shutdown, lifetime), ``send`` raises ``Cancelled`` in the stream's tasks. It does not
        pass through the scheduler when there is room, so a producer that is ahead of the
        client fills the buffer and the runner writes everything queued in one go; other
        cancellations reach the caller at its next checkpoint, at the latest when the buffer
        is full and ``send`` waits.

        Raises:
            StreamClosed: the stream is closed (client gone, or `close` was called).
        """
        message = event if type(event) is SseEvent else to_event(event)
        item = message.encode() if self._wire else message
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise StreamClosed(_CLOSED)
        if self._offer(item):
            # A flag costs nothing per event, where a checkpoint costs as much as queueing the
            # event; before the stream runs, an ordinary cancel point.
            if self._ending:
                await trio.lowlevel.checkpoint()
            elif self._nursery is None:
                await trio.lowlevel.checkpoint_if_cancelled()
            return
        try:
            await self._sender.send(item)
        except trio.ClosedResourceError:
            raise StreamClosed(
                "the SseStream was closed while send() waited for buffer room"
            ) from None

    async def send_data(self, data: Any) -> None:
        """Queue an event that has only data (the client's ``message`` type)."""
        await self.send(SseEvent(data=data))

    async def send_comment(self, comment: str) -> None:
        """Queue a comment line; clients ignore it, proxies see traffic (a keep-alive)."""
        await self.send(SseEvent(comment=comment))

    def send_nowait(self, event: object) -> bool:
        """Queue an event without waiting; for sync code such as event-emitter callbacks.

        Returns ``True`` if the event was queued, ``False`` if it was not: the stream is
        closed, or the buffer was full and the overflow policy dropped it or closed the
        stream. It never raises for those, so one slow client cannot break a publisher that
        feeds many streams.
        """
        message = to_event(event)
        item = message.encode() if self._wire else message
        if self._closed:
            return False
        try:
            self._sender.send_nowait(item)
            return True
        except trio.WouldBlock:
            pass
        if self.overflow is OverflowPolicy.DROP_NEWEST:
            return False
        if self.overflow is OverflowPolicy.DROP_OLDEST:
            self._receiver.receive_nowait()
            self._sender.send_nowait(item)
            return True
        logger.warning(
            "closing an SSE stream: its client reads slower than events are produced and "
            "its buffer of %d events is full (overflow policy CLOSE)",
            self.buffer_size,
        )
        self._overflowed = True
        self.close()
        return False

    def close(self) -> None:
        """Close the stream: events already queued are still delivered, then it ends.

        Safe to call more than once, and from sync code.
        """
        if not self._closed:
            self._closed = True
            self._sender.close()

    # -- lifetime -----------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once the stream is closed; `send` would raise and `send_nowait` return False."""
        return self._closed

    def on_close(self, callback: CloseCallback) -> None:
        """Run ``callback`` exactly once when the stream ends, whatever ends it.

        Callbacks run after the stream's tasks are cancelled, in the order they were added.
        An async callback is awaited (shielded from the stream's cancellation, with the
        runner's ``close_timeout``).
        """
        if self._finished:
            raise StreamClosed("this SseStream has already ended; on_close would never run")
        self._callbacks.append(callback)

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task in the stream's own nursery.

        It starts once the stream runs (at once if it already does) and is cancelled when the
        stream ends. If it raises, the stream ends and the error is logged (or, before the
        first event was sent, answered as an HTTP error).
        """
        if self._finished:
            raise StreamClosed("this SseStream has already ended; cannot start a task in it")
        if self._nursery is None:
            self._pending.append((fn, args))
        else:
            self._nursery.start_soon(fn, *args)

    def __aiter__(self) -> AsyncIterator[SseEvent]:
        """Its events, as an async iterable: how an interceptor maps an SseStream's events.

        The stream's tasks and ``on_close`` callbacks still belong to the stream; the runner
        runs them when given the stream as ``owner``.
        """
        if self._wire:
            raise RuntimeError(
                "this SseStream is being sent to a client; it cannot be iterated as well"
            )
        # Only a stream that the runner writes out holds bytes, and that one is refused above.
        return cast(AsyncIterator[SseEvent], self._receiver.__aiter__())

    # -- for the stream runner (same layer) -----------------------------------------------------

    def _attach(self, nursery: trio.Nursery) -> None:
        """Bind the stream to the nursery it runs in and start the queued tasks."""
        if self._nursery is not None or self._finished:
            raise RuntimeError("an SseStream can be run only once; return a new one per request")
        self._nursery = nursery
        pending, self._pending = self._pending, []
        for fn, args in pending:
            nursery.start_soon(fn, *args)

    def _offer(self, item: SseEvent | bytes) -> bool:
        """Queue ``item`` if the buffer has room now; ``False`` if it is full."""
        if self._closed:
            raise StreamClosed(_CLOSED)
        try:
            self._sender.send_nowait(item)
        except trio.WouldBlock:
            return False
        return True

    def _take_callbacks(self) -> list[CloseCallback]:
        """Mark the stream finished and hand over its callbacks, so each runs exactly once."""
        self._finished = True
        self.close()
        callbacks, self._callbacks = self._callbacks, []
        self._pending.clear()
        return callbacks
