"""`serve_app`: a real Hypercorn Trio server for an app, on a free loopback port, for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ..asgi.types import ASGIApp

__all__ = ["serve_app"]


@asynccontextmanager
async def serve_app(app: ASGIApp, *, host: str = "127.0.0.1", **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with Hypercorn's Trio worker on a free port of ``host``; yield its base URL.

    The server runs in a nursery of the caller's task and is shut down when the block exits.
    Extra keyword arguments set attributes of `hypercorn.config.Config` (for example
    ``graceful_timeout=1``).
    """
    hypercorn_config = Config()
    hypercorn_config.bind = [f"{host}:0"]
    hypercorn_config.accesslog = None
    hypercorn_config.graceful_timeout = 2.0
    for name, value in config.items():
        if not hasattr(hypercorn_config, name):
            raise TypeError(f"serve_app() got an unknown Hypercorn setting {name!r}")
        setattr(hypercorn_config, name, value)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve, app, hypercorn_config, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]
        )
        try:
            yield binds[0]
        finally:
            shutdown.set()
