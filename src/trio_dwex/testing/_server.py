"""`serve_app`: a real Hypercorn Trio server for an app, on a free loopback port, for tests.

A test that talks to a real server sees what users see: HTTP/1.1 framing, chunked streaming,
disconnects that arrive as TCP events, HTTP/2 over TLS. The server is the one ``serve`` runs in
production (Hypercorn's Trio worker with our fixes), on port 0 so that tests can run side by
side; the port is learnt from ``task_status`` rather than guessed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Protocol

import trio
from hypercorn.config import Config

from ..asgi._types import ASGIApp
from ..serving._limits import ServerLimits
from ..serving._serve import make_config, serve

__all__ = [
    "TEST_GRACEFUL_TIMEOUT",
    "ServerFactory",
    "run_test_server",
    "serve_app",
    "server_config",
]

#: Seconds that plain requests still running at exit get (streams are closed at once anyway):
#: short, so that a test that leaves a request hanging costs little.
TEST_GRACEFUL_TIMEOUT = 2.0


class ServerFactory(Protocol):
    """The type of the ``sse_server`` pytest fixture (it serves an app, returns its base URL).

    Here rather than in the plugin so that annotating a test does not import pytest's plugin.
    """

    def __call__(self, app: ASGIApp, /, **settings: Any) -> Awaitable[str]: ...


def server_config(host: str = "127.0.0.1", **settings: Any) -> Config:
    """The Hypercorn `Config` of a test server: port 0 of ``host``, short graceful timeout.

    Raises ``TypeError`` for a setting that `hypercorn.config.Config` does not have.
    """
    settings.setdefault("graceful_timeout", TEST_GRACEFUL_TIMEOUT)
    return make_config(host=host, port=0, **settings)


async def run_test_server(
    app: ASGIApp,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    config: Config | None = None,
    write_timeout: float | None = None,
    limits: ServerLimits | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on a free loopback port until ``shutdown_trigger`` returns.

    The task form of `serve_app`, for ``await nursery.start(...)``: ``task_status`` gets the
    base URL (``http://127.0.0.1:PORT``, or ``https://`` when ``certfile`` is set).
    ``config`` defaults to `server_config()`. At shutdown, open SSE streams of a trio-dwex app
    are closed at once (their cleanup runs); other requests get ``graceful_timeout`` seconds.
    """
    await serve(
        app,
        config=server_config() if config is None else config,
        write_timeout=write_timeout,
        limits=limits,
        # A test's server closes its streams at once: a spread shutdown is for production.
        drain_window=0.0,
        shutdown_trigger=shutdown_trigger,
        task_status=_FirstBind(task_status),
    )


class _FirstBind:
    """Passes on the first of the binds that `serve` reports: we made one, the base URL."""

    def __init__(self, outer: trio.TaskStatus[str]) -> None:
        self._outer = outer

    def started(self, value: list[str] | None = None) -> None:
        if not value:
            raise RuntimeError("the server reported no address; it cannot be reached")
        self._outer.started(value[0])


@asynccontextmanager
async def serve_app(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    write_timeout: float | None = None,
    limits: ServerLimits | None = None,
    **settings: Any,
) -> AsyncIterator[str]:
    """Serve ``app`` with Hypercorn's Trio worker on a free port of ``host``; yield its base URL.

    ::

        async with serve_app(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                ...

    The server runs in a nursery of the caller's task and stops when the block exits: open
    SSE streams are closed at once (so their ``finally`` blocks and ``on_close`` callbacks
    have run when the block is left), then the app's lifespan shutdown runs.

    Args:
        host: the loopback address to bind (``"::1"`` for IPv6).
        write_timeout: seconds a client may accept no bytes before the server drops it; by
            default the app's ``send_timeout``. Set it low in tests of stalled clients.
        limits: the server's `ServerLimits` (connections at once, HTTP/2 rates); defaults.
        settings: attributes of `hypercorn.config.Config`, such as ``certfile`` and
            ``keyfile`` (TLS, and with it HTTP/2 by ALPN), ``keep_alive_timeout``, or
            ``graceful_timeout`` (default `TEST_GRACEFUL_TIMEOUT`). An unknown name raises
            ``TypeError``.
    """
    # Built here, outside the nursery, so that a bad setting raises a plain TypeError.
    config = server_config(host, **settings)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(
            partial(
                run_test_server,
                app,
                shutdown_trigger=shutdown.wait,
                config=config,
                write_timeout=write_timeout,
                limits=limits,
            )
        )
        try:
            yield url
        finally:
            shutdown.set()
