"""Hypercorn's keep-alive timer as a deadline on the connection's read, instead of a task.

Upstream closes a connection that has had no request in progress for
``config.keep_alive_timeout`` seconds, and closes idle connections at once when the worker
shuts down. It does both with a task: each time a connection goes idle, ``TCPServer`` calls
``idle_task.restart(...)``, a ``TrioSingleTask`` that takes a lock and starts a task through
``nursery.start`` (a nursery, a task and several scheduler passes); each request calls
``idle_task.stop()``, which cancels it. A connection that serves one request goes idle twice
(at accept and after its response), so it pays for two such tasks. Without them a short
connection costs our server about 12% less CPU (``python -m bench.profile dwex --streams 500
--events 2``, docs/performance.md).

Our reader (`_DwexTCPServer._read_data`) already waits on the socket for the whole time a
connection is idle, inside a cancel scope of its own. `IdleDeadline` makes the timer that
scope's deadline: ``restart`` sets it, ``stop`` lifts it. When it passes, the read ends as if
the client had gone, and the connection closes the way it always does (the protocol hears
``Closed()``, the socket gets its FIN). A connection busy with a request (a stream, however
long) has no deadline, and so costs no timer.

Shutdown: upstream's idle task also waits on ``context.terminated``. Here the worker's context
is a `DwexWorkerContext`, whose ``terminated`` event (`TerminatedEvent`) knows the read scopes
of the connections idle at that moment and cancels them when it is set; a connection that goes
idle later, during the graceful shutdown, sees the event already set and closes at once, as
upstream's does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio
from hypercorn.trio.worker_context import EventWrapper, WorkerContext

__all__ = ["DwexWorkerContext", "IdleDeadline", "TerminatedEvent"]


class TerminatedEvent(EventWrapper):
    """``WorkerContext.terminated`` that also ends the reads of the idle connections when set."""

    def __init__(self) -> None:
        super().__init__()
        #: The read scopes of the connections idle now (each `IdleDeadline` keeps its own here).
        self.idle_reads: set[trio.CancelScope] = set()

    async def set(self) -> None:
        await super().set()
        for read in self.idle_reads:
            read.cancel()


class DwexWorkerContext(WorkerContext):
    """Hypercorn's worker context, with a `TerminatedEvent` as its ``terminated`` event."""

    def __init__(self, max_requests: int | None) -> None:
        super().__init__(max_requests)
        self.terminated: TerminatedEvent = TerminatedEvent()


class IdleDeadline:
    """One connection's keep-alive timer: the deadline of the scope its reader waits in.

    It has the methods of Hypercorn's ``SingleTask``, which upstream's ``TCPServer`` calls
    when the connection goes idle (`restart`) and when a request begins (`stop`); the server
    calls `forget` when the connection ends.
    """

    __slots__ = ("_read", "_terminated", "_timeout")

    def __init__(self, read: trio.CancelScope, timeout: float, terminated: TerminatedEvent) -> None:
        self._read = read
        self._timeout = timeout
        self._terminated = terminated

    async def restart(self, task_group: Any, action: Callable[..., Any]) -> None:
        """The connection is idle: end its read ``timeout`` seconds from now, or at once if the
        worker is shutting down. (``task_group`` and ``action``, upstream's task and what it
        would run, are not needed: the read ending closes the connection.)"""
        if self._terminated.is_set():
            self._read.cancel()
            return
        self._read.deadline = trio.current_time() + self._timeout
        self._terminated.idle_reads.add(self._read)

    async def stop(self) -> None:
        """A request has begun: no deadline while it lasts."""
        self._read.deadline = math.inf
        self._terminated.idle_reads.discard(self._read)

    def forget(self) -> None:
        """The connection has ended: shutdown need not close it."""
        self._terminated.idle_reads.discard(self._read)
