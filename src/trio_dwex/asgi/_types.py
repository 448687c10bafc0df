"""ASGI 3 type aliases, kept loose on purpose: servers differ in the exact message shapes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, TypeAlias

__all__ = [
    "DIRECT_WRITE_EXTENSION",
    "DISCONNECT_EXTENSION",
    "SERVER_EXTENSION",
    "ASGIApp",
    "DisconnectNotice",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "scope_header",
    "without_foreign_direct_write",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


def scope_header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) in an ASGI scope, as latin-1 text."""
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


DISCONNECT_EXTENSION = "trio_dwex.disconnect"
"""The key, in ``scope["extensions"]``, of a server's `DisconnectNotice` for the request.

trio-dwex's own server (``trio_dwex.serve``) offers it; with any other server the key is
absent and a stream waits in ``receive()`` for ``http.disconnect``, as ASGI intends."""


DIRECT_WRITE_EXTENSION = "trio_dwex.direct_write"
"""The key, in ``scope["extensions"]``, of a server's fast path for the response's body.

Its value has ``async write(data: bytes) -> bool``: after ``http.response.start`` was sent, a
body chunk given to it is written straight to the connection, and ``True`` says so; ``False``
says nothing was written, and the chunk is sent as an ASGI message as usual. It also has
``write_now`` (the same, without waiting, for a stream's producers), ``hold_head()`` (called
before ``http.response.start`` by an app that writes at once: the head then leaves with the
first ``write``, in one system call) and ``app_send``: the
``send`` the server gave the app with it; `DwexApp` drops the extension from the scope when its
own ``send`` is another (an ASGI middleware wraps the app, and bodies must go through it).
trio-dwex's own server offers it for HTTP/1 over plain TCP (``serving/_direct.py``); with any
other server the key is absent."""


def without_foreign_direct_write(scope: Scope, send: Send) -> Scope:
    """``scope``, less `DIRECT_WRITE_EXTENSION` when ``send`` is not the one the server gave with
    it: something between the server and the app wraps the response (an ASGI middleware that
    compresses, logs or rewrites bodies), and bytes written straight to the socket would skip it.
    """
    extensions = scope.get("extensions")
    direct = extensions.get(DIRECT_WRITE_EXTENSION) if extensions else None
    if direct is None or getattr(direct, "app_send", None) is send:
        return scope
    assert extensions is not None
    kept = {key: value for key, value in extensions.items() if key != DIRECT_WRITE_EXTENSION}
    return {**scope, "extensions": kept}


SERVER_EXTENSION = "trio_dwex.server"
"""A key that trio-dwex's own server puts in the lifespan scope's ``extensions``.

Its presence tells the app that it runs with the server's fixes for long-lived streams
(``serving/_fixes.py``); without it the app logs one warning at startup, since under plain
``hypercorn`` some departed clients are never noticed (docs/troubleshooting.md)."""


class DisconnectNotice(Protocol):
    """How a server tells a streaming response that its client left, without a waiting task.

    A stream that only waits for ``http.disconnect`` would otherwise keep a task parked in
    ``receive()`` for its whole life: about 2 KiB per open stream, for one message.
    """

    def hand_over(self, callback: Callable[[], object], /) -> None:
        """Stop delivering this request's messages; call ``callback()`` when the client leaves.

        After this the app never calls ``receive()`` for the request: the server drops any
        further request messages, and calls ``callback`` once, synchronously, the moment it
        knows the client is gone (at once if it already knows).
        """
