"""Shared pieces of the real-client tests: finding binaries, small ASGI apps, timed reads."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tests.helpers import accept_lifespan
from trio_dwex.asgi._types import ASGIApp, Message, Receive, Scope, Send

# The guide's intervals are tests' business: short by default (tests that measure liveness
# set `guide.TICK` themselves). Set before the first import of examples.guide anywhere.
os.environ.setdefault("GUIDE_TICK", "0.01")

INSTALL_HINT = "run .ci/install-system-packages (as root; CI does) to install it"


def require_binary(name: str, *extra_dirs: str) -> str:
    """The path of a system program these tests drive; a clear failure (never a skip) if absent.

    ``extra_dirs`` covers programs installed outside a non-root ``PATH`` (``/usr/sbin/nginx``).
    """
    found = shutil.which(name)
    if found is None:
        for folder in extra_dirs:
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found = str(candidate)
                break
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return found


def free_port() -> int:
    """A loopback port nothing listens on now, for programs that cannot report their own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def static_page(html: str) -> ASGIApp:
    """A raw ASGI app answering every GET with ``html``: the page of a browser test."""
    body = html.encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@dataclass
class Recorded:
    """A request as the app received it."""

    method: str
    path: str
    headers: dict[str, str]
    at: float


@dataclass
class Recorder:
    """ASGI middleware that writes down every HTTP request before the app handles it."""

    app: ASGIApp
    requests: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append(
                Recorded(
                    method=scope["method"],
                    path=scope["path"],
                    headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
                    at=trio.current_time(),
                )
            )
        await self.app(scope, receive, send)


def strip_response_header(app: ASGIApp, name: bytes, *, prefix: str) -> ASGIApp:
    """Serve ``app`` also under ``prefix``, where responses lose the header ``name``.

    The control of the proxy tests: the same stream, byte for byte, minus one header.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(prefix + "/"):
            await app(scope, receive, send)
            return
        path = scope["path"][len(prefix) :]
        inner = {**scope, "path": path, "raw_path": path.encode()}

        async def send_without(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k.lower() != name]
                message = {**message, "headers": headers}
            await send(message)

        await app(inner, receive, send_without)

    return wrapped


@dataclass
class Timed:
    """Lines of output and when each arrived, relative to the start of the read."""

    lines: list[tuple[float, str]] = field(default_factory=list)

    def first(self, text: str) -> float:
        """When the first line containing ``text`` arrived."""
        for at, line in self.lines:
            if text in line:
                return at
        raise AssertionError(f"no line contains {text!r}: {[line for _, line in self.lines]}")

    def last(self, text: str) -> float:
        found = [at for at, line in self.lines if text in line]
        if not found:
            raise AssertionError(f"no line contains {text!r}: {[line for _, line in self.lines]}")
        return found[-1]

    def matching(self, text: str) -> list[str]:
        return [line for _, line in self.lines if text in line]
