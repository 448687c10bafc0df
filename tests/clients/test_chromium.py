"""A real browser's EventSource, cross-origin, against the guide app: Debian's Chromium.

The page is served from its own origin (another port), so every stream is a CORS request,
as in the guide's setup where the front end and the API live apart. Playwright for Python
drives the system Chromium (``/usr/bin/chromium``; no browser download), from a worker
thread since its sync API runs its own event loop; everything it waits for is bounded.

What the page records is read back and checked here: the countdown's events in order with
their ids, the notification's fields, an automatic reconnection to the guide's
``/events/resumable`` after the server cuts the stream mid-way (a short ``max_lifetime``),
which sends Last-Event-ID and resumes right after it (with the delay the server asked for),
and a stream whose server sends no CORS headers, which the browser must refuse.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from tests.clients.tools import Recorder, require_binary, static_page
from trio_dwex import (
    Controller,
    CorsSettings,
    DwexApp,
    Module,
    Settings,
    Sse,
    SseEvent,
    StreamSettings,
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
#: Milliseconds the page may take to see everything; Chromium itself starts in about 2 s,
#: and the resumable stream's reconnection waits the guide's `retry` of 3 s.
PAGE_TIMEOUT_MS = 20_000
#: The reconnection delay the guide's `/events/resumable` asks for, in milliseconds.
RESUMABLE_RETRY_MS = 3000
#: Seconds a stream of the resuming guide app lives: the server then ends it, mid-way
#: through the 100 events of `/events/resumable` (one per `GUIDE_TICK`, 10 ms here).
LIFETIME = 0.25
#: Events the page reads on the second connection before it closes the EventSource.
EVENTS_AFTER_RECONNECT = 5


def guide_with_short_lifetime() -> DwexApp:
    """The guide app as `examples.guide` builds it (CORS for every origin), with streams that
    the server cuts after `LIFETIME` seconds, so that a browser must reconnect and resume."""
    settings = Settings(
        cors=CorsSettings(allow_origins=("*",)), streams=StreamSettings(max_lifetime=LIFETIME)
    )
    return create_app(guide.AppModule, settings=settings)


def no_cors_app() -> DwexApp:
    """``/drop``: a few events and the end. It sends no CORS headers, so a page on another
    origin must not be able to read it."""

    @Controller()
    class DropController:
        @Sse("drop")
        async def drop(self) -> AsyncIterator[SseEvent]:
            for n in range(3):
                yield SseEvent(data={"n": n}, id=str(n), retry=300)

    @Module(controllers=[DropController])
    class DropModule:
        pass

    return create_app(DropModule)


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>trio-dwex EventSource test</title>
<script>
const config = CONFIG;
const received = window.received = {
  countdown: [], ids: [], origin: null, complete: null, notification: null,
  resumable: [], resumableOpens: 0, resumableErrors: [], resumableDone: false,
  refused: null, refusedMessages: 0,
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

const resumable = new EventSource(config.resumable + "/events/resumable");
resumable.onopen = () => { received.resumableOpens += 1; };
resumable.onmessage = (event) => {
  const connection = received.resumableOpens;
  received.resumable.push({count: JSON.parse(event.data).count, id: event.lastEventId, connection});
  const later = received.resumable.filter((e) => e.connection > 1).length;
  if (later >= config.eventsAfterReconnect) {
    resumable.close();
    received.resumableDone = true;
  }
};
resumable.onerror = () => { received.resumableErrors.push(resumable.readyState); };

const refused = new EventSource(config.noCors + "/drop");
refused.onmessage = () => { received.refusedMessages += 1; };
refused.onerror = () => { received.refused = refused.readyState; };

window.finished = () => received.complete !== null && received.notification !== null
  && received.resumableDone && received.refused !== null;
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
    resuming_guide = guide_with_short_lifetime()
    resuming = Recorder(resuming_guide)
    no_cors = Recorder(no_cors_app())
    with trio.fail_after(60):
        async with (
            serve_app(guide.app) as guide_url,
            serve_app(resuming) as resumable_url,
            serve_app(no_cors) as no_cors_url,
        ):
            config = {
                "guide": guide_url,
                "resumable": resumable_url,
                "noCors": no_cors_url,
                "eventsAfterReconnect": EVENTS_AFTER_RECONNECT,
            }
            page = static_page(PAGE.replace("CONFIG", json.dumps(config)))
            async with serve_app(page) as page_url:
                received = await trio.to_thread.run_sync(partial(run_page, page_url + "/"))
            resuming_stats = resuming_guide.stats()
    page_origin = page_url
    assert len({page_origin, guide_url, resumable_url, no_cors_url}) == 4  # four origins

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

    # The server cut `/events/resumable` mid-way (its lifetime, not the route's end: 100
    # events take a second here); the browser reconnected by itself, sent the last id it
    # had seen as Last-Event-ID, and the route resumed right after it: every count once,
    # in order, none missing across the cut.
    events = received["resumable"]
    counts = [event["count"] for event in events]
    assert counts == list(range(len(counts))), counts
    assert [event["id"] for event in events] == [str(count) for count in counts]
    before_cut = [event["count"] for event in events if event["connection"] == 1]
    after_cut = [event["count"] for event in events if event["connection"] == 2]
    assert 2 <= len(before_cut) < 100, before_cut
    assert len(after_cut) >= EVENTS_AFTER_RECONNECT, events
    assert after_cut[0] == before_cut[-1] + 1
    assert resuming_stats["closed"]["lifetime"] >= 1, resuming_stats
    gets = [request for request in resuming.requests if request.method == "GET"]
    assert [request.path for request in gets[:2]] == ["/events/resumable"] * 2
    assert gets[0].headers.get("last-event-id") is None
    assert gets[1].headers["last-event-id"] == str(before_cut[-1])
    assert all(request.headers["origin"] == page_origin for request in gets)
    assert received["resumableOpens"] >= 2
    assert received["resumableErrors"][0] == 0  # CONNECTING: reconnecting, not given up
    # It waited the server's `retry` (3 s) after the cut, give or take a busy machine.
    reconnect_wait = gets[1].at - gets[0].at - LIFETIME
    assert RESUMABLE_RETRY_MS / 1000 - 0.1 <= reconnect_wait < RESUMABLE_RETRY_MS / 1000 + 2.0, (
        reconnect_wait
    )

    # Without CORS headers, the browser reads nothing and gives up (readyState CLOSED = 2).
    assert received["refused"] == 2
    assert received["refusedMessages"] == 0
    assert [request.method for request in no_cors.requests] == ["GET"]
