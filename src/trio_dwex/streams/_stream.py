"""`SseStream`: the imperative way to feed one client's event stream.

An `SseStream` is a bounded trio memory channel with the guide's API on top, bounded in bytes
as well as events (`ByteBudget`). Producers put events in with `send` (waits for room) or
`send_nowait` (for sync callbacks); the stream runner takes them out and writes them to the
client. Tasks started with `start_soon` run in
the stream's own nursery, so they are cancelled when the stream ends, whatever ends it.

Its lifecycle (`StreamState` and `CloseReason`, with the table of legal transitions) is in
``_state.py``; the stream holds both values and changes them only in its own methods. The
runner drives it through the methods at the end of the class, the only ones it calls.

Who runs a stream: the response whose source it is, or else the response whose source
iterates it (an interceptor that wraps the handler's stream, with `map_events` or a generator
of its own). Iterating a stream that has not run yet, inside a response's tasks, hands it to
that response (`current_run`): its tasks start there and its ``on_close`` callbacks run when
that response ends.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol, cast

import trio

from .._errors import StreamClosed
from ..wire._sse import SseEvent, to_event
from ._budget import DEFAULT_BUFFER_BYTES, ByteBudget, Take, check_buffer_bytes
from ._outlet import ImmediateWriter, Outlet
from ._state import CloseReason, StreamState, next_state

__all__ = ["DEFAULT_BUFFER_SIZE", "OverflowPolicy", "SseStream", "StreamOwner", "current_run"]

logger = logging.getLogger("trio_dwex.streams")

#: How many events an `SseStream` holds for a client that is slower than its producer.
#: Small enough that a stalled client costs little memory, large enough to absorb bursts.
DEFAULT_BUFFER_SIZE = 256

_CLOSED = "cannot send on a closed SseStream; check stream.is_closed first"
_CLOSED_WHILE_WAITING = "the SseStream was closed while send() waited for buffer room"

CloseCallback = Callable[[], object]
"""An `on_close` callback: a plain function, or an async one (its awaitable is awaited)."""

_NEW, _RUNNING, _ENDING, _FINISHED = StreamState

# What a producer may give ``close(reason=...)``; the other reasons are the runner's to give.
_PRODUCER_REASONS = (CloseReason.CLOSED, CloseReason.OVERFLOW)


class DroppedEvents:
    """Events that an overflow policy discarded, in this process (the metrics read them).

    Per process, like the streams they were meant for; never reset.
    """

    #: Events that did not fit and were discarded (`OverflowPolicy.DROP_NEWEST`).
    newest: int = 0
    #: Buffered events pushed out by newer ones (`OverflowPolicy.DROP_OLDEST`).
    oldest: int = 0


dropped_events = DroppedEvents()
"""The process's `DroppedEvents`: streams and broadcast subscriptions count into it."""


class StreamOwner(Protocol):
    """A running response that takes over the streams its source iterates (the runner's run)."""

    def adopt(self, stream: SseStream) -> None:
        """Run ``stream`` as part of this response: start its tasks, later end and finish it."""


current_run: ContextVar[StreamOwner | None] = ContextVar("trio_dwex_current_run", default=None)
"""The response whose tasks are running, if any; set by the runner for its tasks."""


class OverflowPolicy(enum.Enum):
    """What `SseStream.send_nowait` does when the stream's buffer is full.

    A full buffer (in events or in bytes) means the client reads slower than the producer
    writes. Memory stays bounded whichever policy is chosen; they differ in what the client
    sees.
    """

    #: Close the stream (the default). The client's EventSource reconnects, and with
    #: ``Last-Event-ID`` it can resume where it stopped; nothing is silently skipped.
    CLOSE = "close"
    #: Discard the event that did not fit. For streams where only the latest state matters.
    DROP_NEWEST = "drop_newest"
    #: Discard the oldest buffered events to make room, so the client sees the latest ones.
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
        buffer_bytes: bytes of encoded events held for such a client; an empty buffer takes
            one event of any size.
        overflow: what `send_nowait` does when either bound is reached (see
            `OverflowPolicy`); `send` waits instead.
    """

    def __init__(
        self,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        overflow: OverflowPolicy = OverflowPolicy.CLOSE,
    ) -> None:
        if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or buffer_size < 1:
            raise ValueError(f"SseStream buffer_size must be a positive int, got {buffer_size!r}")
        if not isinstance(overflow, OverflowPolicy):
            raise ValueError(f"SseStream overflow must be an OverflowPolicy, got {overflow!r}")
        self.buffer_size = buffer_size
        self.buffer_bytes = check_buffer_bytes("SseStream", buffer_bytes)
        self.overflow = overflow
        # The bytes queued: producers add, the writer (or an iterating interceptor) releases.
        self._budget = ByteBudget(buffer_bytes)
        # Events, or their bytes once the stream runs (see `_wire`).
        self._sender, self._receiver = trio.open_memory_channel[SseEvent | bytes](buffer_size)
        self._state = _NEW
        # ``None`` while producers may queue events (see _state.py).
        self._reason: CloseReason | None = None
        self._callbacks: list[CloseCallback] = []
        self._pending: list[tuple[Callable[..., Awaitable[object]], tuple[Any, ...]]] = []
        self._nursery: trio.Nursery | None = None
        # True when the runner writes this stream's buffer to a client: events are then
        # queued as their encoded bytes, which the writer needs anyway. A buffered event then
        # costs a third of the memory and gives the garbage collector nothing to track, which
        # with hundreds of busy streams saves a fifth of the CPU per event
        # (docs/performance.md). A stream that an interceptor iterates keeps its events.
        self._wire = False
        # Where `send` and `send_nowait` offer an event to the client first (``_outlet.py``),
        # when the runner writes this stream to a sink that allows it.
        self._outlet: Outlet | None = None

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
        data = message.encode()
        item = data if self._wire else message
        if self._reason is not None:
            await trio.lowlevel.checkpoint()
            raise StreamClosed(_CLOSED)
        outlet = self._outlet
        if outlet is not None and outlet.accepting and outlet.offer(data):
            return
        size = len(data)
        budget = self._budget
        if not budget.admit(size):
            await budget.wait_for_room(size)
            if self._reason is not None:
                raise StreamClosed(_CLOSED_WHILE_WAITING)
            budget.add(size)
        try:
            self._sender.send_nowait(item)
        except trio.WouldBlock:
            try:
                await self._sender.send(item)
            except BaseException as exc:
                # Not queued (the stream closed, or this wait was cancelled): nor counted.
                budget.release(size)
                if isinstance(exc, trio.ClosedResourceError):
                    raise StreamClosed(_CLOSED_WHILE_WAITING) from None
                raise
            return
        # Reading the state costs nothing per event, where a checkpoint costs as much as
        # queueing the event; before the stream runs, an ordinary cancel point.
        if self._state is not _RUNNING:
            if self._state is _ENDING:
                await trio.lowlevel.checkpoint()
            else:
                await trio.lowlevel.checkpoint_if_cancelled()

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
        data = message.encode()
        item = data if self._wire else message
        if self._reason is not None:
            return False
        outlet = self._outlet
        if outlet is not None and outlet.accepting and outlet.offer(data):
            return True
        size = len(data)
        budget = self._budget
        if budget.fits(size):
            try:
                self._sender.send_nowait(item)
            except trio.WouldBlock:
                pass
            else:
                budget.add(size)
                return True
        if self.overflow is OverflowPolicy.DROP_NEWEST:
            dropped_events.newest += 1
            return False
        if self.overflow is OverflowPolicy.DROP_OLDEST:
            while True:
                # Not empty: an empty buffer fits any event and has room for one.
                budget.release(_size(self._receiver.receive_nowait()))
                dropped_events.oldest += 1
                if budget.fits(size):
                    try:
                        self._sender.send_nowait(item)
                    except trio.WouldBlock:
                        continue
                    budget.add(size)
                    return True
        logger.warning(
            "closing an SSE stream: its client reads slower than events are produced and "
            "its buffer (%d events, %d bytes) is full (overflow policy CLOSE)",
            self.buffer_size,
            self.buffer_bytes,
        )
        self._close(CloseReason.OVERFLOW)
        return False

    def close(self, *, reason: CloseReason = CloseReason.CLOSED) -> None:
        """Close the stream: events already queued are still delivered, then it ends.

        Safe to call more than once, and from sync code; the first call's ``reason`` stays.
        ``reason`` is `CloseReason.CLOSED`, or `CloseReason.OVERFLOW` for a producer that
        drops a client which fell behind (as the broadcast hub does): the response then ends
        as an overflow.
        """
        if reason not in _PRODUCER_REASONS:
            raise ValueError(
                f"SseStream.close(reason=...) takes CloseReason.CLOSED or CloseReason.OVERFLOW, "
                f"got {reason!r}; the other reasons are the runner's to give"
            )
        self._close(reason)

    # -- lifetime -----------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once the stream is closed; `send` would raise and `send_nowait` return False."""
        return self._reason is not None

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the stream closed: ``None`` while it is open, then the first reason given."""
        return self._reason

    @property
    def state(self) -> StreamState:
        """Where the stream is in its life (see `StreamState`)."""
        return self._state

    def on_close(self, callback: CloseCallback) -> None:
        """Run ``callback`` exactly once when the stream ends, whatever ends it.

        Callbacks run after the stream's tasks are cancelled, in the order they were added.
        An async callback is awaited (shielded from the stream's cancellation, with the
        runner's ``close_timeout``).
        """
        if self._state is _FINISHED:
            raise StreamClosed("this SseStream has already ended; on_close would never run")
        self._callbacks.append(callback)

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task in the stream's own nursery.

        It starts once the stream runs (at once if it already does) and is cancelled when the
        stream ends. If it raises, the stream ends and the error is logged (or, before the
        first event was sent, answered as an HTTP error).
        """
        if self._state is _FINISHED:
            raise StreamClosed("this SseStream has already ended; cannot start a task in it")
        if self._nursery is None:
            self._pending.append((fn, args))
        else:
            self._nursery.start_soon(fn, *args)

    def __aiter__(self) -> AsyncIterator[SseEvent]:
        """Its events, as an async iterable: how an interceptor maps an SseStream's events.

        The stream's tasks and ``on_close`` callbacks still belong to the stream: iterated
        inside a response's tasks before it runs, the stream is run by that response.
        """
        if self._wire:
            raise RuntimeError(
                "this SseStream is being sent to a client; it cannot be iterated as well"
            )
        return _StreamEvents(self)

    def _close(self, reason: CloseReason) -> None:
        if self._reason is None:
            self._reason = reason
            self._sender.close()
            self._budget.close()

    def _join_current_run(self) -> None:
        """Be run by the response whose tasks iterate this stream, if it has not run yet."""
        owner = current_run.get()
        if owner is not None and self._state is _NEW:
            owner.adopt(self)

    # -- for the stream runner (this package's _runner.py, the only caller) --------------------

    def _start_run(self, nursery: trio.Nursery, *, wire: bool) -> tuple[Take, ByteBudget]:
        """NEW → RUNNING: start the queued tasks in ``nursery``; how the reader takes what is
        queued (`_take`), and the budget whose bell it waits for.

        ``wire``: the runner writes the buffer to a client, so events are queued as bytes from
        now on (events queued before stay events; `_take` encodes them).
        """
        self._state = next_state(self._state, "start")
        self._nursery = nursery
        self._wire = wire
        pending, self._pending = self._pending, []
        for fn, args in pending:
            nursery.start_soon(fn, *args)
        return self._take, self._budget

    def _take(self, limit: int) -> tuple[bytes, int] | None:
        """Everything queued, up to ``limit`` bytes, as one write, and how many events that is;
        ``None`` if nothing is. Raises ``EndOfChannel`` once the stream is closed and empty.

        The reader waits for the bell next only if this emptied the buffer: it stops at
        ``limit``, or at the buffer's end, with the bell left rung, so the reader looks again
        first. An empty item is the wake after an event that a producer wrote in part
        (``_outlet.py``): the sink sends the rest first, and the event was counted when it was
        written.
        """
        receiver = self._receiver
        budget = self._budget
        try:
            first = receiver.receive_nowait()
        except trio.WouldBlock:
            budget.drained(0, more=False)
            return None
        items: list[SseEvent | bytes] = [first]
        queued = budget.queued  # the bytes of every event queued, ``first`` included
        if queued <= limit:
            # All of it makes one write, the usual case: the budget has counted the bytes, so
            # the items are taken without measuring each (4% of an event's instructions in a
            # burst, ``bench.instructions``).
            more = _receive_all(receiver, items)
            size = queued
        else:
            more, size = _receive_up_to(receiver, items, limit)
        if len(items) == 1:
            data = _encoded(first)
        else:
            try:
                data = b"".join(cast(list[bytes], items))
            except TypeError:  # events queued before the stream ran, not encoded yet
                data = b"".join(map(_encoded, items))
        budget.drained(size, more=more)
        return data, len(items) - (not first)

    def _open_outlet(self, writer: ImmediateWriter, record: Callable[[int, int], None]) -> Outlet:
        """Let producers write events to the client themselves, with ``writer``, while the
        runner's writer waits (``_outlet.py``); ``record`` counts what they write."""
        self._outlet = Outlet(self._budget, self._wake_writer, writer, record)
        return self._outlet

    def _wake_writer(self) -> None:
        """Queue the empty item that wakes the writer to send what a producer's write left
        unsent (``_outlet.py``); it counts for nothing."""
        self._sender.send_nowait(b"")

    def _end_run(self) -> None:
        """RUNNING → ENDING: the response's nursery is being cancelled.

        Marked on the stream so that `send` stops its producers without a checkpoint per event
        (``CancelScope.cancel_called`` reads the clock each time it is asked).
        """
        self._state = next_state(self._state, "end")

    def _finish_run(self, reason: CloseReason) -> list[CloseCallback]:
        """→ FINISHED: close the stream (with ``reason`` unless it was closed before) and hand
        over its callbacks, so that each runs exactly once."""
        self._state = next_state(self._state, "finish")
        self._close(reason)
        callbacks, self._callbacks = self._callbacks, []
        self._pending.clear()
        return callbacks


class _StreamEvents:
    """What iterating an `SseStream` gives: its events, and the stream they come from.

    Its first step hands the stream to the response whose tasks iterate it, if that stream has
    not run yet (see the module docstring).
    """

    __slots__ = ("_budget", "_first", "_receive", "_receive_nowait", "stream")

    def __init__(self, stream: SseStream) -> None:
        self.stream = stream
        # Only a stream that the runner writes out holds bytes, and that one is never iterated.
        self._receive = cast(
            Callable[[], Awaitable[SseEvent]],
            stream._receiver.receive,  # same module: the stream's own buffer
        )
        self._receive_nowait = cast(Callable[[], SseEvent], stream._receiver.receive_nowait)
        self._budget = stream._budget
        self._first = True

    def __aiter__(self) -> _StreamEvents:
        return self

    async def __anext__(self) -> SseEvent:
        if self._first:
            self._first = False
            self.stream._join_current_run()
        try:
            # An event already queued is taken at once: ``receive()`` passes through the
            # scheduler every time, which costs more than the rest of the event's way to the
            # client (bench.costs, "typed events, SseStream source"). Whoever iterates still
            # waits, and so checkpoints, whenever the buffer is empty or its own is full.
            event = self._receive_nowait()
        except trio.WouldBlock:
            try:
                event = await self._receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        self._budget.release(len(event.encode()))
        return event


def _size(item: SseEvent | bytes) -> int:
    """The bytes a buffered item counts for: its encoded size, as queued."""
    return len(_encoded(item))


def _encoded(item: SseEvent | bytes) -> bytes:
    """A buffered item as it goes on the wire."""
    return item if isinstance(item, bytes) else item.encode()


def _receive_all(
    receiver: trio.MemoryReceiveChannel[SseEvent | bytes], items: list[SseEvent | bytes]
) -> bool:
    """Append every item ``receiver`` holds to ``items``; whether the reader must look again
    (the stream is closed, and it finds the end there)."""
    append = items.append
    receive = receiver.receive_nowait
    try:
        while True:
            append(receive())
    except trio.WouldBlock:
        return False
    except trio.EndOfChannel:
        return True


def _receive_up_to(
    receiver: trio.MemoryReceiveChannel[SseEvent | bytes],
    items: list[SseEvent | bytes],
    limit: int,
) -> tuple[bool, int]:
    """Append items to ``items`` (which holds one) until they reach ``limit`` bytes; whether
    the reader must look again, and the bytes taken."""
    size = _size(items[0])
    while size < limit:
        try:
            item = receiver.receive_nowait()
        except trio.WouldBlock:
            return False, size
        except trio.EndOfChannel:
            break
        items.append(item)
        size += _size(item)
    return True, size
