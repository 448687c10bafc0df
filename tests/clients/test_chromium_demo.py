"""The demo greets people: ``GET /`` of the guide app in Debian's Chromium.

``nox -s demo`` serves the guide app; someone who opens http://127.0.0.1:9929 must see it
working. The page builds itself from the app's OpenAPI document and shows every stream live
(the guarded ones with the demo user's token). Checked: every stream of the document has a
card, every card receives events, a POST button makes the activity stream show its event, no
request fails (the favicon included), no script error; a screenshot is kept for a person.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tests.clients.test_chromium import CHROMIUM_FLAGS, PAGE_TIMEOUT_MS
from tests.clients.tools import require_binary
from trio_dwex.testing import serve_app

from examples import guide  # isort: skip  (after tools, which sets GUIDE_TICK)

#: Where screenshots are kept for a person to look at (CI's artifacts directory when it sets one).
SCREENSHOTS = Path(os.environ.get("TEST_ARTIFACTS", "/tmp/trio-dwex-artifacts"))

EVERY_STREAM_HAS_EVENTS = """() => {
  const streams = Object.entries(window.demo.streams);
  return streams.length > 0 && streams.every(
    ([path, stream]) => path === "/activity/stream" || stream.events > 0);
}"""


def drive(page_url: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"failed": [], "console": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_binary("chromium"), args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.on("requestfailed", lambda request: seen["failed"].append(request.url))
            page.on(
                "response",
                lambda response: (
                    seen["failed"].append(f"{response.status} {response.url}")
                    if response.status >= 400
                    else None
                ),
            )
            page.on(
                "console",
                lambda message: (
                    seen["console"].append(message.text) if message.type == "error" else None
                ),
            )
            page.goto(page_url, timeout=PAGE_TIMEOUT_MS)
            page.wait_for_function(EVERY_STREAM_HAS_EVENTS, timeout=PAGE_TIMEOUT_MS)
            page.click("text=POST /activity")
            page.wait_for_function(
                "window.demo.streams['/activity/stream'].events > 0", timeout=PAGE_TIMEOUT_MS
            )
            seen["streams"] = page.evaluate("window.demo.streams")
            seen["errors"] = page.evaluate("window.demo.errors")
            seen["titles"] = page.locator(".stream h2").all_inner_texts()
            seen["activity"] = page.inner_text(".stream:has-text('/activity/stream') ol")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "demo.png"), full_page=True)
        finally:
            browser.close()
    return seen


async def test_the_front_page_shows_every_stream_live() -> None:
    assert guide.TICK < 0.1  # tests/clients/tools.py shortens the guide's ticks
    async with serve_app(guide.app) as url:
        seen = await trio.to_thread.run_sync(partial(drive, url + "/"))
    document = guide.app.openapi
    assert document is not None
    streams = {
        path
        for path, operations in document["paths"].items()
        if "text/event-stream"
        in operations.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
    }
    assert set(seen["streams"]) == streams
    assert len(streams) == 11
    assert "GET /jobs/progress/demo-job" in seen["titles"]
    assert "GET /notifications/stream?userId=user-1" in seen["titles"]  # guarded: the token
    assert all(stream["state"] in ("live", "ended") for stream in seen["streams"].values())
    assert "opened the demo page" in seen["activity"]
    assert seen["failed"] == []
    assert seen["errors"] == []
    assert seen["console"] == []
