"""Async iterators under a stream: the pump that moves a source's items into the buffer, and
`aclose_iterator`, which finishes a generator now rather than at garbage collection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol

import trio

from ..wire._sse import SseEvent, to_event
from ._outlet import Outlet
from ._queue import EventQueue
from ._state import CloseReason

__all__ = ["MAX_YIELDS_WHILE_CLOSING", "Ending", "aclose_iterator", "pump"]

logger = logging.getLogger("trio_dwex.streams")

#: How many events a closing async generator may still yield (inside ``finally``) before the
#: runner gives up on it. Those events are discarded: their client is gone.
MAX_YIELDS_WHILE_CLOSING = 100


class Ending(Protocol):
    """What the pump reads of its stream's run: ``reason`` is set once the run is ending."""

    @property
    def reason(self) -> CloseReason | None: ...


async def pump(
    source: AsyncIterable[object],
    queue: EventQueue,
    run: Ending,
    outlet: Outlet | None = None,
) -> None:
    """Move a source's items, encoded, into ``queue``; always finish the source explicitly.

    The queue is the run's own, so nobody else closes it while this runs; it is closed when
    the source is exhausted, which ends the run once the writer has sent the rest. The source
    waits while the queue is full, in events or in bytes. With an ``outlet``, an item that it
    writes to the client at once skips the queue.
    """
    iterator = aiter(source)
    put = queue.put
    finished = False
    try:
        async for item in iterator:
            if run.reason is not None:
                # The stream was cancelled while the generator ran, and it yielded anyway:
                # typically from a ``finally`` that Cancelled is passing through. Resume it
                # once so that it can finish that cleanup instead of being cut short at the
                # yield; if it yields again, it is a loop that never awaits: close it.
                # (An attribute rather than ``checkpoint_if_cancelled()``, which costs as much
                # as queueing the event; a cancellation from further out, or the lifetime
                # deadline, reaches us at the next real checkpoint, at the latest when the
                # buffer is full.)
                finished = True
                await _resume_once_then_close(iterator)
                await trio.lowlevel.checkpoint()  # raises the Cancelled
            data = (item if type(item) is SseEvent else to_event(item)).encode()
            if outlet is not None and outlet.accepting and outlet.offer(data):
                continue
            if not put(data):
                await queue.put_waiting(data)  # the queue is full: wait for room
        finished = True
    finally:
        if not finished:
            await aclose_iterator(iterator)
    queue.close()  # rings the writer, which finds the end once it has sent the rest


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
