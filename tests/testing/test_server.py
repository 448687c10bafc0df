"""`serve_app` runs a real server on a free port, and leaves nothing behind."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.testing.apps import Reply, ScriptedApp
from tests.testing.dwex_apps import make_app
from trio_dwex.lowlevel import CloseReason
from trio_dwex.testing import EventSource, serve_app

DEADLINE = 10


async def test_yields_a_loopback_url_and_stops_listening_on_exit() -> None:
    app = ScriptedApp(Reply([b"data: hi\n\n"]))
    with trio.fail_after(DEADLINE):
        async with serve_app(app) as url, serve_app(app) as other:
            assert url.startswith("http://127.0.0.1:")
            assert other != url  # two servers side by side, each on its own free port
            async with httpx.AsyncClient() as client:
                response = await client.get(url + "/x")
            assert response.text == "data: hi\n\n"
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(url + "/x")


async def test_exit_closes_open_streams_at_once_and_runs_their_cleanup() -> None:
    app, cleanups = make_app()
    with trio.fail_after(DEADLINE):
        async with serve_app(app, graceful_timeout=5) as url:
            async with EventSource(url + "/idle", max_reconnects=0) as source:
                assert (await anext(source)).data == "hello"
                start = trio.current_time()
                # Leaving the server's block with the stream still open.
            # (the client left first here; now one that stays to the end)
            source = EventSource(url + "/idle", max_reconnects=0)
            assert (await anext(source)).data == "hello"
        exit_took = trio.current_time() - start
        await source.aclose()
    # Not the 5 s graceful timeout: streams are closed at shutdown, not waited for.
    assert exit_took < 2.0
    assert cleanups.finished == ["idle", "idle"]
    assert app.streams.closed[CloseReason.SHUTDOWN] == 1
    assert app.streams.open_count == 0


async def test_an_unknown_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="nonsense"):
        async with serve_app(ScriptedApp(), nonsense=1):
            pass
