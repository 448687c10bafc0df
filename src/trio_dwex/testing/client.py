"""`EventSource`: a Trio SSE client on httpx and our own decoder, that behaves like a browser's.

It reconnects after a dropped connection, waits the server's ``retry``, sends
``Last-Event-ID``, stops on HTTP 204, and fails clearly on a wrong status or content type.
``max_events`` and ``timeout`` end the iteration, so a test never hangs on an endless stream::

    async with EventSource(url + "/events/countdown", max_events=3, timeout=5) as source:
        async for event in source:
            print(event.type, event.json())
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Self

import httpx
import trio

from ..errors import DwexError
from ..wire.decoder import MessageEvent, SseDecoder

__all__ = ["EventSource", "EventSourceError"]

#: Seconds to wait before reconnecting when the server sent no ``retry`` (browsers use ~3 s).
DEFAULT_RECONNECT_DELAY = 3.0


class EventSourceError(DwexError):
    """The server answered in a way an EventSource does not retry: a wrong status or type."""


class EventSource:
    """A server-sent events client; ``async with`` it, then ``async for`` its events.

    Args:
        url: the stream's address.
        headers: extra request headers (``Authorization``, ...).
        last_event_id: sent as ``Last-Event-ID`` on the first connection, as if resuming.
        reconnect: reconnect after a dropped connection (``False``: stop instead).
        max_events: stop after this many events.
        timeout: stop after this many seconds in all (the iteration ends; nothing raises).
        reconnect_delay: seconds to wait before reconnecting until the server sends ``retry``.
        max_reconnects: give up (the iteration ends) after this many reconnections.
        client: an ``httpx.AsyncClient`` to use (not closed here); a new one otherwise.

    Attributes:
        last_event_id: the id a reconnection sends.
        connections: how many times it connected.
        response: the current HTTP response, for its status and headers.
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
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.reconnect = reconnect
        self.max_events = max_events
        self.timeout = timeout
        self.reconnect_delay = reconnect_delay
        self.max_reconnects = max_reconnects
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self._decoder = SseDecoder()
        self._first_id = last_event_id
        self._ready: deque[MessageEvent] = deque()
        self._received = 0
        self._deadline = math.inf
        self._done = False
        self.connections = 0
        self._attempts = 0
        self.response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None

    @property
    def last_event_id(self) -> str:
        """The last event id seen (or given), which a reconnection sends."""
        return self._decoder.last_event_id or (self._first_id or "")

    async def __aenter__(self) -> Self:
        if self.timeout is not None:
            self._deadline = trio.current_time() + self.timeout
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (and the client, if this object made it)."""
        self._done = True
        await self._disconnect()
        if self._own_client:
            await self._client.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> MessageEvent:
        if self._done or (self.max_events is not None and self._received >= self.max_events):
            raise StopAsyncIteration
        with trio.move_on_at(self._deadline):
            event = await self._next_event()
            if event is not None:
                self._received += 1
                return event
        await self._disconnect()
        self._done = True
        raise StopAsyncIteration

    async def _next_event(self) -> MessageEvent | None:
        while not self._ready:
            if self._chunks is None and not await self._connect():
                return None
            assert self._chunks is not None
            try:
                chunk = await anext(self._chunks)
            except (StopAsyncIteration, httpx.TransportError):
                chunk = None
            if chunk is None:
                # The connection dropped: an incomplete event is discarded, as browsers do.
                self._decoder.close()
                await self._disconnect()
                if not await self._may_reconnect():
                    return None
                continue
            self._ready.extend(self._decoder.feed(chunk))
        return self._ready.popleft()

    async def _may_reconnect(self) -> bool:
        if not self.reconnect:
            return False
        if self.max_reconnects is not None and self._attempts > self.max_reconnects:
            return False
        retry = self._decoder.retry
        await trio.sleep(self.reconnect_delay if retry is None else retry / 1000)
        return True

    async def _connect(self) -> bool:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self.headers}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        while True:
            self._attempts += 1
            request = self._client.build_request("GET", self.url, headers=headers)
            try:
                response = await self._client.send(request, stream=True)
                break
            except httpx.TransportError:
                if not await self._may_reconnect():
                    return False
        self.connections += 1
        self.response = response
        if response.status_code == 204:
            await response.aclose()
            return False
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200 or not content_type.startswith("text/event-stream"):
            body = (await response.aread())[:300].decode("utf-8", "replace")
            await response.aclose()
            raise EventSourceError(
                f"GET {self.url} answered {response.status_code} with content type "
                f"{content_type!r}, not a 200 text/event-stream: {body}"
            )
        self._chunks = response.aiter_raw()
        return True

    async def _disconnect(self) -> None:
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            # Close httpx's async generator now, not at garbage collection.
            await chunks.aclose()  # type: ignore[attr-defined]
        if self.response is not None:
            await self.response.aclose()
