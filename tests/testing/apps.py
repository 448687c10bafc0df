"""Raw ASGI apps that answer from a script, to put a client through exact server behaviours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from tests.helpers import accept_lifespan
from trio_dwex.asgi._types import Receive, Scope, Send

SSE_HEADERS = ((b"content-type", b"text/event-stream; charset=utf-8"),)


@dataclass(frozen=True)
class Reply:
    """One scripted response: a status, headers, then body pieces.

    ``body`` items are bytes to send, or a float: seconds to pause. After the body the response
    ends, unless ``hold``: then it stays open until the client disconnects; or ``abort``: then
    the app raises `AppAborted`, and the server cuts the connection without ending the body
    (no last chunk), as when a server crashes mid-stream.
    """

    body: Sequence[bytes | float] = ()
    status: int = 200
    headers: Sequence[tuple[bytes, bytes]] = SSE_HEADERS
    hold: bool = False
    abort: bool = False


class AppAborted(Exception):
    """Raised by `ScriptedApp` for a `Reply` with ``abort``, after its headers and body."""


NO_CONTENT = Reply(status=204, headers=())


@dataclass
class Seen:
    """What the app saw of one request."""

    path: str
    headers: dict[str, str]
    at: float
    ended_at: float | None = None
    disconnected: trio.Event = field(default_factory=trio.Event)


class ScriptedApp:
    """Answers the n-th request with the n-th reply, and 204 (stop, EventSource!) after that."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.seen: list[Seen] = []

    def last_event_ids(self) -> list[str | None]:
        return [request.headers.get("last-event-id") for request in self.seen]

    def gaps(self) -> list[float]:
        """Seconds from the end of each response to the next request."""
        return [
            after.at - before.ended_at
            for before, after in zip(self.seen, self.seen[1:], strict=False)
            if before.ended_at is not None
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        seen = Seen(
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            at=trio.current_time(),
        )
        index = len(self.seen)
        self.seen.append(seen)
        reply = self.replies[index] if index < len(self.replies) else NO_CONTENT
        try:
            await send(
                {"type": "http.response.start", "status": reply.status, "headers": reply.headers}
            )
            for piece in reply.body:
                if isinstance(piece, float):
                    await trio.sleep(piece)
                else:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            if reply.abort:
                raise AppAborted(f"scripted abort of response {index}")
            if reply.hold:
                while (await receive())["type"] != "http.disconnect":
                    pass
                seen.disconnected.set()
            else:
                await send({"type": "http.response.body", "body": b""})
        finally:
            seen.ended_at = trio.current_time()
