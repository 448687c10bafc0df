"""Limits of our server: connections at once, and a calm answer when file descriptors run out.

**Connections.** Each open connection costs a file descriptor, a task and buffers, and an SSE
client keeps its connection for hours, so a crowd of them (or an attacker) could take every
file descriptor. `ServerLimits.max_connections` caps the connections served at once: at the
cap the server stops accepting, and new clients wait in the kernel's listen backlog until a
connection ends, as HAProxy's ``maxconn`` and nginx's ``worker_connections`` do. Waiting, not
refusing: an EventSource that is refused reconnects at once and adds to the crowd.

**Out of file descriptors.** When ``accept`` fails with ``EMFILE``/``ENFILE``/``ENOBUFS``/
``ENOMEM``, Trio's ``serve_listeners`` logs an ERROR with a traceback and retries every
0.1 s: 8 KB of log a second for as long as the shortage lasts. `LimitedListener` handles
those errors itself: it waits and retries the same way, and logs one line per
`ServerLimits.accept_error_log_interval` saying how many attempts failed since the last.
"""

from __future__ import annotations

import errno
import logging
import math
from dataclasses import dataclass, field

import trio

from ._h2 import DEFAULT_H2_BUFFER_BYTES, H2Limits
from ._h11 import DEFAULT_UNREAD_BODY_BYTES

__all__ = ["DEFAULT_MAX_CONNECTIONS", "LimitedListener", "ServerLimits"]

logger = logging.getLogger("trio_dwex.serving")

#: Connections served at once by default. An idle SSE connection costs the server about
#: 35 KiB (docs/performance.md), so 10,000 of them fit in ~350 MiB; raise the process's
#: file-descriptor limit (``ulimit -n``) above it, or the limit of the OS comes first.
DEFAULT_MAX_CONNECTIONS = 10_000

#: ``accept`` errors that mean "no resources now", which a wait may cure (Trio's own list).
_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: Seconds between attempts to accept while resources are short (Trio waits as long).
_CAPACITY_RETRY = 0.1


@dataclass(frozen=True)
class ServerLimits:
    """What our server allows each client and all of them; pass to `serve` or `run`.

    Attributes:
        max_connections: connections served at once (``None``: no cap but the OS's). Beyond
            it new connections wait in the listen backlog until one ends.
        accept_error_log_interval: seconds between log lines while ``accept`` fails for lack
            of file descriptors or memory.
        h2: rates of new streams an HTTP/2 connection, and of resets a client address, may
            send (`H2Limits`).
        h2_buffer_bytes: bytes an HTTP/2 stream may hold unsent before the app's ``send``
            waits for the client; a stream that then sends nothing for the write timeout is
            reset.
        memory_trim_interval: seconds between calls to glibc's ``malloc_trim``, which give
            the memory of dropped clients back to the OS (``None``: never; see
            ``_memory.py``).
        unread_body_bytes: bytes of a request body still arriving after the app answered
            without it (a guard refused, say) that the server reads and drops to keep the
            HTTP/1.1 connection for the client's next request; a longer body closes the
            connection (``0``: always close, as Hypercorn does; see ``_h11.py``).
    """

    max_connections: int | None = DEFAULT_MAX_CONNECTIONS
    accept_error_log_interval: float = 10.0
    h2: H2Limits = field(default_factory=H2Limits)
    h2_buffer_bytes: int = DEFAULT_H2_BUFFER_BYTES
    memory_trim_interval: float | None = 30.0
    unread_body_bytes: int = DEFAULT_UNREAD_BODY_BYTES

    def __post_init__(self) -> None:
        if self.max_connections is not None and (
            type(self.max_connections) is not int or self.max_connections < 1
        ):
            raise ValueError(
                "ServerLimits.max_connections must be an int >= 1 or None, "
                f"got {self.max_connections!r}"
            )
        if not self.accept_error_log_interval >= 0:  # also refuses NaN
            raise ValueError(
                "ServerLimits.accept_error_log_interval must be >= 0 seconds, "
                f"got {self.accept_error_log_interval!r}"
            )
        interval = self.memory_trim_interval
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval < math.inf
        ):
            raise ValueError(
                "ServerLimits.memory_trim_interval must be a positive number of seconds or "
                f"None, got {interval!r}"
            )
        if not isinstance(self.h2, H2Limits):
            raise ValueError(f"ServerLimits.h2 must be an H2Limits, got {self.h2!r}")
        if type(self.h2_buffer_bytes) is not int or self.h2_buffer_bytes < 1024:
            raise ValueError(
                f"ServerLimits.h2_buffer_bytes must be an int >= 1024, got {self.h2_buffer_bytes!r}"
            )
        if type(self.unread_body_bytes) is not int or self.unread_body_bytes < 0:
            raise ValueError(
                "ServerLimits.unread_body_bytes must be an int >= 0, "
                f"got {self.unread_body_bytes!r}"
            )


class LimitedListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener that takes one of ``slots`` before each ``accept`` (see the module doc).

    The connection's server gives the slot back when the connection ends
    (``_DwexTCPServer.ended``), so a slot is held exactly while a connection is served.
    """

    def __init__(
        self,
        listener: trio.abc.Listener[trio.abc.Stream],
        slots: trio.Semaphore | None,
        log_interval: float,
    ) -> None:
        self._listener = listener
        self._slots = slots
        self._log_interval = log_interval
        self._failed = 0
        self._logged_at = -math.inf

    async def accept(self) -> trio.abc.Stream:
        if self._slots is not None:
            await self._slots.acquire()
        try:
            return await self._accept()
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    async def _accept(self) -> trio.abc.Stream:
        while True:
            try:
                return await self._listener.accept()
            except OSError as error:
                if error.errno not in _CAPACITY_ERRNOS:
                    raise
                self._note_failure(error)
                await trio.sleep(_CAPACITY_RETRY)

    def _note_failure(self, error: OSError) -> None:
        self._failed += 1
        now = trio.current_time()
        if now - self._logged_at >= self._log_interval:
            name = errno.errorcode.get(error.errno or 0, str(error.errno))
            logger.error(
                "cannot accept connections: %s (%d attempt(s) failed since the last report); "
                "raise the file-descriptor limit or lower ServerLimits.max_connections",
                name,
                self._failed,
            )
            self._failed = 0
            self._logged_at = now

    async def aclose(self) -> None:
        await self._listener.aclose()
