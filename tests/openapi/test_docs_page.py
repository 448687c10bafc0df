"""The ``/docs`` page in a real browser (Debian's Chromium, driven by Playwright as in
tests/clients/test_chromium.py): it loads from our server alone, lists every operation of
the guide, sends a plain request, and shows a stream's events while they arrive.

"While they arrive" is shown on an endless stream (the guide's metrics): a page that waited
for the response to end would never show one.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio

from tests.clients.test_chromium import CHROMIUM_FLAGS, PAGE_TIMEOUT_MS
from tests.clients.tools import require_binary
from trio_dwex import Module, create_app
from trio_dwex.testing import serve_app

from examples import guide  # isort: skip  (after tools, which sets GUIDE_TICK)


def operation(path: str, method: str = "get") -> str:
    return f'details.operation[data-path="{path}"][data-method="{method}"]'


def drive_docs_page(url: str) -> dict[str, Any]:
    """Open the page, use it as a person would, and return what it showed."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"console": [], "requests": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_binary("chromium"), args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.on("console", lambda message: seen["console"].append(message.text))
            page.on("request", lambda request: seen["requests"].append(request.url))
            page.goto(url + "/docs")
            page.wait_for_selector("body[data-ready]")
            seen["title"] = page.title()
            seen["operations"] = page.eval_on_selector_all(
                "details.operation",
                "nodes => nodes.map(n => n.dataset.method.toUpperCase() + ' ' + n.dataset.path)",
            )

            # A plain operation: the body editor starts with an example that fits the schema.
            post = page.locator(operation("/activity", "post"))
            post.locator("summary").click()
            post.locator("button.send").click()
            post.locator(".output .status[data-status]").wait_for()
            seen["post_status"] = post.locator(".output .status").get_attribute("data-status")
            seen["post_body"] = post.locator(".output .response-body").inner_text()

            # An endless stream: events show up while it runs; Stop ends it.
            metrics = page.locator(operation("/monitoring/metrics"))
            metrics.locator("summary").click()
            metrics.locator("button.send").click()
            # Locators, not wait_for_function: the page's Content-Security-Policy forbids eval.
            metrics.locator("li.event").nth(2).wait_for()
            seen["metrics_events"] = metrics.locator("li.event").count()
            seen["metrics_names"] = metrics.locator("li.event").evaluate_all(
                "nodes => [...new Set(nodes.map(n => n.dataset.event))]"
            )
            metrics.locator("button.stop").click()
            metrics.locator(".event-count", has_text="(stopped)").wait_for()

            # A finite stream, behind the guard: the token field is sent as a bearer token.
            page.fill("#token", "secret-token")
            private = page.locator(operation("/private/notifications"))
            private.locator("summary").click()
            private.locator("button.send").click()
            private.locator("li.event").first.wait_for()
            seen["private_first"] = private.locator("li.event").first.get_attribute("data-event")
            private.locator("button.stop").click()

            countdown = page.locator(operation("/events/countdown"))
            countdown.locator("summary").click()
            countdown.locator("button.send").click()
            countdown.locator(".event-count", has_text="(the stream ended)").wait_for()
            seen["countdown"] = countdown.locator("li.event").evaluate_all(
                "nodes => nodes.map(n => n.dataset.event)"
            )
            seen["screenshot"] = page.screenshot(full_page=False)
        finally:
            browser.close()
    return seen


@Module()
class EmptyModule: ...


@pytest.mark.parametrize("prefix", ["", "/v1"])
async def test_the_docs_page_in_chromium(prefix: str) -> None:
    # With a prefix, the guide is mounted under it in another app, which serves its own docs
    # page at the root: the guide's page must load and send everything below the prefix.
    require_binary("chromium")
    assert guide.app.openapi is not None
    expected = [
        f"{method.upper()} {path}"
        for path, item in guide.app.openapi["paths"].items()
        for method in item
    ]
    app = create_app(EmptyModule, mounts={prefix: guide.app}) if prefix else guide.app
    with trio.fail_after(90):
        async with serve_app(app) as root:
            url = root + prefix
            seen = await trio.to_thread.run_sync(partial(drive_docs_page, url))
    assert seen["title"] == "trio-dwex guide 1.0.0"
    assert sorted(seen["operations"]) == sorted(expected)
    assert seen["post_status"] == "200"
    assert '"delivered": 0' in seen["post_body"]
    assert seen["metrics_events"] >= 3
    assert seen["metrics_names"] == ["metrics"]
    assert seen["private_first"] == "connected"
    assert seen["countdown"] == ["countdown"] * 10 + ["complete"]
    assert all(request.startswith(url + "/") for request in seen["requests"]), seen["requests"]
    assert not [line for line in seen["console"] if "error" in line.lower()], seen["console"]
