"""Our HTTP/1 protocol: Hypercorn's, refusing ambiguous requests and asking for bodies late.

h11 parses liberally, and Hypercorn passes on what h11 accepts. An outside attack found:

**Content-Length and Transfer-Encoding together.** h11 frames such a request by its chunked
encoding, as RFC 9112 (section 6.3) allows, and Hypercorn answers it and keeps the connection
open: a request hidden in the bytes that a front proxy counted as body by ``Content-Length``
was then served as the next one (request smuggling). The RFC says to close the connection
after answering such a request; we answer 400 and close, as llhttp and nginx do, without
running the app.

**Transfer-Encoding in HTTP/1.0.** HTTP/1.0 has no transfer codings, so RFC 9112 (section
6.1) says to treat such a message's framing as faulty and close: 400 and close.

**Versions other than 1.x.** h11 takes any ``HTTP/<digit>.<digit>`` and Hypercorn serves it as
HTTP/1.1, so ``GET / HTTP/2.0`` or ``HTTP/3.0`` in plain text got a 200. Those are answered
505 (HTTP Version Not Supported) and closed. ``HTTP/1.2`` and later minor versions are
served as HTTP/1.1, as RFC 9110 (section 2.5) asks.

**Heads over ``h11_max_incomplete_size``.** Hypercorn documents that setting as the largest
request line plus headers, but h11 checks it only while a head is still *incomplete*: a head
that arrives whole in one read (up to ``MAX_RECV``, 64 KiB) was accepted at any size, so the
limit depended on how the client's bytes were split. Heads that arrive in pieces still get
h11's own 431; we apply the same limit to the ones h11 let through: 431 and close.

**``Expect: 100-continue``.** Hypercorn sends ``100 Continue`` as soon as the request head is
in, so the client uploads its body even when the answer will be 413 (too large), 401 (a
guard) or 404. We send it when the app first reads the body (its first ``receive()``), as
uvicorn does: a request refused before that gets its answer without the upload.

**A body the app did not wait for.** An app may answer before the request's body has arrived
(a guard refuses, a wrong ``Accept`` gets 406). Hypercorn then closes the connection once the
response is out, and a client that sent its next request on it in the meantime (an httpx
pool, say) gets "server disconnected" instead of an answer. We read the rest of such a body
and drop it, up to ``ServerLimits.unread_body_bytes`` (`DEFAULT_UNREAD_BODY_BYTES`), and
keep the connection, as uvicorn does;
while we wait for it the connection counts as idle, so ``keep_alive_timeout`` bounds a body
that never comes. A larger body, a broken one, or a client that waits for ``100 Continue``
(which was never sent) still gets the connection closed.
"""

from __future__ import annotations

from typing import Any

import h11
import trio
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import AppWrapper, ASGIReceiveEvent

from ..asgi._types import DIRECT_WRITE_EXTENSION
from ._direct import DirectWriter, RequestWriter
from ._notice import ServerApp

__all__ = ["DEFAULT_UNREAD_BODY_BYTES", "DwexH11Protocol"]

#: Bytes of a request body that arrive after its response is complete, read and dropped so
#: that the connection serves the next request; past this the connection is closed instead
#: (the default of ``ServerLimits.unread_body_bytes``).
DEFAULT_UNREAD_BODY_BYTES = 64 * 1024


class DwexH11Protocol(H11Protocol):
    """Hypercorn's ``H11Protocol`` with the checks, the late ``100 Continue`` and the
    dropped late bodies (at most ``unread_body_bytes``) above, and the fast write path of
    ``_direct.py`` offered to each request (``direct``)."""

    def __init__(
        self,
        app: AppWrapper,
        *args: Any,
        direct: DirectWriter | None = None,
        unread_body_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(_ContinueOnFirstRead(app, self), *args, **kwargs)
        # Whether this request's app has asked for its body (so 100 Continue may go out).
        self._continue_wanted = False
        self._direct = direct
        # The fast path of the response being served, which may ask to keep its head.
        self._writer: RequestWriter | None = None
        # Whether the request being served waited for 100 Continue when it arrived.
        self._expected_continue = False
        # Bytes of an answered request's body we may still drop, while we drop one; or None.
        self._droppable: int | None = None
        self._unread_body_bytes = unread_body_bytes

    def request_writer(self, method: str) -> RequestWriter | None:
        """The fast write path for the response to the request being served, if any."""
        connection = self.connection
        if self._direct is None or not isinstance(connection, h11.Connection):
            return None
        self._writer = self._direct.for_request(connection, method)
        return self._writer

    async def _create_stream(self, request: h11.Request) -> None:
        refusal = _refusal(request, self.config.h11_max_incomplete_size)
        if refusal is not None:
            await self._send_error_response(refusal)
            await self.send(Closed())
            return
        self._continue_wanted = False
        connection = self.connection
        self._expected_continue = (
            isinstance(connection, h11.Connection) and connection.they_are_waiting_for_100_continue
        )
        await super()._create_stream(request)

    async def handle(self, event: Event) -> None:
        if self._droppable is not None and isinstance(event, RawData):
            self.connection.receive_data(event.data)
            if await self._drop_body():
                await self._handle_events()  # a request pipelined behind the body
            return
        await super().handle(event)

    async def _maybe_recycle(self) -> None:
        # Hypercorn closes the connection when the response ends before the request's body
        # has (see the module docstring); we read that body first, unless it cannot come.
        connection = self.connection
        if (
            isinstance(connection, h11.Connection)
            and connection.our_state is h11.DONE
            and connection.their_state is h11.SEND_BODY
            and not (self._expected_continue and not self._continue_wanted)
            and not self.context.terminated.is_set()
            and self._unread_body_bytes > 0
        ):
            await self._close_stream()
            self._droppable = self._unread_body_bytes
            await self.send(Updated(idle=True))  # keep_alive_timeout bounds the wait
            await self._drop_body()  # whatever part of it h11 holds already
            return
        await super()._maybe_recycle()

    async def _drop_body(self) -> bool:
        """Drop what has arrived of the answered request's body; at its end, go on to the next
        request (``True``). ``False``: more is to come, or the connection was closed."""
        connection = self.connection
        assert isinstance(connection, h11.Connection), "only an HTTP request has a body to drop"
        while connection.their_state is h11.SEND_BODY:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError:
                event = None  # broken framing, or the client left halfway
            if event is h11.NEED_DATA:
                return False
            droppable = self._droppable
            if isinstance(event, h11.Data) and droppable is not None:
                if len(event.data) > droppable:
                    break
                self._droppable = droppable - len(event.data)
            elif not isinstance(event, h11.EndOfMessage):
                break
        self._droppable = None
        if connection.their_state is not h11.DONE:
            await self.send(Closed())
            return False
        await super()._maybe_recycle()  # the next cycle, as after any complete request
        return True

    async def _send_h11_event(self, event: Any) -> None:
        # Hypercorn's event loop offers 100 Continue whenever the client waits for it; it goes
        # out only once the app has read (see `send_continue`).
        if (
            isinstance(event, h11.InformationalResponse)
            and event.status_code == 100
            and not self._continue_wanted
        ):
            return
        direct = self._direct
        if direct is None:
            await super()._send_h11_event(event)
            return
        # Hypercorn's own send, then ours: straight to the socket when it takes the bytes now
        # (``_direct.py``), else the bounded way; and a head kept for the app's first write.
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state is not h11.ERROR:
                raise
            return  # as Hypercorn does: the client broke the protocol, nothing to send
        if not data:
            return
        writer = self._writer
        if writer is not None and writer.head_wanted and isinstance(event, h11.Response):
            writer.keep_head(data)  # the app writes at once (`RequestWriter.hold_head`)
            return
        rest = direct.send_now(data)
        if rest is None:
            await self.send(RawData(data=data))
        elif rest:
            await direct.send_raw(rest)

    async def send_continue(self) -> None:
        """The app reads the body: send ``100 Continue`` if the client waits for it."""
        self._continue_wanted = True
        connection = self.connection
        if isinstance(connection, h11.Connection) and connection.they_are_waiting_for_100_continue:
            headers = self.config.response_headers("h11")
            await self._send_h11_event(h11.InformationalResponse(status_code=100, headers=headers))


def _refusal(request: h11.Request, head_limit: int) -> int | None:
    """The status that refuses ``request`` before any app sees it, or ``None``."""
    if not request.http_version.startswith(b"1."):
        return 505
    names = {name for name, _ in request.headers}  # h11 lower-cases them
    if b"transfer-encoding" in names and (
        b"content-length" in names or request.http_version == b"1.0"
    ):
        return 400
    if _head_size(request) > head_limit:
        return 431
    return None


def _head_size(request: h11.Request) -> int:
    """The bytes of a request line and headers as the client sent them (give or take spaces)."""
    # "METHOD target HTTP/1.1\r\n", then "name: value\r\n" per header, then "\r\n".
    size = len(request.method) + 1 + len(request.target) + 1 + len(b"HTTP/1.1\r\n") + 2
    return size + sum(len(name) + len(value) + 4 for name, value in request.headers)


class _ContinueOnFirstRead:
    """The app, whose first ``receive()`` of an HTTP request tells the protocol it reads."""

    def __init__(self, app: AppWrapper, protocol: DwexH11Protocol) -> None:
        self._app = app
        # Our server's app wrapper acts on the lifespan scope only: an HTTP request calls the
        # app inside it directly, one suspended frame less for each open stream.
        self._asgi = app.app if isinstance(app, ServerApp) else None
        self._protocol = protocol

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send, sync_spawn, call_soon)
            return
        writer = self._protocol.request_writer(scope["method"])
        request = _RequestMessages(self._protocol, receive, send, writer)
        receive = request.receive
        if writer is not None:
            # Bound once: the writer recognises the app's ``send`` by identity (`app_send`).
            send = writer.app_send = request.send
            scope["extensions"][DIRECT_WRITE_EXTENSION] = writer
        try:
            if self._asgi is not None:
                await self._asgi(scope, receive, send)
            else:
                await self._app(scope, receive, send, sync_spawn, call_soon)
        finally:
            if writer is not None:
                if writer.pending:
                    # The app ended without a last message (it failed, or its client left),
                    # and Hypercorn ends the response next. Shielded: the rest of a frame is
                    # never cut short; the slow path's own write deadline bounds it.
                    with trio.CancelScope(shield=True):
                        await writer.flush()
                writer.close()


class _RequestMessages:
    """One request's ``receive`` and ``send`` as its app sees them.

    The first ``receive()`` lets the protocol send ``100 Continue``. With the fast write path
    (``writer``), ``send`` first sends the rest of a frame that a producer began
    (`RequestWriter.write_now`), and closes the writer at the response's last message. One
    slotted object rather than two closures and their cells: it lives as long as the request,
    which for a stream is hours.
    """

    __slots__ = ("_asked", "_protocol", "_receive", "_send", "_writer")

    def __init__(
        self,
        protocol: DwexH11Protocol,
        receive: Any,
        send: Any,
        writer: RequestWriter | None,
    ) -> None:
        self._protocol = protocol
        self._receive = receive
        self._send = send
        self._writer = writer
        self._asked = False

    async def receive(self) -> ASGIReceiveEvent:
        if not self._asked:
            self._asked = True
            await self._protocol.send_continue()
        message: ASGIReceiveEvent = await self._receive()
        return message

    async def send(self, message: Any) -> None:
        writer = self._writer
        assert writer is not None, "only a request with a writer sends through here"
        # The end of a frame that the app's producer began goes before anything Hypercorn
        # writes.
        if writer.pending:
            await writer.flush()
        # The response's last message: from now on h11 may be answering the next request.
        if message is None or (
            message["type"] == "http.response.body" and not message.get("more_body", False)
        ):
            writer.close()
        await self._send(message)
