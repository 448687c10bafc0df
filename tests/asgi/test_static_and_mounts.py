"""Static files and mounted ASGI apps, on a real server.

The traversal attempts are sent as raw bytes on a socket: an HTTP client would tidy ``..`` out
of a URL before sending it, and an attacker's does not.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_dwex import (
    ASGIApp,
    ConfigurationError,
    Controller,
    FileResponse,
    Get,
    Module,
    Sse,
    SseEvent,
    StaticFiles,
    create_app,
)
from trio_dwex.testing import serve_app


@Controller()
class PageController:
    @Get("download")
    def download(self) -> FileResponse:
        return FileResponse(SITE / "report.csv", filename="rapport d'été.csv")

    @Get("missing")
    def missing(self) -> FileResponse:
        return FileResponse(SITE / "nope.txt")


@Module(controllers=[PageController])
class PageModule:
    pass


SITE = Path()  # set per test by the `site` fixture


@pytest.fixture
def site(tmp_path: Path) -> Path:
    global SITE
    root = tmp_path / "site"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "js" / "app.js").write_text("console.log('hi')")
    (root / "style.css").write_text("h1 { color: red }")
    (root / "report.csv").write_text("a,b\n1,2\n")
    (root / "favicon.ico").write_bytes(b"\x00\x00\x01\x00")
    (root / "big.bin").write_bytes(os.urandom(1_000_000))
    (root / ".env").write_text("SECRET=1")
    (root / "empty").mkdir()
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "inside").symlink_to(root / "style.css")
    (root / "trap").mkdir()
    (root / "trap" / "index.html").symlink_to(tmp_path / "secret.txt")
    (root / "loop").symlink_to(root / "loop")
    SITE = root
    return root


@pytest.fixture
async def base_url(site: Path) -> AsyncIterator[str]:
    app = create_app(PageModule, mounts={"/static": StaticFiles(site)})
    async with serve_app(app) as url:
        yield url


async def raw_get(base_url: str, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send ``target`` exactly as given; the status and body of the answer."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode("latin-1"))
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_files_have_their_types_and_arrive_whole(base_url: str, site: Path) -> None:
    async with httpx.AsyncClient(base_url=base_url + "/static") as client:
        expected = {
            "/js/app.js": "text/javascript; charset=utf-8",
            "/style.css": "text/css; charset=utf-8",
            "/report.csv": "text/csv; charset=utf-8",
            "/favicon.ico": "image/vnd.microsoft.icon",
            "/big.bin": "application/octet-stream",
            "/": "text/html; charset=utf-8",
            "/inside": "application/octet-stream",  # a symlink within the root; typed by its name
        }
        for path, media_type in expected.items():
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == media_type, path
        big = await client.get("/big.bin")
        assert (
            hashlib.sha256(big.content).digest()
            == hashlib.sha256((site / "big.bin").read_bytes()).digest()
        )
        assert big.headers["content-length"] == "1000000"
        head = await client.head("/big.bin")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == "1000000"
        posted = await client.post("/style.css")
        assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")


async def test_a_client_that_has_the_file_gets_304(base_url: str, site: Path) -> None:
    async with httpx.AsyncClient(base_url=base_url + "/static") as client:
        first = await client.get("/style.css")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        mtime = datetime.fromtimestamp((site / "style.css").stat().st_mtime, UTC)
        assert modified == format_datetime(mtime, usegmt=True)
        for headers in (
            {"If-None-Match": etag},
            {"If-None-Match": f'"other", W/{etag}'},
            {"If-None-Match": "*"},
            {"If-Modified-Since": modified},
        ):
            cached = await client.get("/style.css", headers=headers)
            assert (cached.status_code, cached.content) == (304, b""), headers
            assert cached.headers["etag"] == etag
        for headers in (
            {"If-None-Match": '"other"'},
            {"If-None-Match": '"other"', "If-Modified-Since": modified},  # the tag decides
            {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
            {"If-Modified-Since": "not a date"},
        ):
            fresh = await client.get("/style.css", headers=headers)
            assert fresh.status_code == 200, headers
        (site / "style.css").write_text("h1 { color: blue }")
        os.utime(site / "style.css", (1e9, 2e9))
        changed = await client.get("/style.css", headers={"If-None-Match": etag})
        assert (changed.status_code, changed.text) == (200, "h1 { color: blue }")


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/js/..%2f..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/..\\secret.txt",
        "/static/%2e%2e%5c%2e%2e%5csecret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/escape",
        "/static/trap",
        "/static/trap/",
        "/static/loop",
        "/static/.env",
        "/static/js/%00.js",
        "/static/C:%5cWindows",
        "/static/empty",
        "/static/nothing-here",
        "/static/js/",
    ],
)
async def test_nothing_outside_the_root_is_served(base_url: str, target: str) -> None:
    status, body = await raw_get(base_url, target)
    assert status in (400, 404), (target, status)
    assert b"outside the root" not in body
    assert b"root:" not in body
    assert b"SECRET" not in body


async def test_file_response_from_a_handler(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        download = await client.get("/download")
        assert download.text == "a,b\n1,2\n"
        assert download.headers["content-disposition"] == (
            "attachment; filename*=UTF-8''rapport%20d%27%C3%A9t%C3%A9.csv"
        )
        missing = await client.get("/missing")
        assert (missing.status_code, missing.json()["message"]) == (404, "no such file")


def test_a_static_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="existing directory"):
        StaticFiles(tmp_path / "nope")


# -- mounted apps --------------------------------------------------------------------------------


class RecordingApp:
    """A raw ASGI app that says what it saw and keeps its lifespan's events."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["ready"] = True
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = f"{scope['root_path']}|{scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def no_lifespan_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError("only HTTP here")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"plain"})


async def test_mounted_apps_get_their_requests_and_lifespans(site: Path) -> None:
    admin = RecordingApp()
    mounts: dict[str, ASGIApp] = {
        "/admin": admin,
        "/admin/plain": no_lifespan_app,
        "/static": StaticFiles(site),
    }
    app = create_app(PageModule, mounts=mounts)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert admin.events == ["lifespan.startup"]
        assert (await client.get("/admin/users/7")).text == "/admin|/admin/users/7"
        assert (await client.get("/admin")).text == "/admin|/admin"
        assert (await client.get("/admin/plain/x")).text == "plain"  # the longest prefix wins
        assert (await client.get("/administrator")).status_code == 404  # whole segments only
        assert (await client.get("/download")).status_code == 200  # the routes still answer
    assert admin.events == ["lifespan.startup", "lifespan.shutdown"]


async def test_a_starlette_app_can_be_mounted() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    started: list[bool] = []

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.path_params['name']} at {request.url.path}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    starlette_app = Starlette(routes=[Route("/hello/{name}", hello)], lifespan=lifespan)
    app = create_app(PageModule, mounts={"/legacy": starlette_app})
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/legacy/hello/ada")
        assert response.text == "hello ada at /legacy/hello/ada"
    assert started == [True]


def test_mount_prefixes_are_checked() -> None:
    for prefix in ("static", "/static/", "/", "", "/a/../b", "/a b"):
        with pytest.raises(ConfigurationError, match="a mount prefix is a path"):
            create_app(PageModule, mounts={prefix: no_lifespan_app})


async def test_the_mcp_sdks_own_server_can_be_mounted() -> None:
    # Its session manager runs in its lifespan: served without it, every request would fail.
    import mcp
    from mcp.server.mcpserver import MCPServer

    sdk = MCPServer("mounted")

    @sdk.tool()
    def add(a: int, b: int) -> int:
        return a + b

    app = create_app(PageModule, mounts={"/sdk": sdk.streamable_http_app()})
    async with serve_app(app) as url, mcp.Client(url + "/sdk/mcp") as client:
        result = await client.call_tool("add", {"a": 2, "b": 3})
    assert result.structured_content == {"result": 5}


@Controller("api")
class ApiController:
    @Get("hello")
    def hello(self) -> dict[str, str]:
        return {"hello": "world"}

    @Sse("events")
    async def events(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="one")


@Module(controllers=[ApiController])
class ApiModule: ...


async def read_body(client: httpx.AsyncClient, path: str) -> tuple[int, str]:
    response = await client.get(path)
    return response.status_code, response.text


async def test_a_trio_dwex_app_routes_below_the_prefix_it_is_mounted_at() -> None:
    # ASGI passes a mounted app the whole path and the prefix as root_path: the app routes
    # what follows the prefix, its own built-in pages included.
    inner = create_app(ApiModule)
    app = create_app(PageModule, mounts={"/inner": inner})
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert await read_body(client, "/inner/api/hello") == (200, '{"hello":"world"}')
        assert await read_body(client, "/inner/api/events") == (200, "data: one\n\n")
        assert (await client.get("/inner/openapi.json")).json()["paths"].keys() == {
            "/api/hello",
            "/api/events",
        }
        missing = await client.get("/inner/api/nope")
        assert (missing.status_code, missing.json()["message"]) == (
            404,
            "Cannot GET /inner/api/nope",
        )
        assert (await client.get("/api/hello")).status_code == 404  # not the outer app's route


async def test_a_trio_dwex_app_routes_below_a_starlette_mount() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    starlette_app = Starlette(routes=[Mount("/v1", app=create_app(ApiModule))])
    async with serve_app(starlette_app) as url, httpx.AsyncClient(base_url=url) as client:
        assert await read_body(client, "/v1/api/hello") == (200, '{"hello":"world"}')
        assert await read_body(client, "/v1/api/events") == (200, "data: one\n\n")


async def test_a_mount_prefix_that_the_client_percent_encodes_is_found() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    starlette_app = Starlette(
        routes=[
            Mount("/my api", app=create_app(ApiModule)),
            Mount("/caf\u00e9", app=create_app(ApiModule)),
        ]
    )
    async with serve_app(starlette_app) as url, httpx.AsyncClient(base_url=url) as client:
        assert await read_body(client, "/my%20api/api/hello") == (200, '{"hello":"world"}')
        assert await read_body(client, "/caf%C3%A9/api/events") == (200, "data: one\n\n")
        missing = await client.get("/my%20api/nope")
        assert missing.json()["message"] == "Cannot GET /my%20api/nope"  # as the client sent it


async def test_a_servers_root_path_is_honoured_with_or_without_the_prefix_in_the_path() -> None:
    # Behind a proxy that strips the prefix, Hypercorn's root_path setting names it while the
    # path comes without it; a client that reaches the server directly sends it whole.
    async with (
        serve_app(create_app(ApiModule), root_path="/svc") as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert await read_body(client, "/api/hello") == (200, '{"hello":"world"}')
        assert await read_body(client, "/svc/api/hello") == (200, '{"hello":"world"}')
        assert (await client.get("/svcapi/hello")).status_code == 404  # whole segments only
