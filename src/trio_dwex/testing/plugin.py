"""The trio-dwex pytest plugin: fixtures that serve your app for real, for pytest-trio tests.

Installed with trio-dwex (a ``pytest11`` entry point), so there is nothing to enable. Tell it
which app to serve, either in your ini file::

    [tool.pytest.ini_options]
    trio_dwex_app = "myproject.main:app"

or, for an app that needs building per test, by overriding the ``sse_app`` fixture in a
``conftest.py``. Then:

``sse_app``
    The ASGI app under test (from ``trio_dwex_app``, or your override).
``sse_server``
    A factory: ``url = await sse_server(app, **settings)`` serves any app on a free loopback
    port until the test ends; ``settings`` are those of `serve_app`.
``app_url``
    The base URL of ``sse_app``, served for this test.
``sse_client``
    An ``httpx.AsyncClient`` whose ``base_url`` is ``app_url``. Pass it to `EventSource` to
    read a stream by its path (the EventSource lifts the read timeout: streams idle).

The fixtures are async, so tests that use them must be Trio tests: ``trio_mode = true`` in
the ini file, or ``@pytest.mark.trio`` on each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from ..asgi._types import ASGIApp
from ..serving._load import AppLoadError, load_app
from ._server import ServerFactory, run_test_server, server_config

__all__ = ["ServerFactory", "app_url", "sse_app", "sse_client", "sse_server"]

INI_OPTION = "trio_dwex_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_OPTION,
        help='the app the sse_app fixture serves, as "package.module:attribute"',
        default="",
    )


@pytest.fixture
def sse_app(request: pytest.FixtureRequest) -> ASGIApp:
    """The app under test: the ``trio_dwex_app`` ini option. Override it for anything else."""
    spec = request.config.getini(INI_OPTION)
    if not spec:
        pytest.fail(
            "the trio-dwex fixtures need to know your app: set trio_dwex_app = "
            '"package.module:app" in your pytest configuration, or define an `sse_app` '
            "fixture that returns it (in conftest.py)",
            pytrace=False,
        )
    try:
        return load_app(spec)
    except AppLoadError as error:
        pytest.fail(f"{INI_OPTION}: {error}", pytrace=False)


@pytest.fixture
async def sse_server() -> AsyncIterator[ServerFactory]:
    """Serve apps on free loopback ports until the test ends: ``url = await sse_server(app)``.

    Every server runs in this fixture's nursery, not the test's, so it outlives the call
    that started it; at teardown all of them shut down (open streams closed at once).
    """
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def start(
            app: ASGIApp, /, *, write_timeout: float | None = None, **settings: Any
        ) -> str:
            config = server_config(**settings)
            url: str = await nursery.start(
                partial(
                    run_test_server,
                    app,
                    shutdown_trigger=shutdown.wait,
                    config=config,
                    write_timeout=write_timeout,
                )
            )
            return url

        try:
            yield start
        finally:
            shutdown.set()


@pytest.fixture
async def app_url(sse_server: ServerFactory, sse_app: ASGIApp) -> str:
    """The base URL of ``sse_app``, served on a free loopback port for this test."""
    return await sse_server(sse_app)


@pytest.fixture
async def sse_client(app_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` on ``app_url``, with 10 s timeouts so no request hangs a test."""
    async with httpx.AsyncClient(base_url=app_url, timeout=10.0) as client:
        yield client
