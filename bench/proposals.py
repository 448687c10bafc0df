"""Prototypes of speed-ups, applied only inside a benchmark server process (never on import).

They are measured as extra rows (``python -m bench --proposals``) next to the code as it is,
so each change's gain is a ratio measured side by side. None of this is imported by trio-dwex;
the changes themselves belong in ``src/`` (see ``docs/performance.md``).

1. `coalescing_producers`: the producers stop yielding to the scheduler while the stream's
   buffer has room. Today every ``SseStream.send`` (and the pump's send for an async
   generator) is a schedule point, so producer and writer alternate one event at a time and
   the runner's coalescing never finds a second event queued: one ASGI send per event. With
   ``send_nowait`` first, a producer that is ahead of the socket fills the buffer, and the
   writer takes everything queued in one write. ``send`` stays a cancel point; it becomes a
   schedule point only when the buffer is full, so a busy producer yields at least every
   ``buffer_size`` events. A source that awaits anything between events (a sparse source)
   still sends each event at once: no timer, no waiting for a batch.

2. `fast_send_lock`: Hypercorn's ``TCPServer.protocol_send`` takes ``send_lock`` with
   ``async with``; ``trio.Lock.acquire`` is a schedule point even when the lock is free, and
   ``send_all`` right after it is one again. Taking a free lock with ``acquire_nowait`` (after
   a ``checkpoint_if_cancelled``, so the call is still a cancel point) saves one pass through
   Trio's scheduler per write; ``send_all`` remains the schedule point.
"""

from __future__ import annotations

from typing import Any

import trio


def coalescing_producers() -> None:
    from trio_dwex.errors import StreamClosed
    from trio_dwex.streams.stream import SseStream
    from trio_dwex.wire.sse import to_event

    async def send(self: SseStream, event: object) -> None:
        message = to_event(event)
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise StreamClosed("cannot send on a closed SseStream; check stream.is_closed first")
        try:
            self._sender.send_nowait(message)
        except trio.WouldBlock:
            pass
        except trio.ClosedResourceError:
            await trio.lowlevel.checkpoint()
            raise StreamClosed("cannot send on a closed SseStream") from None
        else:
            # A cancel point, but not a schedule point: the writer runs when this producer
            # waits for something (its next event, or room in a full buffer).
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        try:
            await self._sender.send(message)
        except trio.ClosedResourceError:
            raise StreamClosed(
                "the SseStream was closed while send() waited for buffer room"
            ) from None

    # The pump of an async-generator route sends through SseStream.send too, so this one
    # change covers both routes.
    SseStream.send = send  # type: ignore[method-assign]


def fast_send_lock(server_class: Any) -> Any:
    """A subclass of Hypercorn's ``TCPServer`` (or of our ``_DwexTCPServer``) whose writes take
    a free ``send_lock`` without a schedule point. The locked part is the parent's, verbatim."""
    from hypercorn.events import Closed, RawData

    dwex = hasattr(server_class, "_send_all_with_progress_deadline")

    class FastLockTCPServer(server_class):  # type: ignore[misc, valid-type]
        async def protocol_send(self, event: Any) -> None:
            if not isinstance(event, RawData) or self.send_lock.locked():
                await super().protocol_send(event)
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            self.send_lock.acquire_nowait()
            try:
                if dwex:
                    await self._dwex_locked_send(event.data)
                else:
                    await self._upstream_locked_send(event.data)
            finally:
                self.send_lock.release()

        async def _upstream_locked_send(self, data: bytes) -> None:
            # hypercorn/trio/tcp_server.py, TCPServer.protocol_send, inside the lock.
            try:
                with trio.CancelScope() as cancel_scope:
                    cancel_scope.shield = True
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self.protocol.handle(Closed())

        async def _dwex_locked_send(self, data: bytes) -> None:
            # trio_dwex/serving/_hypercorn.py, _DwexTCPServer.protocol_send, inside the lock.
            try:
                sent = await self._send_all_with_progress_deadline(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._connection_lost(abort=False)
                return
            if not sent:
                await self._connection_lost(abort=True)

    return FastLockTCPServer
