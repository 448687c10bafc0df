"""`StreamSettings`: every timeout, buffer and limit of a stream, checked once when made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ._budget import DEFAULT_BUFFER_BYTES
from ._stream import DEFAULT_BUFFER_SIZE, OverflowPolicy

__all__ = ["StreamSettings"]


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How a stream behaves; every timeout and buffer of the runner is here.

    Attributes:
        keepalive: seconds without an event after which a ``: keep-alive`` comment is sent, so
            proxies and load balancers do not close an idle connection. ``None`` disables it.
        send_timeout: seconds a client may take to accept a write before it is dropped. A
            stalled client otherwise pins the stream (and its memory) for ever.
        buffer_size: events buffered per stream between the producer and the socket.
        buffer_bytes: bytes of encoded events buffered per stream, besides ``buffer_size``;
            an empty buffer takes one event of any size.
        overflow: what ``SseStream.send_nowait`` does when that buffer is full (in events
            or in bytes).
        first_event_wait: seconds the runner waits for the first event before it commits the
            response headers. An error raised within that time becomes a proper HTTP error
            response; a slower source still gets its headers after this long.
        max_lifetime: seconds after which the stream is closed so that the client reconnects
            (how long-lived streams rebalance across servers). ``None``: no limit.
        close_timeout: seconds that ``on_close`` callbacks get, in total, to finish.
        max_batch_bytes: upper bound on the bytes coalesced into one write.
        lifetime_jitter: the fraction of ``max_lifetime`` taken off at random per stream (0.1:
            a 600 s lifetime lasts 540 to 600 s), so that streams opened together, after a
            restart, do not all end, and reconnect, together.
        farewell_retry: seconds a client is asked to wait before reconnecting when a shutdown,
            its lease's expiry or a revocation (`StreamTracker.close_where`) ends its stream,
            as an SSE ``retry`` field drawn from half to one and a half times this; spreads
            the reconnections. ``None``: no field.
        compress: compress the stream for a client whose ``Accept-Encoding`` takes it, flushed
            after every write, so that each event still arrives at once: ``True`` (or
            ``"gzip"``) gzip; ``"br"`` brotli when the client takes it and the ``brotli``
            package is installed, else gzip. Off by default: it costs CPU per write, and pays
            off on verbose JSON over slow links. gzip is the better choice for a stream of one
            event per write, brotli for one whose writes carry many (``bench.compression``).
        merge_window: seconds an unnamed event (an LLM's token, say) may wait for the next
            ones, to go out in one write with them: fewer writes, each event still whole and
            in order, at most this much later. A named event, a comment and the end of the
            stream go out at once, with what waits. ``None`` (the default): every write goes
            out as soon as the writer has it.
    """

    keepalive: float | None = 15.0
    send_timeout: float = 30.0
    buffer_size: int = DEFAULT_BUFFER_SIZE
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    overflow: OverflowPolicy = OverflowPolicy.CLOSE
    first_event_wait: float = 0.2
    max_lifetime: float | None = None
    close_timeout: float = 5.0
    max_batch_bytes: int = 64 * 1024
    lifetime_jitter: float = 0.1
    farewell_retry: float | None = 3.0
    compress: bool | Literal["gzip", "br"] = False
    merge_window: float | None = None

    def __post_init__(self) -> None:
        for name in ("send_timeout", "first_event_wait", "close_timeout"):
            _check_seconds(name, getattr(self, name), allow_none=False)
        for name in ("keepalive", "max_lifetime", "merge_window"):
            _check_seconds(name, getattr(self, name), allow_none=True)
        for name in ("buffer_size", "buffer_bytes", "max_batch_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"stream setting {name} must be a positive int, got {value!r}")
        jitter = self.lifetime_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ValueError(f"stream setting lifetime_jitter must be in [0, 1), got {jitter!r}")
        _check_seconds("farewell_retry", self.farewell_retry, allow_none=True)
        if not isinstance(self.compress, bool) and self.compress not in ("gzip", "br"):
            raise ValueError(
                f'stream setting compress must be a bool, "gzip" or "br", got {self.compress!r}'
            )
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
