"""The `DisconnectNotice` our server puts in every HTTP request's scope.

Hypercorn tells an app that its client left by queueing ``http.disconnect`` for ``receive()``,
so a stream would need a task parked in ``receive()`` for its whole life just to hear it.
:class:`NoticeTaskGroup` is Hypercorn's per-connection task group with one change: the function
that queues messages for the app also fires the request's notice, so a stream that handed its
``receive()`` over (`DisconnectNotice.hand_over`) is told by a callback instead.

:class:`ServerApp` is how the server calls the app: it marks the lifespan scope, so an app
can tell at startup that it runs on this server rather than on plain Hypercorn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.config import Config
from hypercorn.trio.task_group import TaskGroup
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope

from ..asgi._types import DISCONNECT_EXTENSION, SERVER_EXTENSION, ASGIApp

__all__ = ["NoticeTaskGroup", "RequestNotice", "ServerApp"]


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
    """Hypercorn's task group, giving each HTTP request a `RequestNotice` in its scope."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        if scope["type"] != "http":
            return await super().spawn_app(app, config, scope, send)
        notice = RequestNotice()
        extensions: dict[str, Any] = scope["extensions"]
        extensions[DISCONNECT_EXTENSION] = notice
        put = await super().spawn_app(app, config, scope, send)
        return _PutOrNotify(notice, put)


class _PutOrNotify:
    """Queues a message for the app, first firing the request's notice on a disconnect.

    A slotted object rather than a closure: it lives as long as the request (hours, for a
    stream), and is smaller than a function with its cells.
    """

    __slots__ = ("_notice", "_put")

    def __init__(
        self, notice: RequestNotice, put: Callable[[ASGIReceiveEvent], Awaitable[None]]
    ) -> None:
        self._notice = notice
        self._put = put

    async def __call__(self, message: ASGIReceiveEvent) -> None:
        notice = self._notice
        if message["type"] == "http.disconnect":
            notice.client_gone()
        if not notice.handed_over:
            await self._put(message)
        # Handed over: the app reads no more, so nothing is queued (a queue that nobody
        # drains would block the connection once full).
