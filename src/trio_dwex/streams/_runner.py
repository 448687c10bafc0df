"""The stream runner: one client's events, in their own nursery, until something ends them.

`run_stream` knows nothing of ASGI or sockets: it writes bytes to an `EventSink`, and the sink
calls it back when the client leaves. The ASGI layer's `EventSourceResponse` is one such sink;
tests use an in-memory one.

Theory of operation. Each stream gets one run (`StreamRun`) and one nursery. In it run:

* the **writer** (the runner's own task): waits for events, coalesces every event that is
  already queued into one write (fewer syscalls when the source is ahead of the socket, and no
  timer, so a lone event goes out at once), sends a keep-alive comment after ``keepalive`` idle
  seconds, and gives up on a client that accepts nothing for ``send_timeout`` seconds;
* the **pump**, for an async-iterable source, which moves items into the run's own bounded
  buffer (so a generator never yields across our cancel scopes, and back-pressure reaches it);
* every task of the `SseStream` the run writes, or that its source iterates (an interceptor
  wrapped the handler's stream: the stream is handed to the run the moment it is iterated);
* a **disconnect watch**, only if the sink cannot call back without one (a server that tells
  of a disconnect only through ASGI ``receive()``); trio-dwex's own server calls back.

Whatever ends the stream (client gone, ``close()``, source exhausted, an error, the lifetime
limit, shutdown) cancels that nursery; then, in this order and exactly once: the async
generator is closed explicitly (so its ``finally`` runs now, not at garbage collection), the
tasks are cancelled and awaited (the nursery's exit does that), and the ``on_close`` callbacks
run.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from typing import Any, Protocol

import trio

from .._errors import StreamClosed
from ._budget import ByteBudget, Take
from ._clock import KeepaliveClock
from ._iterators import pump
from ._lease import StreamLease
from ._outlet import ImmediateWriter, Outlet
from ._queue import EventQueue
from ._settings import StreamSettings
from ._state import CloseReason
from ._stream import CloseCallback, SseStream, current_run
from ._tracker import StreamTracker

__all__ = ["KEEPALIVE_COMMENT", "EventSink", "StreamRun", "TaskStarter", "run_stream"]

logger = logging.getLogger("trio_dwex.streams")

# The pump's task name, made once: given no name, Trio formats one per task, a string that an
# idle stream would keep for its whole life (``python -m bench.memory``).
_PUMP_TASK = f"{pump.__module__}.{pump.__qualname__}"

KEEPALIVE_COMMENT = b": keep-alive\n"


_DEFAULTS = StreamSettings()

# The clock of a run without a tracker: never running, so its writer times its own waits.
_NO_CLOCK = KeepaliveClock()


class TaskStarter(Protocol):
    """``start_soon`` of the stream's nursery: a task started with it ends with the stream."""

    def __call__(self, async_fn: Callable[..., Awaitable[object]], /, *args: Any) -> None: ...


class EventSink(Protocol):
    """Where a stream's bytes go: the ASGI response, or an in-memory sink in tests."""

    async def start(self, first: bytes) -> None:
        """Commit the response headers, followed by ``first``, the body's first bytes (may be
        empty). Called once, before any `write`. A sink that can sends both in one write, so
        the first events reach the client in the headers' packet."""

    async def write(self, data: bytes) -> None:
        """Send bytes to the client; returns when the transport took them."""

    # A sink may also have an ``immediate`` attribute: an `ImmediateWriter` (or ``None``), with
    # which a stream's producer writes an event itself when the writer has nothing else to do
    # (see ``_outlet.py``). Our server's sink has one; without it every event goes through the
    # writer task.

    def notify_disconnect(self, callback: Callable[[], object], start_soon: TaskStarter) -> None:
        """Call ``callback()`` when the client leaves; called once, as the stream starts.

        A transport that tells of a disconnect by calling back hands ``callback`` on. One that
        can only be waited on (ASGI ``receive()`` on most servers) starts a task with
        ``start_soon`` that waits, then calls ``callback``; the task runs in the stream's
        nursery, so it ends with the stream.
        """


class StreamRun:
    """One stream's run from its source to a sink: the engine behind `run_stream`.

    Its state is ``reason``: ``None`` while it runs, then the first reason it was given to end
    (later ones are consequences of that one), and at last the reason it reports. The streams
    it runs (the source, and any its source iterates) follow it through their own states.
    """

    __slots__ = (
        "_deadline_reason",
        "_natural_end",
        "_nursery",
        "_outlet",
        "_settings",
        "_sink",
        "_source",
        "_started",
        "_streams",
        "_tracker",
        "lease",
        "reason",
    )

    def __init__(
        self,
        source: SseStream | AsyncIterable[object],
        sink: EventSink,
        settings: StreamSettings,
        tracker: StreamTracker | None,
        lease: StreamLease | None = None,
    ) -> None:
        self._source = source
        #: Whose the stream is and until when (the tracker counts it, `close_where` reads it).
        self.lease = lease
        self._sink = sink
        self._settings = settings
        self._tracker = tracker
        # What the run reports when the source ends on its own.
        self._natural_end = (
            CloseReason.CLOSED if isinstance(source, SseStream) else CloseReason.COMPLETED
        )
        self._nursery: trio.Nursery | None = None
        # Where the source's producers write events themselves, when the sink lets them.
        self._outlet: Outlet | None = None
        self._streams: list[SseStream] = []
        # Whether the response headers were committed (see `_write`).
        self._started = False
        self.reason: CloseReason | None = None
        # Why the run's deadline ends it: its lifetime, unless `end_at` moved it for another.
        self._deadline_reason = CloseReason.LIFETIME

    # -- what others call: the tracker, the sink's disconnect callback, an iterated stream ----

    def end(self, reason: CloseReason) -> None:
        """Begin to end the run now (its nursery is cancelled); the first reason given stays."""
        if self.reason is None:
            self.reason = reason
        if self._outlet is not None:
            self._outlet.close()
        for stream in self._streams:
            stream._end_run()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _client_gone(self) -> None:
        # A method rather than a ``partial`` of `end`: the sink holds it for the stream's
        # whole life, and a bound method is a quarter of the size.
        self.end(CloseReason.CLIENT_GONE)

    def end_at(self, reason: CloseReason, deadline: float) -> None:
        """End the run at ``deadline`` (Trio time), for ``reason``, unless it ends before.

        How a shutdown spreads its streams' ends over a window (`StreamTracker.close_all`):
        the run's own deadline moves earlier, so no task or timer is added per stream.
        """
        if self._nursery is None or self.reason is not None:
            self.end(reason)
            return
        scope = self._nursery.cancel_scope
        if deadline < scope.deadline:
            self._deadline_reason = reason
            scope.deadline = deadline

    def adopt(self, stream: SseStream) -> None:
        """Run ``stream``, which the source iterates, as part of this run (see `current_run`)."""
        assert self._nursery is not None, "a stream is iterated only by the run's tasks"
        stream._start_run(self._nursery, wire=False)
        self._streams.append(stream)
        if self.reason is not None:
            stream._end_run()

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> CloseReason:
        """Run until something ends the stream; why it ended (see `run_stream`)."""
        settings = self._settings
        failure: BaseException | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    # The nursery's own scope is the run's: a scope of our own around it would
                    # cost every stream another CancelStatus (about 0.7 KiB with its sets).
                    self._nursery = nursery
                    if self._tracker is not None:
                        self._tracker.register(self)
                    if settings.max_lifetime is not None:
                        # Jittered, so that streams opened together do not all end together.
                        lifetime = settings.max_lifetime
                        lifetime *= 1 - settings.lifetime_jitter * random.random()
                        nursery.cancel_scope.deadline = trio.current_time() + lifetime
                    seconds_left = None if self.lease is None else self.lease.seconds_left()
                    if seconds_left is not None:
                        # The lease's end is wall-clock time; the scope's deadline, Trio's.
                        self.end_at(CloseReason.EXPIRED, trio.current_time() + seconds_left)
                    # The run's tasks take it with them as they start: a stream they iterate
                    # is handed to this run. This task needs it no longer than that, and
                    # keeping it would hold a context and its token per open stream.
                    token = current_run.set(self)
                    try:
                        buffer, budget = self._open_source(nursery)
                    finally:
                        current_run.reset(token)
                    self._sink.notify_disconnect(self._client_gone, nursery.start_soon)
                    ended = await self._write_events(buffer, budget)
                    self.end(self._natural_end if ended is None else ended)
            except* StreamClosed as group:
                # A task sent on the stream while it was ending; the stream is over anyway.
                logger.debug("a stream task stopped on a closed stream", exc_info=group)
            except* Exception as group:
                if self._nursery is not None:  # None: opening the nursery failed
                    self.end(CloseReason.ERROR)
                if self._started:
                    logger.error("an SSE stream failed and was closed", exc_info=group)
                else:
                    failure = group
            if failure is not None:
                raise _single(failure)
            self._conclude()
            if self._started and self.reason in _FAREWELL_REASONS:
                await self._farewell()
            if not self._started:
                # Ended before any event (shutdown, lifetime, an empty source): still a valid,
                # empty event stream rather than no response at all.
                await self._write(b"")
            assert self.reason is not None  # _conclude gave one
            return self.reason
        finally:
            reason = self.reason or CloseReason.ERROR  # None: cancelled from outside
            if self._tracker is not None and self._nursery is not None:
                self._tracker.unregister(self, reason)
            for stream in self._streams:
                await _run_close_callbacks(stream._finish_run(reason), settings.close_timeout)

    def _open_source(self, nursery: trio.Nursery) -> tuple[Take, ByteBudget]:
        """Start the source in ``nursery``; how the writer takes from its buffer, and the
        buffer's budget (whose bell the writer waits for)."""
        source = self._source
        immediate = self._immediate_writer()
        tracker = self._tracker
        record = _discard if tracker is None else tracker.record_sent
        if isinstance(source, SseStream):
            take, budget = source._start_run(nursery, wire=True)
            self._streams.append(source)
            if immediate is not None:
                self._outlet = source._open_outlet(immediate, record)
            return take, budget
        queue = EventQueue(self._settings.buffer_size, self._settings.buffer_bytes)
        if immediate is not None:
            self._outlet = Outlet(queue, queue.wake, immediate, record)
        nursery.start_soon(pump, source, queue, self, self._outlet, name=_PUMP_TASK)
        return queue.take, queue

    def _immediate_writer(self) -> ImmediateWriter | None:
        """The sink's writer for producers that write events themselves, if they may.

        Not when the route merges events (`merge_window`): those wait to share a write.
        """
        if self._settings.merge_window is not None:
            return None
        immediate: ImmediateWriter | None = getattr(self._sink, "immediate", None)
        return immediate

    def _conclude(self) -> None:
        """Settle the reason the run reports, once its nursery is done."""
        if self.reason is None:
            # Only our own deadline cancels without giving a reason.
            self.reason = self._deadline_reason
        if any(stream.close_reason is CloseReason.OVERFLOW for stream in self._streams):
            self.reason = CloseReason.OVERFLOW

    async def _farewell(self) -> None:
        """Tell a client whose stream a shutdown ended when to come back: a ``retry`` field
        drawn from ``farewell_retry`` ± half, so that the clients of a server going away do not
        all reconnect, to the others, in the same second."""
        retry = self._settings.farewell_retry
        if retry is None:
            return
        milliseconds = round(retry * 1000 * (0.5 + random.random()))
        farewell = b"retry: %d\n\n" % milliseconds
        if await self._write(farewell) and self._tracker is not None:
            self._tracker.record_sent(0, len(farewell))

    async def _write(self, data: bytes) -> bool:
        """Write ``data``, committing the headers first if needed; ``False``: a stalled client."""
        settings = self._settings
        if not self._started:
            self._started = True
            # Committing the headers must not be cut short. A cancellation (the source failed,
            # the client left, shutdown) landing inside the server's send leaves Hypercorn's
            # HTTPStream sure that no response began while h11 already sent one; Hypercorn's
            # fallback 500 then raises LocalProtocolError out of the connection and takes the
            # whole server down. Shielded, the cancellation takes effect right after; the
            # deadline keeps a client that accepts nothing from pinning the stream.
            # The first bytes go with the headers, under the same shield: a write our server
            # makes never waits (``serving/_direct.py``) but on the bounded slow path, and on
            # another server the deadline is the same ``send_timeout`` as every write's.
            deadline = trio.current_time() + settings.send_timeout
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                await self._sink.start(data)
            return not (scope.cancelled_caught or self._missed(deadline))
        if not data:
            return True
        with trio.move_on_after(settings.send_timeout) as timer:
            await self._sink.write(data)
        return not (timer.cancelled_caught or self._missed(timer.deadline))

    def _missed(self, deadline: float) -> bool:
        """Whether a write that returned had missed ``deadline``, and the client left for it.

        Our server cannot cut a write short halfway (the shield keeps frames whole), so when a
        write misses its writer's deadline it aborts the connection instead, and the stream
        hears of it as a client gone. The client was too slow: the run says so.
        """
        if self.reason is CloseReason.CLIENT_GONE and trio.current_time() >= deadline:
            self.reason = CloseReason.SLOW_CLIENT
            return True
        return False

    async def _write_events(self, take: Take, budget: ByteBudget) -> CloseReason | None:
        """Move events from the buffer to the client. Returns early with a reason.

        What is taken out is released to ``budget`` once per write, before it is written: the
        buffer's bound is on what waits there, and a write holds at most ``max_batch_bytes``
        (plus one event) more.
        """
        settings = self._settings
        sink = self._sink
        limit = settings.max_batch_bytes
        tracker = self._tracker
        record = _discard if tracker is None else tracker.record_sent
        # Hold the headers back briefly: a source that fails at once then gets a real HTTP
        # error, and the first event usually leaves in the same packet as the headers.
        first, count = b"", 0
        with trio.move_on_after(settings.first_event_wait):
            taken = None
            while taken is None:
                if not budget.rung:
                    await budget.wait_for_ring()
                try:
                    taken = take(limit)
                except trio.EndOfChannel:
                    return None
            first, count = taken
        if not await self._write(first):
            return CloseReason.SLOW_CLIENT
        record(count, len(first))
        # Whether the first event is still to come (it is told to the tracker, once).
        awaiting_first = count == 0
        if not awaiting_first and tracker is not None:
            tracker.record_first_event(self)
        idle = math.inf if settings.keepalive is None else settings.keepalive
        send_timeout = settings.send_timeout
        merge_window = settings.merge_window
        outlet = self._outlet
        # The writer waits for events without a timer of its own: the app's clock rings its
        # bell when a keep-alive may be due (``_clock.py``), and a write has a deadline only
        # while it is written.
        clock = _NO_CLOCK if tracker is None else tracker.clock
        alarm = clock.alarm(budget)
        # When a keep-alive is due, unless the stream writes before; and whether the next wait
        # for events follows a write of ours (then it is the last write the outlet counts from).
        due = trio.current_time() + idle
        after_write = True
        try:
            while True:
                if budget.rung:
                    # Queued while we wrote: a checkpoint, as a trio channel's receive() makes,
                    # then it all goes in one write.
                    after_write = True
                    await trio.lowlevel.checkpoint()
                else:
                    try:
                        if outlet is not None and not awaiting_first:
                            # Producers may write for us while we wait (``_outlet.py``).
                            outlet.open(trio.current_time() if after_write else None)
                        after_write = True
                        if clock.running:
                            if due < math.inf:
                                clock.set(alarm, due)
                            await budget.wait_for_ring()
                        else:
                            with trio.CancelScope(deadline=due):
                                await budget.wait_for_ring()
                    finally:
                        if outlet is not None:
                            outlet.close()
                try:
                    taken = take(limit)
                except trio.EndOfChannel:
                    return None
                if taken is None:
                    # The bell rang for what an earlier write took, or for the clock.
                    now = trio.current_time()
                    if now < due:
                        continue
                    if outlet is not None and outlet.last_write + idle > now:
                        # Events a producer wrote itself count as traffic: a keep-alive only
                        # once the stream has been quiet for the whole interval.
                        due = outlet.last_write + idle
                        after_write = False
                        continue
                    if not await self._write(KEEPALIVE_COMMENT):
                        return self._slow_client()
                    record(0, len(KEEPALIVE_COMMENT))
                    due = trio.current_time() + idle
                    continue
                data, count = taken
                with trio.move_on_after(send_timeout) as timer:
                    if merge_window is not None and not _flushes(data):
                        data, count = await _merge(data, count, take, budget, merge_window, limit)
                    await sink.write(data)
                if timer.cancelled_caught:
                    return self._slow_client()
                record(count, len(data))
                if awaiting_first:
                    awaiting_first = False
                    if tracker is not None:
                        tracker.record_first_event(self)
                if self.reason is not None and self._missed(timer.deadline):
                    return self._slow_client()
                due = trio.current_time() + idle
        finally:
            clock.release(alarm)

    def _slow_client(self) -> CloseReason:
        logger.info(
            "dropping an SSE client that accepted nothing for %ss (send_timeout)",
            self._settings.send_timeout,
        )
        return CloseReason.SLOW_CLIENT


#: The ends after which the client is told when to reconnect: a shutdown ends many streams at
#: once, and so may an expiry or a revocation (every token issued at 9:00 expires at 10:00; a
#: role change revokes a thousand streams). A stream's own ``max_lifetime`` is jittered
#: instead, and its client should come back at once, to another server.
_FAREWELL_REASONS = frozenset({CloseReason.SHUTDOWN, CloseReason.EXPIRED, CloseReason.REVOKED})


def run_stream(
    source: SseStream | AsyncIterable[object],
    sink: EventSink,
    settings: StreamSettings = _DEFAULTS,
    tracker: StreamTracker | None = None,
    lease: StreamLease | None = None,
) -> Coroutine[Any, Any, CloseReason]:
    """Run one client's stream from ``source`` to ``sink`` until something ends it: await it.

    ``source`` is an `SseStream`, or an async iterable whose items `to_event` turns into
    events (`SseEvent`, a mapping of its fields, or plain data). An `SseStream` that the
    source iterates (an interceptor wrapped the handler's stream) is run with it: its tasks
    start in this stream's nursery and its ``on_close`` callbacks run at the end.

    An exception raised by the source (or a task of its stream) before the headers were
    committed propagates, so the caller can answer with a proper HTTP error. Once the headers
    are out, such an exception is logged with its traceback and ends this stream only.

    ``lease`` says whose the stream is (``tracker`` counts it by owner and client) and when
    it must end at the latest (`StreamLease.expire_at`).

    Returns why the stream ended.
    """
    # Not ``async def``: the run's own coroutine is what the caller awaits. Every time the
    # writer is resumed, Python walks the chain of awaiting frames down to it, so a frame
    # less here is CPU saved per event on a sparse stream, and memory per open stream.
    return StreamRun(source, sink, settings, tracker, lease).run()


async def _merge(
    data: bytes, count: int, take: Take, budget: ByteBudget, window: float, limit: int
) -> tuple[bytes, int]:
    """``data`` (``count`` events) with the events that arrive within ``window`` seconds, up to
    ``limit`` bytes; a named event, a comment or the end of the buffer ends the wait at once."""
    parts = [data]
    size = len(data)
    with trio.move_on_after(window):
        while size < limit:
            if not budget.rung:
                await budget.wait_for_ring()
            try:
                taken = take(limit - size)
            except trio.EndOfChannel:
                break  # the source ended: what waits goes now, and the next take ends
            if taken is None:
                continue
            more, more_count = taken
            parts.append(more)
            size += len(more)
            count += more_count
            if _flushes(more):
                break
    return b"".join(parts), count


def _flushes(data: bytes) -> bool:
    """Whether encoded events must go out now: one of them is a comment or a named event.

    `SseEvent.encode` writes comments, then ``event:``, first; an event ends with a blank
    line, and nothing inside one does, so a blank line followed by either starts one.
    """
    return data.startswith((b":", b"event:")) or b"\n\nevent:" in data or b"\n\n:" in data


def _discard(events: int, size: int) -> None:
    """Where a run without a tracker records what it wrote."""


def _single(group: BaseException) -> BaseException:
    """The one exception inside nested single-member groups, so callers can match its type."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group


async def _run_close_callbacks(callbacks: list[CloseCallback], close_timeout: float) -> None:
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
