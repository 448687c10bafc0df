"""The guide app, with its ticks shortened so the whole guide runs in a moment; and a real
redis-server for the examples that run on several workers (`redis_server`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

os.environ["GUIDE_TICK"] = "0.01"

from examples import guide
from tests.broadcast.conftest import RedisServer
from trio_dwex.testing._server import serve_app


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with serve_app(guide.app) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of its own on a free loopback port, stopped by PID at the end."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
