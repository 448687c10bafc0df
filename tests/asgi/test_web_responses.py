"""Pages, redirects, a route's status, cookies both ways, on a real server.

A whole web app needs more than JSON: HTML, redirects, ``201 Created``, two ``Set-Cookie``
headers on one response, and a handler that reads a cookie with a marker, as it reads a query
value. Each is checked here through httpx against Hypercorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import httpx
import pytest

from trio_dwex import (
    ConfigurationError,
    Controller,
    Cookie,
    Delete,
    DwexApp,
    EventSourceResponse,
    Get,
    HTMLResponse,
    JSONResponse,
    Module,
    Post,
    Query,
    RedirectResponse,
    Req,
    Request,
    Response,
    SseEvent,
    create_app,
)
from trio_dwex.testing import serve_app


async def one_event() -> AsyncIterator[SseEvent]:
    yield SseEvent(data="hello")


@Controller()
class WebController:
    @Get()
    def page(self) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>Board</title><h1>Orders — ünï</h1>")

    @Get("old")
    def old(self, to: Annotated[str, Query()] = "/") -> RedirectResponse:
        return RedirectResponse(to)

    @Post("orders", status=201)
    def create(self) -> dict[str, int]:
        return {"id": 7}

    @Delete("orders/{id}", status=202)
    def remove(self) -> None:
        return None

    @Post("login")
    def login(self) -> JSONResponse:
        response = JSONResponse({"ok": True}, status=200)
        response.set_cookie("session", "s3cr3t")
        response.set_cookie("user", "ada", httponly=False, max_age=3600)
        return response

    @Post("logout")
    def logout(self) -> Response:
        response = Response(status=204)
        response.delete_cookie("session")
        return response

    @Get("pairs")
    def pairs(self) -> Response:
        return Response("two", headers=[("X-Tag", "a"), ("X-Tag", "b"), ("Set-Cookie", "c=1")])

    @Get("me")
    def me(
        self,
        session: Annotated[str, Cookie()],
        theme: Annotated[str, Cookie("ui-theme")] = "light",
        visits: Annotated[int | None, Cookie()] = None,
    ) -> dict[str, object]:
        return {"session": session, "theme": theme, "visits": visits}

    @Get("cookies")
    def cookies(self, request: Annotated[Request, Req()]) -> dict[str, str]:
        return dict(request.cookies)

    @Get("stream")
    def stream(self) -> EventSourceResponse:
        response = EventSourceResponse(one_event())
        response.set_cookie("seen", "1")
        return response


@Module(controllers=[WebController])
class WebModule:
    pass


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(WebModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def test_html_and_redirects(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == "<!doctype html><title>Board</title><h1>Orders — ünï</h1>"
    moved = await client.get("/old", params={"to": "/board?x=1 2&y=é"})
    assert moved.status_code == 303
    assert moved.headers["location"] == "/board?x=1%202&y=%C3%A9"
    # A CR/LF in the target cannot forge a header: it is percent-encoded.
    forged = await client.get("/old", params={"to": "/a\r\nSet-Cookie: evil=1"})
    assert forged.headers["location"] == "/a%0D%0ASet-Cookie:%20evil=1"
    assert "set-cookie" not in forged.headers
    with pytest.raises(ValueError, match="a redirect's status is one of"):
        RedirectResponse("/x", status=200)


async def test_a_route_sets_its_status(client: httpx.AsyncClient) -> None:
    created = await client.post("/orders")
    assert (created.status_code, created.json()) == (201, {"id": 7})
    accepted = await client.delete("/orders/7")
    assert (accepted.status_code, accepted.content) == (202, b"")


def test_the_openapi_document_says_the_status() -> None:
    app: DwexApp = create_app(WebModule)
    assert app.openapi is not None
    operations = app.openapi["paths"]
    assert "201" in operations["/orders"]["post"]["responses"]
    assert "200" not in operations["/orders"]["post"]["responses"]
    assert operations["/orders/{id}"]["delete"]["responses"]["202"]["description"].startswith(
        "Accepted"
    )


def test_a_bad_status_fails_when_the_route_is_declared() -> None:
    for status in (99, 600, True, "201"):
        with pytest.raises(ConfigurationError, match="a route's status is an int"):
            Post("x", status=status)  # type: ignore[arg-type]


async def test_two_cookies_on_one_response_with_safe_defaults(client: httpx.AsyncClient) -> None:
    login = await client.post("/login")
    assert login.headers.get_list("set-cookie") == [
        "session=s3cr3t; Path=/; SameSite=Lax; HttpOnly",
        "user=ada; Max-Age=3600; Path=/; SameSite=Lax",
    ]
    assert client.cookies["session"] == "s3cr3t"
    me = await client.get("/me")
    assert me.json() == {"session": "s3cr3t", "theme": "light", "visits": None}
    logout = await client.post("/logout")
    assert logout.headers["set-cookie"] == (
        "session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; SameSite=Lax; HttpOnly"
    )
    assert "session" not in client.cookies
    stream = await client.get("/stream")
    assert stream.headers["set-cookie"] == "seen=1; Path=/; SameSite=Lax; HttpOnly"
    pairs = await client.get("/pairs")
    assert pairs.headers.get_list("x-tag") == ["a", "b"]


async def test_cookie_markers_and_request_cookies(client: httpx.AsyncClient) -> None:
    headers = {"Cookie": "session=abc; ui-theme=dark; visits=3"}
    me = await client.get("/me", headers=headers)
    assert me.json() == {"session": "abc", "theme": "dark", "visits": 3}
    missing = await client.get("/me", headers={"Cookie": "ui-theme=dark"})
    assert missing.status_code == 400
    assert missing.json()["message"] == "cookie 'session' is required"
    bad = await client.get("/me", headers={"Cookie": "session=a; visits=many"})
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("cookie 'visits' must be an integer")
    # Malformed pairs are skipped, not an error; quotes come off; the first of a name wins.
    odd = 'junk; =nameless; session="quoted"; session=second; ;; a=b=c; spaced = v'
    read = await client.get("/cookies", headers={"Cookie": odd})
    assert read.json() == {"session": "quoted", "a": "b=c", "spaced": "v"}


def test_cookie_values_are_checked_where_they_are_set() -> None:
    response = Response()
    for name, value in (
        ("a b", "1"),
        ("ok", "two words"),
        ("ok", 'q"'),
        ("ok", "é"),
        ("ok", "a;b"),
    ):
        with pytest.raises(ValueError, match="cookie"):
            response.set_cookie(name, value)
    with pytest.raises(ValueError, match="SameSite=None needs secure=True"):
        response.set_cookie("x", "1", samesite="none")
    with pytest.raises(ValueError, match="aware datetime"):
        response.set_cookie("x", "1", expires=datetime(2030, 1, 1))
    response.set_cookie(
        "x",
        "1",
        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        domain="example.com",
        secure=True,
        samesite="none",
        partitioned=True,
    )
    assert response.headers[-1] == (
        b"set-cookie",
        b"x=1; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Domain=example.com; Path=/; "
        b"SameSite=None; Secure; HttpOnly; Partitioned",
    )
    assert response.headers.count((b"set-cookie", response.headers[-1][1])) == 1
    with pytest.raises(ValueError, match=r"\(name, value\) pairs"):
        Response(headers="X-A: 1")  # type: ignore[arg-type]


async def test_an_oversized_cookie_is_a_431_and_the_server_carries_on(
    client: httpx.AsyncClient,
) -> None:
    huge = {"Cookie": "session=" + "x" * 200_000}
    refused = await client.get("/me", headers=huge)
    assert refused.status_code == 431
    fine = await client.get("/me", headers={"Cookie": "session=ok"})
    assert fine.status_code == 200


def test_a_routes_own_errors_are_documented() -> None:
    @Controller("jobs")
    class JobController:
        @Get("{id}", responses={404: "no such job", 409: WebModule})
        def job(self) -> dict[str, str]:
            return {}

    @Module(controllers=[JobController])
    class JobModule:
        pass

    with pytest.raises(ConfigurationError, match="no JSON Schema for WebModule"):
        create_app(JobModule)
    for bad in ({200: "ok"}, {"404": "no"}, "404"):
        with pytest.raises(ConfigurationError, match="responses="):
            Get("x", responses=bad)  # type: ignore[arg-type]

    @Controller("jobs")
    class FineController:
        @Get("{id}", responses={404: "no such job"})
        def job(self) -> dict[str, str]:
            return {}

    @Module(controllers=[FineController])
    class FineModule:
        pass

    document = create_app(FineModule).openapi
    assert document is not None
    not_found = document["paths"]["/jobs/{id}"]["get"]["responses"]["404"]
    assert not_found == {
        "description": "no such job",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HttpError"}}},
    }
