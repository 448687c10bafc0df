"""The `DisconnectNotice` our server puts in every HTTP request's scope.

Hypercorn tells an app that its client left by queueing ``http.disconnect`` for ``receive()``,
so a stream would need a task parked in ``receive()`` for its whole life just to hear it.
:class:`NoticeTaskGroup` is Hypercorn's per-connection task group with one change: the
messages for the app wait in a `RequestInbox`, whose ``put`` also fires the request's notice,
so a stream that handed its ``receive()`` over (`DisconnectNotice.hand_over`) is told by a
callback instead.

:class:`ServerApp` is how the server calls the app: it marks the lifespan scope, so an app
can tell at startup that it runs on this server rather than on plain Hypercorn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.task_group import TaskGroup, _handle
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope

from ..asgi._types import DISCONNECT_EXTENSION, SERVER_EXTENSION, ASGIApp

__all__ = ["NoticeTaskGroup", "RequestInbox", "RequestNotice", "ServerApp"]


# The app task's name, made once (upstream names it per request, a string each open stream
# keeps): Trio formats the name of a task started without one.
_APP_TASK = f"{_handle.__module__}.{_handle.__qualname__}"


class ServerApp:
    """An ASGI 3 app as our server calls it: Hypercorn's ``AppWrapper`` (whose two extra
    arguments serve WSGI apps only), with `SERVER_EXTENSION` added to the lifespan scope's
    ``extensions``.

    One object in place of Hypercorn's ``ASGIWrapper`` around a closure that announced the
    server: each is a coroutine frame that every open stream keeps suspended for its whole
    life, and our HTTP/1 protocol calls ``app`` itself (``_h11.py``), so a stream keeps
    neither. Loosely typed like the rest of this layer's ASGI glue: Hypercorn's scope and
    message types are stricter ``TypedDict`` s than the app's mappings.
    """

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        #: The ASGI 3 app itself.
        self.app: Callable[[Any, Any, Any], Awaitable[None]] = app

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any
    ) -> None:
        if scope["type"] == "lifespan":
            scope = {**scope, "extensions": {**scope.get("extensions", {}), SERVER_EXTENSION: {}}}
        await self.app(scope, receive, send)


class RequestNotice:
    """One HTTP request's `DisconnectNotice`."""

    __slots__ = ("_callback", "gone")

    def __init__(self) -> None:
        self._callback: Callable[[], object] | None = None
        self.gone = False

    @property
    def handed_over(self) -> bool:
        """Whether the app handed ``receive()`` over: it reads no more messages."""
        return self._callback is not None

    def hand_over(self, callback: Callable[[], object], /) -> None:
        if self._callback is not None:
            raise RuntimeError("a request's receive() can be handed over only once")
        self._callback = callback
        if self.gone:
            callback()

    def client_gone(self) -> None:
        if not self.gone:
            self.gone = True
            if self._callback is not None:
                self._callback()


class NoticeTaskGroup(TaskGroup):
    """Hypercorn's task group, giving each request a `RequestInbox` for the messages its
    app receives, and each HTTP request a `RequestNotice` in its scope."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        notice = None
        if scope["type"] == "http":
            notice = RequestNotice()
            extensions: dict[str, Any] = scope["extensions"]
            extensions[DISCONNECT_EXTENSION] = notice
        inbox = RequestInbox(config.max_app_queue_size, notice)
        # What upstream's ``spawn_app`` does, with our inbox for its memory channel and a task
        # name made once.
        nursery = self._nursery
        assert nursery is not None, "apps are spawned only inside the entered task group"
        nursery.start_soon(
            _handle,
            app,
            config,
            scope,
            inbox.receive,
            send,
            trio.to_thread.run_sync,
            trio.from_thread.run,
            name=_APP_TASK,
        )
        return inbox.put


class RequestInbox:
    """The messages one request's app has yet to ``receive()``: body chunks, then
    ``http.disconnect``; at most ``limit`` of them (Hypercorn's ``max_app_queue_size``), the
    protocol's ``put`` waits for room beyond.

    Upstream keeps them in a trio memory channel, which with its two ends, its tables of
    waiting tasks and its deque costs about 1.2 KiB per request; a request that streams for
    hours keeps it all that time, mostly empty. This is a list, and a parking lot made only
    when someone waits. Waiting is rare (an app slower than a client's upload, or an app
    waiting for its next chunk), so every change wakes every waiter and each checks again.

    With a ``notice`` (HTTP requests), ``http.disconnect`` also fires the notice, and once
    the app has handed its ``receive()`` over, nothing more is queued: nobody would drain it,
    and a full inbox would block the connection.
    """

    __slots__ = ("_limit", "_messages", "_notice", "_waiting")

    def __init__(self, limit: int, notice: RequestNotice | None = None) -> None:
        self._limit = max(limit, 1)
        self._notice = notice
        self._messages: list[ASGIReceiveEvent] = []
        self._waiting: trio.lowlevel.ParkingLot | None = None

    async def put(self, message: ASGIReceiveEvent) -> None:
        """Queue ``message`` for the app, waiting while the inbox is full."""
        notice = self._notice
        if notice is not None:
            if message["type"] == "http.disconnect":
                notice.client_gone()
            if notice.handed_over:
                return
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._messages) >= self._limit:
            await self._park()
        self._messages.append(message)
        self._changed()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> ASGIReceiveEvent:
        """The app's ``receive()``: the next message, waiting for one if none is queued."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._messages:
            await self._park()
        message = self._messages.pop(0)
        self._changed()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return message

    async def _park(self) -> None:
        if self._waiting is None:
            self._waiting = trio.lowlevel.ParkingLot()
        await self._waiting.park()

    def _changed(self) -> None:
        if self._waiting:
            self._waiting.unpark_all()
