"""The `DisconnectNotice` our server puts in every HTTP request's scope.

Hypercorn tells an app that its client left by queueing ``http.disconnect`` for ``receive()``,
so a stream would need a task parked in ``receive()`` for its whole life just to hear it.
:class:`NoticeTaskGroup` is Hypercorn's per-connection task group with one change: the function
that queues messages for the app also fires the request's notice, so a stream that handed its
``receive()`` over (`DisconnectNotice.hand_over`) is told by a callback instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.config import Config
from hypercorn.trio.task_group import TaskGroup
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope

from ..asgi._types import DISCONNECT_EXTENSION

__all__ = ["NoticeTaskGroup", "RequestNotice"]


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
