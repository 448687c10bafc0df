"""CORS: answering preflights and adding the headers that let another origin read a response."""

from __future__ import annotations

from .._errors import clip
from ._responses import JSONResponse, Response
from ._settings import CorsSettings
from ._types import Message, Scope, Send

__all__ = ["Cors"]


class Cors:
    """Applies one `CorsSettings` to requests; built once per app."""

    def __init__(self, settings: CorsSettings) -> None:
        self.settings = settings
        self._any_origin = "*" in settings.allow_origins
        self._origins = frozenset(settings.allow_origins)
        self._any_header = "*" in settings.allow_headers
        self._headers = frozenset(h.lower() for h in settings.allow_headers)
        self._methods = frozenset(m.upper() for m in settings.allow_methods)

    def allows(self, origin: str) -> bool:
        """Whether ``origin`` may read responses."""
        return self._any_origin or origin in self._origins

    def _allow_origin_headers(self, origin: str) -> dict[str, str]:
        # A literal "*" is refused by browsers on credentialed requests: echo the origin then.
        echo = self.settings.allow_credentials or not self._any_origin
        headers = {"Access-Control-Allow-Origin": origin if echo else "*"}
        if echo:
            headers["Vary"] = "Origin"
        if self.settings.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def preflight(self, origin: str, method: str, requested_headers: str) -> Response:
        """The answer to an ``OPTIONS`` preflight."""
        asked = [h.strip().lower() for h in requested_headers.split(",") if h.strip()]
        problems = []
        # Each value the client sent is clipped: a refusal should not echo kilobytes back.
        if not self.allows(origin):
            problems.append(f"origin {clip(origin)!r} is not allowed")
        if method.upper() not in self._methods:
            problems.append(f"method {clip(method)!r} is not allowed")
        refused = [h for h in asked if not self._any_header and h not in self._headers]
        if refused:
            problems.append(f"headers {clip(', '.join(refused))} are not allowed")
        if problems:
            return JSONResponse(
                {
                    "statusCode": 403,
                    "error": "Forbidden",
                    "message": "CORS: " + "; ".join(problems),
                },
                403,
            )
        headers = self._allow_origin_headers(origin)
        headers["Access-Control-Allow-Methods"] = ", ".join(sorted(self._methods))
        if asked:
            headers["Access-Control-Allow-Headers"] = ", ".join(asked)
        headers["Access-Control-Max-Age"] = str(self.settings.max_age)
        return Response(b"", 204, headers)

    def wrap_send(self, origin: str, send: Send) -> Send:
        """A ``send`` that adds the CORS headers to the response start, if ``origin`` is allowed."""
        if not self.allows(origin):
            return send
        extra = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self._allow_origin_headers(origin).items()
        ]
        if self.settings.expose_headers:
            exposed = ", ".join(self.settings.expose_headers).encode("latin-1")
            extra.append((b"access-control-expose-headers", exposed))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return send_with_cors


def origin_of(scope: Scope) -> str | None:
    """The request's ``Origin`` header, if any."""
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return str(value.decode("latin-1"))
    return None
