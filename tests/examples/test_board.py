"""``examples/board.py``, the live order board: over real sockets, in Chromium, and as two
workers sharing one Redis."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from examples import board
from tests.broadcast.conftest import RedisServer
from tests.clients.test_chromium import CHROMIUM_FLAGS, PAGE_TIMEOUT_MS
from tests.clients.tools import free_port, require_binary
from tests.helpers import open_stream
from tests.reliability.support import listening_process
from trio_dwex import DwexApp
from trio_dwex.testing import serve_app

SECRET = b"a-test-secret"
ORDER = {"item": "tea", "quantity": 2, "price": 3.5}


def make_app() -> DwexApp:
    return board.build_app(board.BoardConfig(secret=SECRET))


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_app(make_app()) as base:
        yield base


async def test_the_page_and_its_static_files(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        for asset, media_type in (
            ("/static/board.js", "text/javascript; charset=utf-8"),
            ("/static/board.css", "text/css; charset=utf-8"),
            ("/static/favicon.svg", "image/svg+xml; charset=utf-8"),
        ):
            assert f'"{asset}"' in page.text
            response = await client.get(asset)
            assert response.headers["content-type"] == media_type, asset
            again = await client.get(asset, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304


async def test_login_sets_a_session_cookie_and_a_readable_name(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/login", json={"user": "ada"})
        assert response.json() == {"user": "ada"}
        session, name = response.headers.get_list("set-cookie")
        assert session.startswith("board_session=ada.")
        assert session.endswith("; Max-Age=28800; Path=/; SameSite=Lax; HttpOnly")
        assert name == "board_user=ada; Max-Age=28800; Path=/; SameSite=Lax"
        for bad in ({"user": "a b"}, {"user": ""}, {"name": "ada"}, {}):
            refused = await client.post("/login", json=bad)
            assert refused.status_code == 400, bad
        logout = await client.post("/logout")
        assert len(logout.headers.get_list("set-cookie")) == 2
        assert "board_session" not in client.cookies


async def test_an_order_reports_every_problem_at_once(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/orders", json={"quantity": "two"})
        assert response.status_code == 400
        assert [error["location"] for error in response.json()["errors"]] == [
            "body.item",
            "body.quantity",
            "body.price",
        ]
        zero = await client.post("/orders", json={**ORDER, "quantity": 0})
        assert zero.json()["errors"] == [
            {"location": "body.quantity", "message": "must be more than 0, got 0"}
        ]
        blank = await client.post("/orders", json={"item": "  ", "quantity": 1, "price": -1})
        assert blank.json()["errors"] == [
            {"location": "body.item", "message": "must match the pattern \\S"},
            {"location": "body.price", "message": "must be at least 0, got -1.0"},
        ]
        as_form = await client.post(
            "/orders", content=b"item=tea", headers={"Content-Type": "text/plain"}
        )
        assert as_form.status_code == 415
        created = await client.post("/orders", json=ORDER)
        assert created.status_code == 201
        assert set(created.json()) == {"id"}


async def test_a_new_page_gets_the_retained_orders_then_live_ones_and_resumes(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        ids = [
            (await client.post("/orders", json={**ORDER, "item": f"item {n}"})).json()["id"]
            for n in range(3)
        ]
        async with open_stream(client, "/orders/stream") as stream:
            retained = await stream.events(3)
            live_id = (await client.post("/orders", json={**ORDER, "item": "live"})).json()["id"]
            live = await stream.next_event()
        assert [event.type for event in [*retained, live]] == ["order"] * 4
        assert [event.id for event in retained] == ids
        assert json.loads(retained[0].data) == {**ORDER, "item": "item 0", "by": None}
        assert (live.id, json.loads(live.data)["item"]) == (live_id, "live")
        resumed = {"Last-Event-ID": ids[1]}
        async with open_stream(client, "/orders/stream", headers=resumed) as stream:
            after = await stream.events(2)
        assert [event.id for event in after] == [ids[2], live_id]


async def test_the_private_stream_is_the_users_own_and_needs_the_cookie(url: str) -> None:
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as ada,
        httpx.AsyncClient(base_url=url, timeout=10) as bob,
    ):
        assert (await ada.get("/orders/private")).status_code == 401
        await ada.post("/login", json={"user": "ada"})
        await bob.post("/login", json={"user": "bob"})
        await bob.post("/orders", json={**ORDER, "item": "bob's"})
        await ada.post("/orders", json={**ORDER, "item": "ada's"})
        async with open_stream(ada, "/orders/private") as stream:
            (mine,) = await stream.events(1)
        assert json.loads(mine.data) == {**ORDER, "item": "ada's", "by": "ada"}
        session = ada.cookies["board_session"]
        forged = session.replace("ada.", "bob.", 1)
        async with httpx.AsyncClient(base_url=url) as mallory:
            for cookie in (forged, session + "x", "ada.1.x", "garbage"):
                response = await mallory.get(
                    "/orders/private", headers={"Cookie": f"board_session={cookie}"}
                )
                assert response.status_code == 401, cookie
                assert response.json()["message"] == "log in first (POST /login)"


def test_an_expired_session_is_refused() -> None:
    sessions = board.Sessions(board.BoardConfig(secret=SECRET, session_seconds=-1))
    assert sessions.user_of(sessions.make("ada")) is None
    fresh = board.Sessions(board.BoardConfig(secret=SECRET))
    assert fresh.user_of(fresh.make("ada")) == "ada"
    other_key = board.Sessions(board.BoardConfig(secret=b"another"))
    assert other_key.user_of(fresh.make("ada")) is None


# -- in Chromium ---------------------------------------------------------------------------


def drive(page_url: str) -> dict[str, Any]:
    """Open the board, wait for an order posted from outside, then log in and order through the
    page's forms. A worker thread."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_binary("chromium"), args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS
        )
        try:
            page = browser.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on(
                "response",
                lambda response: failed.append(response.url) if response.status == 404 else None,
            )
            page.goto(page_url, timeout=PAGE_TIMEOUT_MS)
            page.wait_for_function("window.board.status === 'live'", timeout=PAGE_TIMEOUT_MS)
            seen["retained"] = page.evaluate("window.board.orders.length")
            httpx.post(page_url + "orders", json={**ORDER, "item": "posted after it opened"})
            page.wait_for_function("window.board.orders.length === 2", timeout=PAGE_TIMEOUT_MS)
            seen["shown"] = page.inner_text("#orders")
            page.fill("#user", "ada")
            page.click("#login button")
            page.wait_for_function("document.cookie.includes('board_user=ada')")
            seen["cookies"] = page.evaluate("document.cookie")
            page.fill("#item", "")
            page.fill("#price", "1")
            page.click("#order button")
            page.wait_for_function("window.board.errors.length > 0", timeout=PAGE_TIMEOUT_MS)
            seen["problems"] = page.inner_text("#problems")
            page.fill("#item", "scones")
            page.fill("#quantity", "3")
            page.fill("#price", "4.5")
            page.click("#order button")
            page.wait_for_function("window.board.mine.length === 1", timeout=PAGE_TIMEOUT_MS)
            page.wait_for_function("window.board.orders.length === 3", timeout=PAGE_TIMEOUT_MS)
            seen["mine"] = page.inner_text("#mine")
            seen["failed"] = failed
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "board.png"))
        finally:
            browser.close()
    return seen


#: Where screenshots are kept for a person to look at (CI's artifacts directory when it sets one).
SCREENSHOTS = Path(os.environ.get("TEST_ARTIFACTS", "/tmp/trio-dwex-artifacts"))


async def test_the_page_in_chromium_shows_orders_as_they_come() -> None:
    app = make_app()
    async with serve_app(app) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            await client.post("/orders", json={**ORDER, "item": "before the page"})
        seen = await trio.to_thread.run_sync(partial(drive, base + "/"))
    assert seen["retained"] == 1  # the page opened on the order made before it
    assert "2 × posted after it opened at 3.5" in seen["shown"]
    assert "board_user=ada" in seen["cookies"]
    assert "board_session" not in seen["cookies"]  # HttpOnly: the page's script cannot see it
    assert seen["problems"] == "body.item: must match the pattern \\S"
    assert "3 × scones at 4.5 (ada)" in seen["mine"]
    assert seen["failed"] == []  # the favicon and every asset were found


# -- two workers, one Redis ------------------------------------------------------------------


def test_two_workers_on_redis_share_orders_and_sessions(redis_server: RedisServer) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "trio_dwex", "run", "examples.board:app"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    env = {"BOARD_BROADCAST": redis_server.url, "BOARD_SECRET": SECRET.decode()}
    with listening_process(command, port, env=env):
        workers: set[int] = set()
        deadline = time.monotonic() + 20
        while len(workers) < 2:  # both up: new connections may land on either
            assert time.monotonic() < deadline, f"only workers {workers} answered"
            health = httpx.get(base + "/healthz", headers={"Connection": "close"})
            workers.add(health.json()["worker"])
        with httpx.stream("GET", base + "/orders/stream", timeout=10) as stream:
            posted = []
            for n in range(20):  # each on a new connection, to either worker
                response = httpx.post(
                    base + "/orders",
                    json={**ORDER, "item": f"o{n}"},
                    headers={"Connection": "close"},
                )
                posted.append(response.json()["id"])
            received = read_orders(stream, 20)
        assert [event_id for event_id, _ in received] == posted
        login = httpx.post(base + "/login", json={"user": "ada"}, headers={"Connection": "close"})
        cookie = {"Cookie": f"board_session={login.cookies['board_session']}"}
        for _ in range(6):  # whichever worker checks it, the session is valid
            headers = {**cookie, "Connection": "close"}
            with httpx.stream("GET", base + "/orders/private", headers=headers) as private:
                assert private.status_code == 200
            assert httpx.get(base + "/orders/private").status_code == 401


def read_orders(stream: httpx.Response, count: int) -> list[tuple[str, str]]:
    from trio_dwex.wire._decoder import SseDecoder

    decoder = SseDecoder()
    events: list[tuple[str, str]] = []
    for chunk in stream.iter_raw():
        events.extend((event.id, event.data) for event in decoder.feed(chunk))
        if len(events) >= count:
            break
    return events
