"""Responses as ASGI applications: construct one, then ``await response(scope, receive, send)``.

They work without the rest of trio-dwex, in any ASGI app served by a Trio server::

    async def app(scope, receive, send):
        async def numbers():
            for n in range(3):
                yield {"n": n}
        await EventSourceResponse(numbers(), keepalive=5)(scope, receive, send)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import quote

from .._errors import HttpException
from .._unset import UNSET, Unset
from ..streams._lease import StreamLease
from ..streams._outlet import ImmediateWriter
from ..streams._runner import TaskStarter, run_stream
from ..streams._settings import StreamSettings
from ..streams._state import CloseReason
from ..streams._stream import OverflowPolicy, SseStream
from ..streams._tracker import StreamTracker
from ..wire._cookies import SameSite, set_cookie_value
from ..wire._headers import HeadersInput, encode_headers
from ..wire._sse import (
    Serializer,
    current_serializer,
    escape_surrogates,
    replace_surrogates,
    use_serializer,
)
from ._encodings import StreamEncoder, choose_encoder
from ._types import (
    DIRECT_WRITE_EXTENSION,
    DISCONNECT_EXTENSION,
    DisconnectNotice,
    Receive,
    Scope,
    Send,
    scope_header,
)

__all__ = [
    "EventSourceResponse",
    "HTMLResponse",
    "JSONResponse",
    "RedirectResponse",
    "Response",
    "error_response",
]

logger = logging.getLogger("trio_dwex.asgi")


class SetsCookies:
    """``set_cookie`` and ``delete_cookie`` for a response whose ``headers`` are encoded pairs."""

    headers: list[tuple[bytes, bytes]]

    def set_cookie(
        self,
        name: str,
        value: str = "",
        *,
        max_age: int | None = None,
        expires: datetime | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: SameSite | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Add a ``Set-Cookie`` header; call it once per cookie.

        The defaults are the safe ones: ``HttpOnly`` (page scripts cannot read it, so an
        injected script cannot steal it) and ``SameSite=Lax`` (other sites' forms and scripts
        do not send it). Set ``secure=True`` when served over HTTPS. A value must be cookie
        text (no space, ``"``, ``,``, ``;``, ``\\`` or non-ASCII): encode others first.

        Raises:
            ValueError: a bad name or value, or ``samesite="none"`` without ``secure``.
        """
        header = set_cookie_value(
            name,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )
        self.headers.append((b"set-cookie", header.encode("ascii")))

    def delete_cookie(
        self,
        name: str,
        *,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: SameSite | None = "lax",
    ) -> None:
        """Tell the browser to forget a cookie; ``path`` and ``domain`` must be those it was set
        with, or the browser keeps it."""
        self.set_cookie(
            name,
            "",
            max_age=0,
            expires=datetime(1970, 1, 1, tzinfo=UTC),
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
        )


class Response(SetsCookies):
    """A complete HTTP response: status, headers and a body sent in one piece.

    ``content`` that is ``str`` is sent as UTF-8, with ``media_type`` text/plain unless given;
    a lone surrogate in it, which UTF-8 cannot carry, is sent as U+FFFD. ``headers`` is a
    mapping, or ``(name, value)`` pairs when a name repeats; cookies are best added with
    `set_cookie`.
    """

    media_type: str | None = None

    def __init__(
        self,
        content: bytes | str = b"",
        status: int = 200,
        headers: HeadersInput | None = None,
        media_type: str | None = None,
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"Response status must be an int from 100 to 599, got {status!r}")
        if isinstance(content, str):
            body = _utf8(content)
            media_type = media_type or self.media_type or "text/plain; charset=utf-8"
        elif isinstance(content, bytes | bytearray | memoryview):
            body = bytes(content)
            media_type = media_type or self.media_type
        else:
            raise TypeError(
                f"Response content must be bytes or str, got {type(content).__name__}; "
                "use JSONResponse for data"
            )
        self.status = status
        self.body = body
        self.headers = encode_headers(headers)
        names = {name for name, _ in self.headers}
        if media_type is not None and b"content-type" not in names:
            self.headers.append((b"content-type", media_type.encode("latin-1")))
        if status not in (204, 304) and b"content-length" not in names:
            self.headers.append((b"content-length", str(len(body)).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        body = b"" if scope.get("method") == "HEAD" else self.body
        await send({"type": "http.response.body", "body": body, "more_body": False})


class JSONResponse(Response):
    """``content`` encoded as JSON by the serializer in force (compact stdlib JSON by default).

    A lone surrogate in a string (``json.loads`` makes one of ``"\\ud800"``) is sent as its
    JSON escape, whatever serializer left it in the text.
    """

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status: int = 200,
        headers: HeadersInput | None = None,
        *,
        serializer: Serializer | None = None,
    ) -> None:
        text = (serializer or current_serializer())(content)
        if isinstance(text, str):
            try:
                body = text.encode("utf-8")
            except UnicodeEncodeError:
                # A serializer that leaves lone surrogates as they are (``json.dumps`` with
                # ``ensure_ascii=False``): in JSON they stand inside strings, where their
                # escapes mean the same, so the client still parses what was meant.
                body = escape_surrogates(text).encode("utf-8")
        else:
            body = text
        super().__init__(body, status, headers)


class HTMLResponse(Response):
    """An HTML page: ``str`` content sent as UTF-8 with ``text/html; charset=utf-8``."""

    media_type = "text/html; charset=utf-8"

    def __init__(
        self, content: bytes | str, status: int = 200, headers: HeadersInput | None = None
    ) -> None:
        super().__init__(content, status, headers)


_REDIRECTS = (301, 302, 303, 307, 308)


class RedirectResponse(Response):
    """A redirect to ``url`` (absolute, or a path on this server).

    The default, ``303 See Other``, is what a form's POST wants: the browser follows it with a
    GET. ``307``/``308`` repeat the method and body; ``301``/``302`` are for old clients.
    Characters a header cannot carry (non-ASCII, spaces) are percent-encoded.
    """

    def __init__(self, url: str, status: int = 303, headers: HeadersInput | None = None) -> None:
        if status not in _REDIRECTS:
            raise ValueError(f"a redirect's status is one of {_REDIRECTS}, got {status!r}")
        if not isinstance(url, str) or not url:
            raise ValueError(f"a redirect needs a URL, got {url!r}")
        super().__init__(b"", status, headers)
        location = quote(url, safe=":/?#[]@!$&'()*+,;=%~")
        self.headers.append((b"location", location.encode("ascii")))


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8, a lone surrogate (UTF-8 has none) replaced by U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Such text reaches handlers from JSON bodies ("\\ud800" is valid JSON).
        return replace_surrogates(text).encode("utf-8")


def error_response(exc: BaseException) -> JSONResponse:
    """The JSON answer for an exception: an `HttpException`'s own status, else 500.

    A 500 hides the exception's text from the client (it may hold secrets); log it instead.
    """
    if isinstance(exc, HttpException):
        return JSONResponse(exc.to_json(), exc.status, exc.headers)
    server_error = HttpException(500, "Internal Server Error")
    return JSONResponse(server_error.to_json(), 500)


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    # nginx buffers proxied responses unless told not to; SSE needs every event at once.
    (b"x-accel-buffering", b"no"),
]


class EventSourceResponse(SetsCookies):
    """A ``text/event-stream`` response that runs its source in its own nursery.

    ``source`` is an `SseStream`, or an async iterable (typically an async generator) whose
    items are `SseEvent` values, mappings of their fields, or plain data. The stream ends when
    the source does, when the client leaves, or on shutdown, and its cleanup always runs; see
    `StreamSettings` for ``keepalive``, ``send_timeout`` and the other settings, which can be
    given one by one or as ``settings``.

    An error raised by the source before its first event (within ``first_event_wait``)
    becomes a proper HTTP error: an `HttpException`'s status, else 500, with a JSON body.

    Args:
        headers: extra response headers (checked; CR/LF in a value raises ``ValueError``).
        serializer: the JSON serializer for data given as plain values; default: the one in
            force (compact stdlib JSON unless the app configured another).
        tracker: counts the stream and lets the app end it at shutdown. Returned from a
            handler, a response without one gets the app's (see `track`).
        lease: whose the stream is and until when (`StreamLease`). Returned from a
            handler, a response without one gets the request's, as its guards left it.
    """

    def __init__(
        self,
        source: SseStream | AsyncIterable[object],
        *,
        keepalive: float | Unset | None = UNSET,
        send_timeout: float | Unset = UNSET,
        buffer_size: int | Unset = UNSET,
        buffer_bytes: int | Unset = UNSET,
        overflow: OverflowPolicy | Unset = UNSET,
        first_event_wait: float | Unset = UNSET,
        max_lifetime: float | Unset | None = UNSET,
        close_timeout: float | Unset = UNSET,
        compress: bool | Literal["gzip", "br"] | Unset = UNSET,
        merge_window: float | Unset | None = UNSET,
        headers: HeadersInput | None = None,
        settings: StreamSettings | None = None,
        serializer: Serializer | None = None,
        tracker: StreamTracker | None = None,
        lease: StreamLease | None = None,
    ) -> None:
        if not isinstance(source, SseStream) and not hasattr(source, "__aiter__"):
            raise TypeError(
                "EventSourceResponse needs an SseStream or an async iterable (an async "
                f"generator), got {type(source).__name__}"
            )
        overrides: dict[str, Any] = {
            name: value
            for name, value in {
                "keepalive": keepalive,
                "send_timeout": send_timeout,
                "buffer_size": buffer_size,
                "buffer_bytes": buffer_bytes,
                "overflow": overflow,
                "first_event_wait": first_event_wait,
                "max_lifetime": max_lifetime,
                "close_timeout": close_timeout,
                "compress": compress,
                "merge_window": merge_window,
            }.items()
            if value is not UNSET
        }
        base = settings or StreamSettings()
        self.settings = replace(base, **overrides) if overrides else base
        # What `track` keeps: the options given here win over an app's defaults.
        self._settings_given = settings is not None
        self._overrides = overrides or None  # the empty dict would live as long as the stream
        self.source = source
        self.headers = _SSE_HEADERS + encode_headers(headers)
        self.serializer = serializer
        self.tracker = tracker
        self.lease = lease
        self.close_reason: CloseReason | None = None

    def track(
        self,
        tracker: StreamTracker,
        *,
        defaults: StreamSettings | None = None,
        headers: Mapping[str, str] | None = None,
        lease: StreamLease | None = None,
    ) -> None:
        """Make this stream one of an app's: counted by ``tracker`` and ended by its `close_all`.

        A `DwexApp` calls it for a response a handler returns, so a stream built by hand is
        in the app's stats and ends at shutdown like any other. A tracker given to the
        constructor is kept. ``defaults`` (the route's and the app's stream settings) stand in
        for the settings this response was not given, one by one or as ``settings``: options
        given to the constructor still win. ``headers`` are added where this response has no
        header of the same name. ``lease`` (the request's) is kept unless the response has
        one. Call it before the response runs.
        """
        if self.tracker is None:
            self.tracker = tracker
        if self.lease is None:
            self.lease = lease
        if defaults is not None and not self._settings_given:
            overrides = self._overrides
            self.settings = replace(defaults, **overrides) if overrides else defaults
        if headers:
            names = {name for name, _ in self.headers}
            self.headers += [item for item in encode_headers(headers) if item[0] not in names]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        compress = self.settings.compress
        encoder = (
            choose_encoder(scope_header(scope, b"accept-encoding"), prefer_brotli=compress == "br")
            if compress
            else None
        )
        headers = self.headers
        if encoder is not None:
            headers = [*headers, (b"content-encoding", encoder.name), (b"vary", b"accept-encoding")]
        sink = _ASGISink(scope, receive, send, headers, encoder=encoder)
        try:
            run = run_stream(self.source, sink, self.settings, self.tracker, self.lease)
            if self.serializer is None:
                # The one in force goes on: setting it again would hold a second setting
                # (and its context) for as long as the stream lives.
                reason = await run
            else:
                with use_serializer(self.serializer):
                    reason = await run
        except Exception as exc:
            if not isinstance(exc, HttpException):
                logger.error("an SSE source failed before its first event", exc_info=exc)
            await error_response(exc)(scope, receive, send)
            return
        self.close_reason = reason
        if reason not in (CloseReason.CLIENT_GONE, CloseReason.SLOW_CLIENT):
            await send({"type": "http.response.body", "body": sink.finish(), "more_body": False})


class _ASGISink:
    """The runner's `EventSink` over one ASGI HTTP call."""

    __slots__ = ("_direct", "_encoder", "_headers", "_receive", "_scope", "_send", "immediate")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        *,
        encoder: StreamEncoder | None = None,
    ) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._headers = headers
        # Compression for a client that takes it: each write is flushed, so an event is never
        # held back waiting for more to compress with.
        self._encoder = encoder
        self._direct: Any = (scope.get("extensions") or {}).get(DIRECT_WRITE_EXTENSION)
        #: How a producer writes an event itself (``streams/_outlet.py``): our server's fast
        #: path, unless each write must first go through the encoder.
        self.immediate: ImmediateWriter | None = self._direct if encoder is None else None

    async def start(self, first: bytes) -> None:
        headers = list(self._headers)
        # HTTP/2 and 3 forbid connection-specific headers; HTTP/1.0 clients would misread it.
        if self._scope.get("http_version") == "1.1":
            headers.append((b"connection", b"keep-alive"))
        direct = self._direct
        if first and direct is not None:
            # Our server keeps the head it is about to send for this write: one ``write(2)``
            # and, usually, one packet for both.
            direct.hold_head()
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        if first:
            await self.write(first)

    def finish(self) -> bytes:
        """The last bytes of the body: the compressed stream's end, when it is compressed."""
        return b"" if self._encoder is None else self._encoder.finish()

    async def write(self, data: bytes) -> None:
        if self._encoder is not None:
            data = self._encoder.encode(data)
        # Our server's fast path when it has one (``serving/_direct.py``): written at once if
        # the socket has room, else the ASGI way.
        direct = self._direct
        if direct is not None and await direct.write(data):
            return
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    def notify_disconnect(self, callback: Callable[[], object], start_soon: TaskStarter) -> None:
        notice = (self._scope.get("extensions") or {}).get(DISCONNECT_EXTENSION)
        if notice is not None:
            # Our server calls back: no task waits for the client, a saving per idle stream.
            cast(DisconnectNotice, notice).hand_over(callback)
        else:
            start_soon(_watch_disconnect, self._receive, callback)


async def _watch_disconnect(receive: Receive, callback: Callable[[], object]) -> None:
    """The disconnect callback for servers that cannot make it: wait in ``receive()``."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
    callback()
