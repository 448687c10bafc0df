"""`EventSource`: a Trio SSE client on httpx and our own decoder, that behaves like a browser's.

It follows the "EventSource" section of the HTML standard where that is observable over the
network: it sends ``Accept: text/event-stream`` and, once the stream has set an id,
``Last-Event-ID``; it reconnects after a dropped connection, waiting the reconnection time the
server set with ``retry``; it stops for good on HTTP 204; and it fails (here: raises
`EventSourceError`) on any other status than 200 or a content type other than
``text/event-stream``, which browsers do not retry either. Redirects are followed, as by
``fetch``.

What a browser does not have, and a test needs: ``max_events`` and ``timeout`` end the
iteration, so a test never hangs on an endless stream, and `EventSource.stop_reason` says why
it ended::

    async with EventSource(url + "/events/countdown", max_events=3, timeout=5) as source:
        async for event in source:
            print(event.type, event.id, event.json())
    assert source.stop_reason is StopReason.MAX_EVENTS
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import Self, cast

import httpx
import trio

from .._errors import DwexError
from ..wire._decoder import MessageEvent, SseDecoder

logger = logging.getLogger("trio_dwex.testing")

__all__ = ["DEFAULT_RECONNECT_DELAY", "EventSource", "EventSourceError", "StopReason"]

#: Seconds to wait before reconnecting while the server has sent no ``retry`` (the spec leaves
#: it to the browser; Chromium and Firefox wait about 3 s).
DEFAULT_RECONNECT_DELAY = 3.0

#: Bytes of an unexpected response's body quoted in `EventSourceError`, to show the cause.
_QUOTED_BODY = 300
#: Seconds spent reading that quote: a wrong response may itself be an endless stream.
_QUOTE_WAIT = 1.0
#: Characters no HTTP header value can hold (RFC 9110): C0 controls except TAB, and DEL.
_HEADER_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
#: The UTF-8 byte order mark, which a stream may start with and which is not part of it.
_BOM = "\ufeff".encode()


class EventSourceError(DwexError):
    """The server answered in a way an EventSource does not retry, or could not be reached.

    A browser "fails the connection" in these cases (``readyState`` becomes ``CLOSED`` and
    ``error`` fires); raising is the Python equivalent, so a test sees the cause at once
    instead of an empty stream.

    Attributes:
        status_code: the response's status, or ``None`` if no response came (connect failed).
        content_type: the response's ``Content-Type``, or ``None``.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, content_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.content_type = content_type


class StopReason(enum.Enum):
    """Why an `EventSource` iteration ended (`EventSource.stop_reason`)."""

    #: ``max_events`` events were delivered.
    MAX_EVENTS = "max_events"
    #: ``timeout`` seconds passed.
    TIMEOUT = "timeout"
    #: The server answered 204 No Content: the way to tell an EventSource not to reconnect.
    NO_CONTENT = "no_content"
    #: The connection ended and no reconnection is allowed (``reconnect=False``, or
    #: ``max_reconnects`` reached).
    ENDED = "ended"
    #: `EventSourceError` was raised: a wrong status or content type, or no connection.
    FAILED = "failed"
    #: `EventSource.aclose` was called.
    CLOSED = "closed"


class EventSource:
    """A server-sent events client; ``async with`` it, then ``async for`` its events.

    Each item is a `MessageEvent` with ``type`` (``"message"`` unless the stream named it),
    ``data``, ``id`` (the last event id in force), ``retry`` (ms, or ``None``) and ``json()``.
    One ``EventSource`` is one logical stream across reconnections; it is not reusable after
    it stopped, and one task at a time may iterate it.

    Args:
        url: the stream's address; relative to ``client.base_url`` if a client is given.
        headers: extra request headers (``Authorization``, ...). ``Last-Event-ID`` is managed
            by the source: pass ``last_event_id`` instead.
        last_event_id: sent as ``Last-Event-ID`` on the first connection, as if resuming.
        reconnect: reconnect after a dropped connection; ``False`` stops instead.
        max_events: stop after this many events.
        timeout: stop after this many seconds, counted from ``async with`` (or the first
            ``async for`` step); the iteration ends, nothing raises.
        reconnect_delay: seconds to wait before reconnecting while the server set no ``retry``.
        max_reconnects: reconnect at most this many times in all; after that a dropped
            connection ends the iteration and a failed connection attempt raises.
        read_timeout: seconds of silence after which the connection counts as dropped (and
            is reconnected). ``None``, the default, waits for ever, as browsers do; set it
            above the server's keep-alive interval to detect dead connections in production.
        client: an ``httpx.AsyncClient`` to send with (not closed here; its read timeout is
            replaced by ``read_timeout``); by default a new one is made and closed. **With
            an** ``http2=True`` **client, hanging up does not reach the server at once**:
            httpx sends no ``RST_STREAM`` for a response closed early, so the server sees the
            client leave only when the connection closes (when you close the client). A
            browser resets the stream. Our own default client speaks HTTP/1.1, where hanging
            up closes the connection.

    Attributes:
        connections: responses received so far (200 or not).
        reconnects: reconnection attempts made so far.
        received: events delivered so far.
        response: the latest response, for its status and headers.
        stop_reason: why the iteration ended; ``None`` while it runs.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        reconnect: bool = True,
        max_events: int | None = None,
        timeout: float | None = None,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        max_reconnects: int | None = None,
        read_timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        headers = dict(headers or {})
        if any(name.lower() == "last-event-id" for name in headers):
            raise ValueError(
                "pass last_event_id=... rather than a Last-Event-ID header: the EventSource "
                "updates it from the stream for each reconnection"
            )
        for name, value in (
            ("max_events", max_events),
            ("max_reconnects", max_reconnects),
        ):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
        for name, seconds in (
            ("timeout", timeout),
            ("reconnect_delay", reconnect_delay),
            ("read_timeout", read_timeout),
        ):
            if seconds is not None and not seconds >= 0:  # `not >=` also rejects NaN
                raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds!r}")
        if last_event_id and _HEADER_CONTROL.search(last_event_id):
            raise ValueError(
                "last_event_id cannot hold control characters (CR, LF, NUL, VT, ...), which "
                f"an HTTP header cannot carry: {last_event_id!r}"
            )
        self.url = url
        # Where the next connection goes: `url` at first, then wherever redirects led, as a
        # browser reconnects to the final URL of the previous response.
        self._target: httpx.URL | str = url
        self.headers = headers
        self.reconnect = reconnect
        self.max_events = max_events
        self.timeout = timeout
        self.reconnect_delay = reconnect_delay
        self.max_reconnects = max_reconnects
        self.read_timeout = read_timeout
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self._decoder = SseDecoder()
        self._stream_head: bytes | None = b""
        self._begin_stream(last_event_id or "")
        self._ready: deque[MessageEvent] = deque()
        self._deadline: float | None = None
        self._chunks: AsyncGenerator[bytes, None] | None = None
        self.connections = 0
        self.reconnects = 0
        self.received = 0
        self.response: httpx.Response | None = None
        self.stop_reason: StopReason | None = None

    @property
    def last_event_id(self) -> str:
        """The last event id in force (``""`` if none), which a reconnection sends."""
        return self._decoder.last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time the server set with ``retry``, in ms; ``None`` if never."""
        return self._decoder.retry

    async def __aenter__(self) -> Self:
        self._start_clock()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection, and the client if this object made it. Idempotent."""
        if self.stop_reason is None:
            self.stop_reason = StopReason.CLOSED
        await self._disconnect()
        if self._own_client:
            await self._client.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> MessageEvent:
        if (
            self.stop_reason is None
            and self.max_events is not None
            and self.received >= self.max_events
        ):
            self.stop_reason = StopReason.MAX_EVENTS
        if self.stop_reason is not None:
            raise StopAsyncIteration
        self._start_clock()
        assert self._deadline is not None
        event: MessageEvent | None = None
        with trio.move_on_at(self._deadline):
            try:
                event = await self._next_event()
            except EventSourceError:
                self.stop_reason = StopReason.FAILED
                raise
        if event is None:
            if self.stop_reason is None:
                self.stop_reason = StopReason.TIMEOUT
            await self._disconnect()
            raise StopAsyncIteration
        self.received += 1
        if self.max_events is not None and self.received >= self.max_events:
            # Hang up now rather than at `aclose`: the server sees the client leave as soon as
            # the test has what it asked for, as with a page that calls `close()`.
            self.stop_reason = StopReason.MAX_EVENTS
            await self._disconnect()
        return event

    def _start_clock(self) -> None:
        if self._deadline is None:
            self._deadline = (
                math.inf if self.timeout is None else trio.current_time() + self.timeout
            )

    async def _next_event(self) -> MessageEvent | None:
        """The next event, connecting and reconnecting as needed; ``None`` once stopped."""
        while not self._ready:
            if self._chunks is None and not await self._connect():
                return None
            assert self._chunks is not None
            chunk: bytes | None = None
            with trio.move_on_after(math.inf if self.read_timeout is None else self.read_timeout):
                try:
                    chunk = await anext(self._chunks)
                except StopAsyncIteration:
                    pass
                except httpx.TransportError:
                    pass  # a reset or a truncated chunked body: a dropped connection all the same
            if not chunk:
                # The connection ended or went silent: an unfinished event is discarded (the
                # spec's rule), then we reconnect as a browser would.
                self._begin_stream(self._decoder.last_event_id)
                await self._disconnect()
                if not await self._wait_to_reconnect():
                    self.stop_reason = StopReason.ENDED
                    return None
                continue
            self._ready.extend(self._feed(chunk))
        return self._ready.popleft()

    def _begin_stream(self, last_event_id: str) -> None:
        """Get the decoder ready for a new connection's bytes, keeping the last event id.

        Browsers (Chromium 156, checked) keep the last event id across reconnections: events
        of the new stream that carry no ``id`` still report the old one, and the next
        reconnection sends it again. `SseDecoder.close` starts the next stream with an empty
        id buffer instead, so we put the id back the way a server would: with an ``id``
        line and a blank line, which dispatches no event. The decoder strips a byte order
        mark only at the very start of its input, which these lines now are, so
        `_feed` strips the new stream's BOM itself.
        """
        self._decoder.close()
        self._decoder.feed(f"id: {last_event_id}\n\n".encode() if last_event_id else b"\n")
        self._stream_head = b""

    def _feed(self, chunk: bytes) -> list[MessageEvent]:
        """Decode a chunk of the current connection, without its leading UTF-8 BOM."""
        if self._stream_head is not None:
            head = self._stream_head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._stream_head = head  # maybe a BOM split across chunks: wait for more
                return []
            self._stream_head = None
            chunk = head.removeprefix(_BOM)
        return self._decoder.feed(chunk)

    async def _wait_to_reconnect(self) -> bool:
        """Sleep the reconnection time and return ``True``, or ``False`` if we may not."""
        if not self.reconnect:
            return False
        if self.max_reconnects is not None and self.reconnects >= self.max_reconnects:
            return False
        retry = self._decoder.retry
        await trio.sleep(self.reconnect_delay if retry is None else retry / 1000)
        self.reconnects += 1
        return True

    async def _connect(self) -> bool:
        """Open the stream; ``False`` if the server said 204. Raises `EventSourceError`."""
        fields = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self.headers}
        headers = [(name.encode(), value.encode()) for name, value in fields.items()]
        # Only a spec'd header, and only once the stream (or the caller) set an id.
        if self._decoder.last_event_id:
            id_value = _last_event_id_header(self._decoder.last_event_id)
            headers.append((b"Last-Event-ID", id_value))
        configured = self._client.timeout
        timeout = httpx.Timeout(
            connect=configured.connect,
            read=self.read_timeout,
            write=configured.write,
            pool=configured.pool,
        )
        while True:
            request = self._client.build_request(
                "GET", self._target, headers=headers, timeout=timeout
            )
            try:
                response = await self._client.send(request, stream=True, follow_redirects=True)
                break
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as error:
                # Nothing a retry would change (a scheme httpx cannot speak, a request h11
                # refuses to send), so fail now rather than reconnect for ever.
                raise EventSourceError(
                    f"cannot send GET {request.url}: {type(error).__name__}: {error}"
                ) from error
            except httpx.TransportError as error:
                if not await self._wait_to_reconnect():
                    raise EventSourceError(
                        f"could not connect to {request.url} ({type(error).__name__}: {error})"
                    ) from error
        self.connections += 1
        self.response = response
        self._target = response.url
        if response.status_code == 204:
            await response.aclose()
            self.stop_reason = StopReason.NO_CONTENT
            return False
        content_type = response.headers.get("content-type")
        mime = (content_type or "").partition(";")[0].strip().lower()
        if response.status_code != 200 or mime != "text/event-stream":
            body = await self._quote_body(response)
            raise EventSourceError(
                f"GET {request.url} answered {response.status_code} with content type "
                f"{content_type!r}, not a 200 text/event-stream, so an EventSource gives up"
                f" (a browser would not reconnect either). Body: {body!r}",
                status_code=response.status_code,
                content_type=content_type,
            )
        self._chunks = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
        return True

    async def _quote_body(self, response: httpx.Response) -> str:
        """The start of a rejected response's body, read briefly, for the error message."""
        body = b""
        chunks = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
        try:
            with trio.move_on_after(_QUOTE_WAIT):
                async for chunk in chunks:
                    body += chunk
                    if len(body) >= _QUOTED_BODY:
                        break
        except httpx.HTTPError:
            pass  # the quote is a courtesy; the status already explains the failure
        finally:
            await response.aclose()
            await _finish(chunks)
        return body[:_QUOTED_BODY].decode("utf-8", "replace")

    async def _disconnect(self) -> None:
        chunks, self._chunks = self._chunks, None
        if self.response is not None:
            await self.response.aclose()
        if chunks is not None:
            await _finish(chunks)


def _last_event_id_header(last_event_id: str) -> bytes:
    """The ``Last-Event-ID`` header's value for an id, sent as a browser sends it.

    Browsers send the id's UTF-8 bytes, without the spaces and tabs at either end that HTTP
    trims anyway. An id with a control character (a stream may set one: the spec keeps any
    id without NUL) cannot go in a header at all, so the source fails rather than retry a
    request that can never be sent.
    """
    control = _HEADER_CONTROL.search(last_event_id)
    if control is not None:
        raise EventSourceError(
            f"the stream set the event id {last_event_id!r}, whose control character "
            f"{control.group()!r} no HTTP header can carry, so it cannot be sent back as "
            "Last-Event-ID to resume"
        )
    return last_event_id.strip(" \t").encode()


async def _finish(chunks: AsyncGenerator[bytes, None]) -> None:
    """End an httpx body iterator whose response is closed, and every generator inside it.

    httpx stacks one async generator per layer (decoder, client, transport, connection pool,
    connection), and ``aclose()`` on the outer one leaves the inner ones for the garbage
    collector to close (encode/httpx#3686), which Trio reports as a ``ResourceWarning``.
    Instead we take one more step under a cancelled scope: the innermost layer's next
    checkpoint raises ``Cancelled`` (or its closed connection raises), and that exception
    unwinds, and so ends, every layer now. Cancelling matters: on HTTP/2 the connection
    outlives the response, and a plain read for a closed stream would wait for the read
    timeout.
    """
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            async for _ in chunks:
                pass  # data decoded before the close: dropped
        except Exception as error:
            # Whatever a closed response raises on its way out ends it, which is the point.
            logger.debug("closing an event stream response raised %r", error)
