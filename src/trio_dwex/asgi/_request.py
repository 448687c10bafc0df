"""`Request`: one HTTP request, read from the ASGI scope and receive channel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

import trio

from .._errors import BadRequestException, HttpException
from ..streams._lease import StreamLease
from ..wire._cookies import parse_cookies
from ..wire._headers import best_match, decode_header_value
from ._types import Receive, Scope

__all__ = ["DEFAULT_BODY_TIMEOUT", "DEFAULT_MAX_BODY_SIZE", "Request"]

#: Bytes of request body read at most; beyond it the request is answered 413.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
#: Seconds a whole request body may take to arrive; beyond it the request is answered 408.
#: 1 MiB (the default size limit) in 30 s is 35 KB/s: slower than any real client's upload.
DEFAULT_BODY_TIMEOUT = 30.0


class Request:
    """An HTTP request as handlers, guards and interceptors see it.

    ``Annotated[Request, Req()]`` gives it to a handler. Guards may set attributes on it for the
    handler to read, as the guide's auth guard sets ``request.user``; ``user`` starts as
    ``None`` and ``state`` is a dict for anything else. ``lease`` (a `StreamLease`) is what
    a guard says of a stream the request opens: its owner, its expiry.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        path_params: Mapping[str, str] | None = None,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.scope = scope
        self._receive = receive
        self.path_params: Mapping[str, str] = dict(path_params or {})
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout
        self._body: bytes | None = None
        #: Set by a guard for the handler, e.g. the authenticated user.
        self.user: Any = None
        #: Free-form per-request values shared by guards, interceptors and the handler.
        self.state: dict[str, Any] = {}
        #: Whose a stream this request opens is, and until when: guards fill it in.
        self.lease = StreamLease(client=None if self.client is None else self.client[0])

    @property
    def method(self) -> str:
        """The HTTP method, upper case."""
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        """The decoded path, without the query string."""
        return str(self.scope["path"])

    @property
    def http_version(self) -> str:
        """``"1.0"``, ``"1.1"`` or ``"2"``."""
        return str(self.scope.get("http_version", "1.1"))

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's (host, port), if the server knows it."""
        client = self.scope.get("client")
        return None if client is None else (str(client[0]), int(client[1]))

    @cached_property
    def query_params(self) -> Sequence[tuple[str, str]]:
        """The query string's (key, value) pairs, decoded, in order, repeats kept."""
        raw: bytes = self.scope.get("query_string", b"")
        try:
            query = raw.decode("utf-8")
            return parse_qsl(query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise BadRequestException("the query string is not valid UTF-8") from None

    @cached_property
    def headers(self) -> Mapping[str, str]:
        """Request headers, names lower case; repeated headers joined with ``", "``.

        Values are read as UTF-8, as browsers send them (a resent ``Last-Event-ID`` of a
        non-ASCII id), or as latin-1 when they are not valid UTF-8.
        """
        headers: dict[str, str] = {}
        for raw_name, raw_value in self.scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            value = decode_header_value(raw_value)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    @cached_property
    def cookies(self) -> Mapping[str, str]:
        """The request's cookies by name, from its ``Cookie`` header (or headers, as HTTP/2
        may split it). A pair that does not parse is skipped; a repeated name keeps its first
        value. Values are as sent: decode them if the app encoded them."""
        lines = [
            decode_header_value(value)
            for name, value in self.scope.get("headers", [])
            if name.lower() == b"cookie"
        ]
        return parse_cookies(lines)

    def best_match(self, *media_types: str) -> str | None:
        """Which of ``media_types`` the client's ``Accept`` header prefers; ``None`` if none.

        The highest quality wins, the first listed on a tie, and a request without ``Accept``
        gets the first. How one route answers JSON or an event stream as the client asks::

            if request.best_match("application/json", "text/event-stream") == "text/event-stream":
                return self.events()      # streamed
            return {"answer": 42}         # JSON
        """
        return best_match(self.headers.get("accept"), media_types)

    async def body(self) -> bytes:
        """The whole request body; read once, then cached.

        Raises:
            HttpException: 413 when the body is (or is declared) larger than
                ``max_body_size``; 408 when it has not arrived within ``body_timeout``.
        """
        if self._body is None:
            # Checked before the first read: on our server, that read is what sends
            # "100 Continue" to a client that waits for it, and a body refused anyway should
            # not be uploaded.
            declared = self.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_size:
                raise self._too_large()
            body = None
            with trio.move_on_after(self.body_timeout):
                body = await self._read_body()
            if body is None:
                raise HttpException(
                    408,
                    f"the request body did not arrive within {self.body_timeout} seconds",
                    headers={"Connection": "close"},
                )
            self._body = body
        return self._body

    async def _read_body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise BadRequestException("the client disconnected while sending its body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_size:
                raise self._too_large()
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> HttpException:
        return HttpException(413, f"the request body is larger than {self.max_body_size} bytes")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"
