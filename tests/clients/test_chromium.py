"""A real browser's EventSource, cross-origin, against the guide app: Debian's Chromium.

The page is served from its own origin (another port), so every stream is a CORS request,
as in the guide's setup where the front end and the API live apart. Playwright for Python
drives the system Chromium (``/usr/bin/chromium``; no browser download), from a worker
thread since its sync API runs its own event loop; everything it waits for is bounded.

What the page records is read back and checked here: the countdown's events in order with
their ids, the notification's fields, an automatic reconnection that sends Last-Event-ID
after the server ends the stream (with the delay the server asked for), and a stream whose
server sends no CORS headers, which the browser must refuse.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import pytest
import trio

from tests.clients.tools import Recorder, require_binary, static_page
from trio_dwex import (
    Controller,
    CorsSettings,
    DwexApp,
    Headers,
    Module,
    Settings,
    Sse,
    SseEvent,
    create_app,
)
from trio_dwex.testing import serve_app

from examples import guide  # isort: skip  (after tools, which sets GUIDE_TICK)

#: Flags for a root, headless, offline-minded Chromium: no sandbox (root), no GPU, none of
#: the background traffic of a first run, and no QUIC (our server is TCP only).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Milliseconds the page may take to see everything; Chromium itself starts in about 2 s.
PAGE_TIMEOUT_MS = 15_000
#: The reconnection delay the resuming stream asks for, in milliseconds.
RETRY_MS = 300
EVENTS_PER_CONNECTION = 3


def resuming_app(cors: bool) -> DwexApp:
    """``/drop``: three events with numeric ids, then the server ends the stream.

    A reconnection resumes after its ``Last-Event-ID``. Without ``cors``, the app sends no
    CORS headers, so a page on another origin must not be able to read it.
    """

    @Controller()
    class DropController:
        @Sse("drop")
        async def drop(
            self, last_event_id: Annotated[int | None, Headers("last-event-id")] = None
        ) -> AsyncIterator[SseEvent]:
            start = 0 if last_event_id is None else last_event_id + 1
            for n in range(start, start + EVENTS_PER_CONNECTION):
                yield SseEvent(data={"n": n}, id=str(n), retry=RETRY_MS)
            # Returning ends the response: to the browser, the connection dropped.

    @Module(controllers=[DropController])
    class DropModule:
        pass

    settings = Settings(cors=CorsSettings(allow_origins=("*",)) if cors else None)
    return create_app(DropModule, settings=settings)


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>trio-dwex EventSource test</title>
<script>
const config = CONFIG;
const received = window.received = {
  countdown: [], ids: [], origin: null, complete: null, notification: null,
  drop: [], dropOpens: 0, dropErrors: [], refused: null, refusedMessages: 0,
};

const countdown = new EventSource(config.guide + "/events/countdown");
countdown.addEventListener("countdown", (event) => {
  received.countdown.push(JSON.parse(event.data).count);
  received.ids.push(event.lastEventId);
  received.origin = event.origin;
});
countdown.addEventListener("complete", (event) => {
  received.complete = JSON.parse(event.data);
  countdown.close();  // or the browser would reconnect and count down again
});

const notifications = new EventSource(config.guide + "/events/notifications");
notifications.addEventListener("notification", (event) => {
  received.notification = {type: event.type, id: event.lastEventId, data: JSON.parse(event.data)};
  notifications.close();
});

const drop = new EventSource(config.drop + "/drop");
drop.onopen = () => { received.dropOpens += 1; };
drop.onmessage = (event) => {
  received.drop.push({n: JSON.parse(event.data).n, id: event.lastEventId});
  if (received.drop.length === config.dropEvents) drop.close();
};
drop.onerror = () => { received.dropErrors.push(drop.readyState); };

const refused = new EventSource(config.noCors + "/drop");
refused.onmessage = () => { received.refusedMessages += 1; };
refused.onerror = () => { received.refused = refused.readyState; };

window.finished = () => received.complete !== null && received.notification !== null
  && received.drop.length === config.dropEvents && received.refused !== null;
</script>
"""


def run_page(url: str) -> dict[str, Any]:
    """Open ``url`` in headless Chromium, wait until the page has seen everything, return it.

    Runs in a worker thread. Bounded: every Playwright call has a timeout, and the browser and
    Playwright's driver process are closed on the way out, whatever happened.
    """
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.fail("playwright is not installed: pip install the 'test' extra", pytrace=False)
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_binary("chromium"),
            args=CHROMIUM_FLAGS,
            timeout=PAGE_TIMEOUT_MS,
        )
        try:
            page = browser.new_page()
            page.on("console", lambda message: console.append(message.text))
            page.goto(url, timeout=PAGE_TIMEOUT_MS)
            try:
                page.wait_for_function("window.finished()", timeout=PAGE_TIMEOUT_MS)
            except Error as error:
                state = page.evaluate("window.received")
                raise AssertionError(
                    f"the page did not see everything: {state}; console: {console}"
                ) from error
            received: dict[str, Any] = page.evaluate("window.received")
            received["console"] = console
            return received
        finally:
            browser.close()


async def test_chromium_eventsource_cross_origin() -> None:
    require_binary("chromium")  # fails with the install hint before any server starts
    drop = Recorder(resuming_app(cors=True))
    no_cors = Recorder(resuming_app(cors=False))
    dropped_events = 2 * EVENTS_PER_CONNECTION
    with trio.fail_after(60):
        async with (
            serve_app(guide.app) as guide_url,
            serve_app(drop) as drop_url,
            serve_app(no_cors) as no_cors_url,
        ):
            config = {
                "guide": guide_url,
                "drop": drop_url,
                "noCors": no_cors_url,
                "dropEvents": dropped_events,
            }
            page = static_page(PAGE.replace("CONFIG", json.dumps(config)))
            async with serve_app(page) as page_url:
                received = await trio.to_thread.run_sync(partial(run_page, page_url + "/"))
    page_origin = page_url
    assert len({page_origin, guide_url, drop_url, no_cors_url}) == 4  # four origins

    # The countdown, in order, with its ids, through `addEventListener("countdown", ...)`.
    assert received["countdown"] == list(range(10, 0, -1))
    assert received["ids"] == [str(i) for i in range(1, 11)]
    assert received["origin"] == guide_url
    assert received["complete"] == {"message": "Countdown complete!"}

    # Every field of the notification, as the page's event object carries it.
    notification = received["notification"]
    assert notification["type"] == "notification"
    assert notification["id"] == "msg-123"
    assert notification["data"]["title"] == "New Message"
    assert notification["data"]["body"] == "You have a new message"
    assert isinstance(notification["data"]["timestamp"], int)

    # The server ended the stream; the browser reconnected by itself, sent Last-Event-ID,
    # and the app resumed right after it.
    assert [event["n"] for event in received["drop"]] == list(range(dropped_events))
    assert [event["id"] for event in received["drop"]] == [str(n) for n in range(dropped_events)]
    gets = [request for request in drop.requests if request.method == "GET"]
    assert len(gets) >= 2
    assert gets[0].headers.get("last-event-id") is None
    assert gets[1].headers["last-event-id"] == str(EVENTS_PER_CONNECTION - 1)
    assert all(request.headers["origin"] == page_origin for request in gets)
    assert received["dropOpens"] >= 2
    assert received["dropErrors"][0] == 0  # CONNECTING: reconnecting, not given up
    # It waited the server's `retry` (300 ms), give or take a busy machine.
    reconnect_wait = gets[1].at - gets[0].at
    assert RETRY_MS / 1000 <= reconnect_wait < RETRY_MS / 1000 + 2.0, reconnect_wait

    # Without CORS headers, the browser reads nothing and gives up (readyState CLOSED = 2).
    assert received["refused"] == 2
    assert received["refusedMessages"] == 0
    assert [request.method for request in no_cors.requests] == ["GET"]
