"""The stream runner: one client's events, in their own nursery, until something ends them.

`run_stream` knows nothing of ASGI or sockets: it writes bytes to an `EventSink` and learns
from it that the client left. The ASGI layer's `EventSourceResponse` is one such sink; tests
use an in-memory one.

Theory of operation. Each stream gets one nursery. In it run:

* the **writer** (the runner's own task): waits for events, coalesces every event that is
  already queued into one write (fewer syscalls when the source is ahead of the socket, and no
  timer, so a lone event goes out at once), sends a keep-alive comment after ``keepalive`` idle
  seconds, and gives up on a client that accepts nothing for ``send_timeout`` seconds;
* the **disconnect watch**, which cancels the nursery the moment the client leaves (no task
  when the sink can call back instead: trio-dwex's own server tells an ASGI response so,
  which saves each idle stream a parked task);
* the **pump**, for an async-iterable source, which moves items into a bounded `SseStream`
  (so a generator never yields across our cancel scopes, and back-pressure reaches it);
* every task the handler started with `SseStream.start_soon`.

Whatever ends the stream (client gone, ``close()``, source exhausted, an error, the lifetime
limit, shutdown) cancels that nursery; then, in this order and exactly once: the async
generator is closed explicitly (so its ``finally`` runs now, not at garbage collection), the
tasks are cancelled and awaited (the nursery's exit does that), and the ``on_close`` callbacks
run.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypedDict

import trio

from .._errors import StreamClosed
from ..wire._sse import SseEvent, to_event
from ._stream import DEFAULT_BUFFER_SIZE, OverflowPolicy, SseStream

__all__ = [
    "CloseReason",
    "EventSink",
    "StreamSettings",
    "StreamStats",
    "StreamTracker",
    "aclose_iterator",
    "run_stream",
]

logger = logging.getLogger("trio_dwex.streams")

KEEPALIVE_COMMENT = b": keep-alive\n\n"

#: How many events a closing async generator may still yield (inside ``finally``) before the
#: runner gives up on it. Those events are discarded: their client is gone.
MAX_YIELDS_WHILE_CLOSING = 100


class CloseReason(enum.Enum):
    """Why a stream ended; `StreamTracker` counts them."""

    #: The async-iterable source was exhausted.
    COMPLETED = "completed"
    #: ``SseStream.close()`` was called and the queued events were delivered.
    CLOSED = "closed"
    #: The client disconnected.
    CLIENT_GONE = "client_gone"
    #: The client accepted no bytes for ``send_timeout`` seconds.
    SLOW_CLIENT = "slow_client"
    #: ``send_nowait`` found the buffer full under `OverflowPolicy.CLOSE`.
    OVERFLOW = "overflow"
    #: The stream reached ``max_lifetime``; the client reconnects (and may land elsewhere).
    LIFETIME = "lifetime"
    #: The server is shutting down.
    SHUTDOWN = "shutdown"
    #: The source or one of the stream's tasks raised.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How a stream behaves; every timeout and buffer of the runner is here.

    Attributes:
        keepalive: seconds without an event after which a ``: keep-alive`` comment is sent, so
            proxies and load balancers do not close an idle connection. ``None`` disables it.
        send_timeout: seconds a client may take to accept a write before it is dropped. A
            stalled client otherwise pins the stream (and its memory) for ever.
        buffer_size: events buffered per stream between the producer and the socket.
        overflow: what ``SseStream.send_nowait`` does when that buffer is full.
        first_event_wait: seconds the runner waits for the first event before it commits the
            response headers. An error raised within that time becomes a proper HTTP error
            response; a slower source still gets its headers after this long.
        max_lifetime: seconds after which the stream is closed so that the client reconnects
            (how long-lived streams rebalance across servers). ``None``: no limit.
        close_timeout: seconds that ``on_close`` callbacks get, in total, to finish.
        max_batch_bytes: upper bound on the bytes coalesced into one write.
    """

    keepalive: float | None = 15.0
    send_timeout: float = 30.0
    buffer_size: int = DEFAULT_BUFFER_SIZE
    overflow: OverflowPolicy = OverflowPolicy.CLOSE
    first_event_wait: float = 0.2
    max_lifetime: float | None = None
    close_timeout: float = 5.0
    max_batch_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("send_timeout", "first_event_wait", "close_timeout"):
            _check_seconds(name, getattr(self, name), allow_none=False)
        for name in ("keepalive", "max_lifetime"):
            _check_seconds(name, getattr(self, name), allow_none=True)
        for name in ("buffer_size", "max_batch_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"stream setting {name} must be a positive int, got {value!r}")
        if not isinstance(self.overflow, OverflowPolicy):
            raise ValueError(
                f"stream setting overflow must be an OverflowPolicy, got {self.overflow!r}"
            )


def _check_seconds(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        hint = " or None to disable it" if allow_none else ""
        raise ValueError(
            f"stream setting {name} must be a positive number of seconds{hint}, got {value!r}"
        )


class EventSink(Protocol):
    """Where a stream's bytes go: the ASGI response, or an in-memory sink in tests."""

    async def start(self) -> None:
        """Commit the response headers. Called once, before the first `write`."""

    async def write(self, data: bytes) -> None:
        """Send bytes to the client; returns when the transport took them."""

    async def wait_disconnect(self) -> None:
        """Return when the client has gone."""

    def notify_disconnect(self, callback: Callable[[], object]) -> bool:
        """Arrange for ``callback()`` when the client leaves, if the sink can without a task.

        ``True``: it will (and `wait_disconnect` is not called); ``False``: it cannot, and the
        runner waits in `wait_disconnect` in a task of the stream instead.
        """


class _StreamState:
    """The first reason given wins: later ones are consequences of it."""

    __slots__ = ("reason", "scope", "streams")

    def __init__(self, scope: trio.CancelScope, streams: tuple[SseStream, ...]) -> None:
        # The stream's nursery's own scope: a scope of our own around it would cost every
        # stream another CancelStatus (about 0.7 KiB with its sets) for nothing.
        self.scope = scope
        self.reason: CloseReason | None = None
        self.streams = streams

    def end(self, reason: CloseReason) -> None:
        if self.reason is None:
            self.reason = reason
        # Marked on the streams so that their producers can stop without a checkpoint per
        # event (``CancelScope.cancel_called`` reads the clock each time it is asked).
        for stream in self.streams:
            stream._ending = True
        self.scope.cancel()


class StreamStats(TypedDict):
    """What `StreamTracker.stats` (and ``DwexApp.stats()``) returns: plain JSON-able values."""

    #: Streams running now.
    open: int
    #: Streams started since the tracker was made.
    opened: int
    #: Streams ended, keyed by `CloseReason` value (every reason present, 0 if none).
    closed: dict[str, int]


class StreamTracker:
    """Counts an app's streams by outcome, and ends them all at shutdown.

    Attributes:
        opened: streams started since the tracker was made.
        closed: streams ended, by `CloseReason`.
    """

    def __init__(self) -> None:
        self.opened = 0
        self.closed: Counter[CloseReason] = Counter()
        self._open: set[_StreamState] = set()
        self._shutting_down = False

    @property
    def open_count(self) -> int:
        """Streams running now."""
        return len(self._open)

    @property
    def shutting_down(self) -> bool:
        """True once `close_all` was called; new streams are refused from then on."""
        return self._shutting_down

    def close_all(self) -> None:
        """End every open stream (reason `CloseReason.SHUTDOWN`) and refuse new ones."""
        self._shutting_down = True
        for state in list(self._open):
            state.end(CloseReason.SHUTDOWN)

    def accept_new(self) -> None:
        """Accept new streams again after `close_all` (an app served again, as in tests)."""
        self._shutting_down = False

    def stats(self) -> StreamStats:
        """A JSON-able snapshot, for a metrics endpoint or a test."""
        return {
            "open": self.open_count,
            "opened": self.opened,
            "closed": {reason.value: self.closed[reason] for reason in CloseReason},
        }


async def run_stream(
    source: SseStream | AsyncIterable[object],
    sink: EventSink,
    settings: StreamSettings = StreamSettings(),
    tracker: StreamTracker | None = None,
    *,
    owner: SseStream | None = None,
) -> CloseReason:
    """Run one client's stream from ``source`` to ``sink`` until something ends it.

    ``source`` is an `SseStream`, or an async iterable whose items `to_event` turns into
    events (`SseEvent`, a mapping of its fields, or plain data).

    An exception raised by the source (or a task of its stream) before the headers were
    committed propagates, so the caller can answer with a proper HTTP error. Once the headers
    are out, such an exception is logged with its traceback and ends this stream only.

    ``owner`` is the `SseStream` a handler returned when ``source`` wraps its events (an
    interceptor mapped them): its tasks run in this stream's nursery and its ``on_close``
    callbacks run at the end, as if it were the source.

    Returns why the stream ended.
    """
    if isinstance(source, SseStream):
        stream = source
        natural_end = CloseReason.CLOSED
    else:
        stream = SseStream(buffer_size=settings.buffer_size, overflow=settings.overflow)
        natural_end = CloseReason.COMPLETED
    owner = owner or stream
    # From now on the buffer holds the events' bytes (see SseStream._wire); events queued
    # before the stream ran are still events, and the writer takes both.
    stream._wire = True
    started = False

    async def write(data: bytes) -> bool:
        nonlocal started
        if not started:
            started = True
            # Committing the headers must not be cut short. A cancellation (the source failed,
            # the client left, shutdown) landing inside the server's send leaves Hypercorn's
            # HTTPStream sure that no response began while h11 already sent one; Hypercorn's
            # fallback 500 then raises LocalProtocolError out of the connection and takes the
            # whole server down. Shielded, the cancellation takes effect right after; the
            # deadline keeps a client that accepts nothing from pinning the stream.
            deadline = trio.current_time() + settings.send_timeout
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                await sink.start()
            if scope.cancelled_caught:
                return False
        if not data:
            return True
        with trio.move_on_after(settings.send_timeout) as timer:
            await sink.write(data)
        return not timer.cancelled_caught

    streams = (stream,) if owner is stream else (stream, owner)
    state: _StreamState | None = None
    failure: BaseException | None = None
    try:
        try:
            async with trio.open_nursery() as nursery:
                state = _StreamState(nursery.cancel_scope, streams)
                if tracker is not None:
                    tracker.opened += 1
                    tracker._open.add(state)
                if settings.max_lifetime is not None:
                    state.scope.deadline = trio.current_time() + settings.max_lifetime
                owner._attach(nursery)
                if owner is not stream:
                    stream._attach(nursery)
                if not isinstance(source, SseStream):
                    nursery.start_soon(_pump, source, stream)
                if not sink.notify_disconnect(partial(state.end, CloseReason.CLIENT_GONE)):
                    nursery.start_soon(_watch_disconnect, sink, state)
                reason = await _write_events(stream, sink, write, settings)
                state.end(natural_end if reason is None else reason)
        except* StreamClosed as group:
            # A task sent on the stream while it was ending; the stream is over anyway.
            logger.debug("a stream task stopped on a closed stream", exc_info=group)
        except* Exception as group:
            if state is not None:  # None: opening the nursery failed
                state.end(CloseReason.ERROR)
            if started:
                logger.error("an SSE stream failed and was closed", exc_info=group)
            else:
                failure = group
        assert state is not None  # made first thing in the nursery, which cannot fail
        if failure is not None:
            raise _single(failure)
        if state.reason is None:
            # Only our own deadline cancels without giving a reason.
            state.reason = CloseReason.LIFETIME
        if stream._overflowed or owner._overflowed:
            state.reason = CloseReason.OVERFLOW
        if not started:
            # Ended before any event (shutdown, lifetime, an empty source): still a valid,
            # empty event stream rather than no response at all.
            await write(b"")
        return state.reason
    finally:
        if tracker is not None and state is not None:
            tracker._open.discard(state)
            tracker.closed[state.reason or CloseReason.ERROR] += 1
        if owner is not stream:
            await _run_close_callbacks(stream, settings.close_timeout)
        await _run_close_callbacks(owner, settings.close_timeout)


async def _write_events(
    stream: SseStream,
    sink: EventSink,
    write: _Write,
    settings: StreamSettings,
) -> CloseReason | None:
    """Move events from the stream's buffer to the client. Returns early with a reason."""
    receiver = stream._receiver
    limit = settings.max_batch_bytes
    # Hold the headers back briefly: a source that fails at once then gets a real HTTP error,
    # and the first event usually leaves in the same packet as the headers.
    first = b""
    with trio.move_on_after(settings.first_event_wait):
        try:
            item = await receiver.receive()
            first = _coalesce(item if isinstance(item, bytes) else item.encode(), receiver, limit)
        except trio.EndOfChannel:
            return None
    if not await write(first):
        return CloseReason.SLOW_CLIENT
    idle = math.inf if settings.keepalive is None else settings.keepalive
    send_timeout = settings.send_timeout
    while True:
        # One timer serves the whole loop: its deadline is the keep-alive interval while we
        # wait for events and the send timeout while a write is in progress. Moving a deadline
        # costs about half of entering a fresh cancel scope per wait and per write, and on a
        # sparse stream (one event per write) those scopes cost more than our own work.
        writing = False
        with trio.CancelScope() as timer:
            while True:
                timer.deadline = trio.current_time() + idle
                try:
                    item = await receiver.receive()
                except trio.EndOfChannel:
                    return None
                writing = True
                timer.deadline = trio.current_time() + send_timeout
                data = item if isinstance(item, bytes) else item.encode()
                await sink.write(_coalesce(data, receiver, limit))
                writing = False
        if writing or not await write(KEEPALIVE_COMMENT):
            logger.info(
                "dropping an SSE client that accepted nothing for %ss (send_timeout)",
                settings.send_timeout,
            )
            return CloseReason.SLOW_CLIENT


class _Write(Protocol):
    async def __call__(self, data: bytes, /) -> bool: ...


def _coalesce(
    first: bytes, receiver: trio.MemoryReceiveChannel[SseEvent | bytes], limit: int
) -> bytes:
    """``first`` plus every event already queued, up to ``limit`` bytes: one write, not many."""
    parts = [first]
    size = len(first)
    while size < limit:
        try:
            item = receiver.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        data = item if isinstance(item, bytes) else item.encode()
        parts.append(data)
        size += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _single(group: BaseException) -> BaseException:
    """The one exception inside nested single-member groups, so callers can match its type."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group


async def _watch_disconnect(sink: EventSink, state: _StreamState) -> None:
    await sink.wait_disconnect()
    state.end(CloseReason.CLIENT_GONE)


async def _pump(source: AsyncIterable[object], stream: SseStream) -> None:
    """Move a source's items into the stream's buffer; always finish the source explicitly."""
    iterator = aiter(source)
    next_item = iterator.__anext__
    offer = stream._sender.send_nowait
    finished = False
    try:
        while True:
            try:
                item = await next_item()
            except StopAsyncIteration:
                finished = True
                break
            if stream._ending:
                # The stream was cancelled while the generator ran, and it yielded anyway:
                # typically from a ``finally`` that Cancelled is passing through. Resume it
                # once so that it can finish that cleanup instead of being cut short at the
                # yield; if it yields again, it is a loop that never awaits: close it.
                # (A flag rather than ``checkpoint_if_cancelled()``, which costs as much as
                # queueing the event; a cancellation from further out, or the lifetime
                # deadline, reaches us at the next real checkpoint, at the latest when the
                # buffer is full.)
                finished = True
                await _resume_once_then_close(iterator)
                await trio.lowlevel.checkpoint()  # raises the Cancelled
            event = item if type(item) is SseEvent else to_event(item)
            try:
                offer(event.encode())  # the stream is ours: nobody else closes it while we run
            except trio.WouldBlock:
                await stream.send(event)  # the buffer is full: wait for room
    finally:
        if not finished:
            await aclose_iterator(iterator)
    stream.close()


async def _resume_once_then_close(iterator: AsyncIterator[object]) -> None:
    try:
        await anext(iterator)
    except StopAsyncIteration:
        return
    await aclose_iterator(iterator)


async def aclose_iterator(iterator: AsyncIterator[Any]) -> None:
    """Close an async iterator now, like ``aclose()``, even a generator that yields while closing.

    ``GeneratorExit`` is thrown in at the generator's current ``yield`` (what ``aclose()``
    does); if it yields anyway, it is resumed until it is done, and what it still yields is
    discarded: its client is gone. Plain ``aclose()`` would instead raise ``RuntimeError`` at
    the first such yield (the guide's error-handling example does ``finally: yield end``).
    Use it wherever you wrap a stream's source in your own async generator (an interceptor,
    say) and must close the inner one in your ``finally``.

    This runs in whatever cancellation state the caller is in, as any Trio cleanup does: a
    ``finally`` that must still await after a disconnect shields itself
    (``with trio.CancelScope(shield=True): ...``).
    """
    athrow = getattr(iterator, "athrow", None)
    if athrow is None:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
        return
    try:
        await athrow(GeneratorExit)
    except (GeneratorExit, StopAsyncIteration):
        return
    logger.debug("discarded an event yielded by a closing stream generator")
    for _ in range(MAX_YIELDS_WHILE_CLOSING):
        try:
            await anext(iterator)
        except (GeneratorExit, StopAsyncIteration):
            return
        logger.debug("discarded an event yielded by a closing stream generator")
    raise RuntimeError(
        f"the stream's async generator yielded more than {MAX_YIELDS_WHILE_CLOSING} events "
        "while being closed; make its finally block finish"
    )


async def _run_close_callbacks(stream: SseStream, close_timeout: float) -> None:
    callbacks = stream._take_callbacks()
    if not callbacks:
        return
    # Shielded: cleanup must run even when the stream ended by cancellation (a disconnect, a
    # shutdown), and it is bounded by its own deadline so that it cannot hang a shutdown.
    with trio.CancelScope(shield=True, deadline=trio.current_time() + close_timeout) as scope:
        for callback in callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("an SSE stream's on_close callback %r raised", callback)
    if scope.cancelled_caught:
        logger.warning("on_close callbacks did not finish within close_timeout=%ss", close_timeout)
