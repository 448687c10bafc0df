"""The `DisconnectNotice` our server puts in every HTTP request's scope.

Hypercorn tells an app that its client left by queueing ``http.disconnect`` for ``receive()``,
so a stream would need a task parked in ``receive()`` for its whole life just to hear it.
:class:`NoticeTaskGroup` is Hypercorn's per-connection task group with one change: the function
that queues messages for the app also fires the request's notice, so a stream that handed its
``receive()`` over (`DisconnectNotice.hand_over`) is told by a callback instead.

:func:`announce_server` marks the lifespan scope, so an app can tell at startup that it runs
on this server rather than on plain Hypercorn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.config import Config
from hypercorn.trio.task_group import TaskGroup
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope

from ..asgi._types import DISCONNECT_EXTENSION, SERVER_EXTENSION, ASGIApp

__all__ = ["NoticeTaskGroup", "RequestNotice", "announce_server"]


def announce_server(app: ASGIApp) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """``app`` with `SERVER_EXTENSION` added to its lifespan scope's ``extensions``.

    Loosely typed like the rest of this layer's ASGI glue: Hypercorn's scope and message
    types are stricter ``TypedDict`` s than the app's mappings.
    """

    async def announced(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            scope = {**scope, "extensions": {**scope.get("extensions", {}), SERVER_EXTENSION: {}}}
        await app(scope, receive, send)

    return announced


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

        async def put_or_notify(message: ASGIReceiveEvent) -> None:
            if message["type"] == "http.disconnect":
                notice.client_gone()
            if not notice.handed_over:
                await put(message)
            # Handed over: the app reads no more, so nothing is queued (a queue that nobody
            # drains would block the connection once full).

        return put_or_notify
