"""Keep-alive comments that no common SSE client mistakes for an event.

A stream sets an id, then idles through several keep-alives, then sends one more event. Every
client must deliver exactly the two events, each with its JSON data: `httpx-sse` up to 0.4.3
turned each blank line after an id into an empty event (its issue #35), so a keep-alive that
ended with a blank line made ``json.loads(event.data)`` fail every 15 seconds. The clients are
the real packages: `httpx-sse`, `sseclient-py` and `aiohttp-sse-client` from PyPI (the ``test``
extra), npm's `eventsource` and `eventsource-parser` on Node.js (installed from the lockfile
in ``tests/clients/node`` on first use), and Chromium's EventSource.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.clients.test_chromium import run_page
from tests.clients.tools import require_binary, static_page
from trio_dwex import (
    Controller,
    CorsSettings,
    DwexApp,
    Module,
    Settings,
    Sse,
    SseEvent,
    create_app,
)
from trio_dwex.streams._runner import KEEPALIVE_COMMENT
from trio_dwex.testing import serve_app

#: Seconds between keep-alives here, and the idle time holding several of them.
KEEPALIVE = 0.05
IDLE = 0.4
#: What every client must deliver: the two events' data, nothing in between.
EXPECTED = ['{"n":1}', '{"n":2}']
DEADLINE = 30
NODE_DIR = Path(__file__).parent / "node"


@Controller()
class IdleController:
    @Sse("idle", keepalive=KEEPALIVE)
    async def idle(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data={"n": 1}, id="1")
        await trio.sleep(IDLE)
        yield SseEvent(data={"n": 2}, id="2")
        await trio.sleep(IDLE)


@Module(controllers=[IdleController])
class IdleModule:
    pass


def idle_app() -> DwexApp:
    return create_app(IdleModule, settings=Settings(cors=CorsSettings(allow_origins=("*",))))


async def test_the_stream_really_sends_keep_alives_between_the_events() -> None:
    # The control: without keep-alives on the wire the clients below would prove nothing.
    app = idle_app()
    async with serve_app(app) as url, httpx.AsyncClient() as client:
        # The app's lifespan runs the clock that wakes its streams for their keep-alives.
        assert app.streams.clock.running
        with trio.fail_after(DEADLINE):
            response = await client.get(url + "/idle")
    assert not app.streams.clock.running
    body = response.content
    between = body[body.index(b'{"n":1}') : body.index(b'{"n":2}')]
    assert between.count(KEEPALIVE_COMMENT) >= 3


async def test_httpx_sse() -> None:
    from httpx_sse import aconnect_sse

    received: list[str] = []
    async with serve_app(idle_app()) as url, httpx.AsyncClient() as client:
        with trio.fail_after(DEADLINE):
            async with aconnect_sse(client, "GET", url + "/idle") as source:
                async for event in source.aiter_sse():
                    received.append(event.data)
                    json.loads(event.data)  # what users write, and what failed
    assert received == EXPECTED


def read_with_sseclient_py(url: str) -> list[str]:
    import sseclient

    with httpx.stream("GET", url, timeout=DEADLINE) as response:
        client = sseclient.SSEClient(response.iter_bytes())
        return [event.data for event in client.events()]


async def test_sseclient_py() -> None:
    async with serve_app(idle_app()) as url:
        with trio.fail_after(DEADLINE):
            received = await trio.to_thread.run_sync(read_with_sseclient_py, url + "/idle")
    assert received == EXPECTED


def read_with_aiohttp_sse_client(url: str) -> list[str]:
    from aiohttp_sse_client import client as sse_client  # type: ignore[import-untyped]

    async def read() -> list[str]:
        received: list[str] = []
        async with sse_client.EventSource(url) as source:
            async for event in source:
                received.append(event.data)
                if event.data == EXPECTED[-1]:
                    break  # it reconnects after the end, as a browser would
        return received

    return asyncio.run(asyncio.wait_for(read(), DEADLINE))


async def test_aiohttp_sse_client() -> None:
    async with serve_app(idle_app()) as url:
        with trio.fail_after(DEADLINE):
            received = await trio.to_thread.run_sync(read_with_aiohttp_sse_client, url + "/idle")
    assert received == EXPECTED


async def node_clients() -> Path:
    """A folder with npm's clients installed from the lockfile, reused while it is unchanged."""
    require_binary("node")
    npm = require_binary("npm")
    files = ("package.json", "package-lock.json", "read_stream.mjs")
    digest = hashlib.sha256(b"".join((NODE_DIR / name).read_bytes() for name in files))
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = cache / "trio-dwex-tests" / f"node-{digest.hexdigest()[:16]}"
    if not (folder / "node_modules").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copy(NODE_DIR / name, folder / name)
        await trio.run_process(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder
        )
    return folder


@pytest.mark.parametrize("client", ["eventsource", "eventsource-parser"])
async def test_npm_clients(client: str) -> None:
    with trio.fail_after(120):  # the first run installs the packages
        folder = await node_clients()
    async with serve_app(idle_app()) as url:
        with trio.fail_after(DEADLINE):
            done = await trio.run_process(
                ["node", "read_stream.mjs", client, url + "/idle", EXPECTED[-1]],
                cwd=folder,
                capture_stdout=True,
            )
    assert json.loads(done.stdout) == EXPECTED


PAGE = """<!doctype html><script>
window.received = {data: []};
window.finished = () => window.received.data.includes(LAST);
const source = new EventSource(URL);
source.onmessage = (event) => {
  window.received.data.push(event.data);
  if (event.data === LAST) source.close();
};
</script>"""


async def test_chromium() -> None:
    require_binary("chromium")
    async with serve_app(idle_app()) as url:
        html = PAGE.replace("URL", json.dumps(url + "/idle")).replace(
            "LAST", json.dumps(EXPECTED[-1])
        )
        async with serve_app(static_page(html)) as page_url:
            with trio.fail_after(60):
                seen = await trio.to_thread.run_sync(partial(run_page, page_url + "/"))
    assert seen["data"] == EXPECTED
