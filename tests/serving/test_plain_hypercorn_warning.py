"""An app served by plain Hypercorn says so once at startup; under our server it is quiet.

Plain ``hypercorn --worker-class trio`` lacks the fixes of ``serving/_fixes.py``: a client that
pipelines a byte and leaves keeps its stream open (``test_hypercorn_pitfalls.py``'s canaries
show upstream still does). The app cannot fix the server, but it can tell its operator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as upstream_serve

from trio_dwex import Controller, Get, Module, create_app
from trio_dwex.serving._fixes import serve_hypercorn

WARNING = "not served by trio-dwex's server"


@Controller()
class PingController:
    @Get("ping")
    async def ping(self) -> dict[str, bool]:
        return {"ok": True}


@Module(controllers=[PingController])
class PingModule:
    pass


Server = Callable[..., Awaitable[None]]


async def serve_and_ping(serve: Server) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        app = create_app(PingModule)
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)
        )
        async with httpx.AsyncClient() as client:
            assert (await client.get(binds[0] + "/ping")).json() == {"ok": True}
        stop.set()


@pytest.mark.parametrize(
    ("name", "serve", "warnings"),
    [
        ("plain hypercorn", upstream_serve, 1),
        ("ours", partial(serve_hypercorn, write_timeout=5), 0),
    ],
)
async def test_a_warning_at_startup_only_under_plain_hypercorn(
    name: str, serve: Server, warnings: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="trio_dwex.asgi"), trio.fail_after(10):
        await serve_and_ping(serve)
    said = [r for r in caplog.records if r.name == "trio_dwex.asgi" and WARNING in r.message]
    assert len(said) == warnings, name
    if said:
        assert "trio-dwex run" in said[0].message
