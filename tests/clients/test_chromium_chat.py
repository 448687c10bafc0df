"""A browser reads a POST's event stream: ``examples/chat.html`` in Debian's Chromium.

``EventSource`` can only send GETs, so the chat page posts with ``fetch()`` and reads the
response body's ``ReadableStream`` as it arrives. Driven with Playwright, as in
``test_chromium.py``, the page: shows the reply while it is still streaming (read chunk by
chunk, not after the end) and then all of it; stops an answer mid-way (``AbortController``,
and the run's cancel), which stops the model on the server; shows a wrong key's 401; works
from another origin, through the CORS preflight that a POST with ``Authorization`` and a JSON
body needs; and, reloaded mid-answer, picks the answer's run up and shows all of it (issue 17).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import trio

from examples import chat
from tests.clients.test_chromium import CHROMIUM_FLAGS, PAGE_TIMEOUT_MS
from tests.clients.tools import require_binary, static_page
from tests.docs.test_docs import parse_blocks
from tests.helpers import wait_until
from trio_dwex import CorsSettings, DwexApp, Settings
from trio_dwex.testing import serve_app

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-browser"
#: Seconds per word: a reply of ten words takes half a second, long enough to be seen mid-way.
TOKEN_DELAY = 0.05
PROMPT = "one two three four five six seven eight nine ten"
#: A reply long enough (10 s) that the page stops it well before its end.
LONG_PROMPT = " ".join(f"w{n}" for n in range(200))

STATE = "window.chat"
DONE = "window.chat.done"
#: True only while a reply is partly shown: the page reads the stream as it comes.
MID_REPLY = "window.chat.chunks >= 3 && !window.chat.done"


def make_app(**settings: Any) -> DwexApp:
    config = chat.ChatConfig(api_key=KEY, token_delay=TOKEN_DELAY)
    return chat.build_app(config, settings=Settings(**settings))


def drive(page_url: str, cross_origin_url: str) -> dict[str, dict[str, Any]]:
    """Every step of the page, in one Chromium; what the page saw after each. A worker thread."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, dict[str, Any]] = {}
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_binary("chromium"), args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS
        )
        try:
            page = browser.new_page()
            page.on("console", lambda message: console.append(message.text))

            def ask(prompt: str, *, key: str = KEY, stop: bool = False) -> dict[str, Any]:
                page.fill("#key", key)
                page.fill("#prompt", prompt)
                page.click("#send")
                if stop or key == KEY:
                    page.wait_for_function(MID_REPLY, timeout=PAGE_TIMEOUT_MS)
                    partial_reply: str = page.evaluate("window.chat.reply")
                if stop:
                    page.click("#stop")
                page.wait_for_function(DONE, timeout=PAGE_TIMEOUT_MS)
                state: dict[str, Any] = page.evaluate(STATE)
                state["shown"] = page.inner_text("#reply")
                if stop or key == KEY:
                    state["partial"] = partial_reply
                return state

            page.goto(page_url, timeout=PAGE_TIMEOUT_MS)
            seen["streamed"] = ask(PROMPT)
            seen["stopped"] = ask(LONG_PROMPT, stop=True)
            seen["refused"] = ask(PROMPT, key="sk-wrong")
            page.goto(cross_origin_url, timeout=PAGE_TIMEOUT_MS)
            seen["cross-origin"] = ask(PROMPT)
        finally:
            browser.close()
    seen["console"] = {"messages": console}
    return seen


async def test_chromium_streams_a_post_with_fetch_and_a_readable_stream() -> None:
    require_binary("chromium")
    app = make_app()
    # The same app on another port, allowing any origin: the page is served from a third.
    cross = make_app(cors=CorsSettings(allow_origins=("*",), expose_headers=("x-run-id",)))
    page = static_page(chat.PAGE.read_text(encoding="utf-8"))
    with trio.fail_after(90):
        async with (
            serve_app(app) as url,
            serve_app(cross) as cross_url,
            serve_app(page) as page_url,
        ):
            seen = await trio.to_thread.run_sync(
                partial(drive, url + "/", f"{page_url}/?api={cross_url}")
            )
            model = app.plan.container.get(chat.EchoModel)
            await wait_until(lambda: model.stats.active == 0)

    streamed = seen["streamed"]
    assert streamed["error"] is None
    assert streamed["reply"] == streamed["shown"] == PROMPT
    assert streamed["chunks"] == len(PROMPT.split()) + 2  # the role, a chunk per word, the stop
    assert streamed["finishReason"] == "stop"
    # Seen mid-way: a beginning of the reply, shorter than all of it.
    assert PROMPT.startswith(streamed["partial"])
    assert 0 < len(streamed["partial"]) < len(PROMPT)

    stopped = seen["stopped"]
    assert stopped["error"] == "stopped"
    assert LONG_PROMPT.startswith(stopped["reply"])
    assert len(stopped["reply"]) < len(LONG_PROMPT)
    # Stop cancelled the run on the server: the model's finally ran, mid-reply.
    assert model.stats.stopped == 1
    assert model.stats.finished == 1

    refused = seen["refused"]
    assert refused["error"] == "401: the API key is not valid"
    assert refused["reply"] == ""
    assert app.stats()["opened"] == 2  # the refused request opened no stream

    crossed = seen["cross-origin"]
    assert crossed["error"] is None
    assert crossed["reply"] == PROMPT
    assert cross.stats()["opened"] == 1


def reload_mid_answer(page_url: str) -> dict[str, Any]:
    """Ask, reload the page mid-answer, and wait for the page to show the answer again."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_binary("chromium"), args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS
        )
        try:
            page = browser.new_page()
            page.goto(page_url, timeout=PAGE_TIMEOUT_MS)
            page.fill("#key", KEY)
            page.fill("#prompt", PROMPT)
            page.click("#send")
            page.wait_for_function(MID_REPLY, timeout=PAGE_TIMEOUT_MS)
            before: dict[str, Any] = page.evaluate(STATE)
            page.reload(timeout=PAGE_TIMEOUT_MS)  # the fetch dies with the page; the run does not
            page.wait_for_function(DONE, timeout=PAGE_TIMEOUT_MS)
            after: dict[str, Any] = page.evaluate(STATE)
            after["shown"] = page.inner_text("#reply")
            after["before"] = before
            return after
        finally:
            browser.close()


async def test_a_page_reloaded_mid_answer_shows_the_whole_answer() -> None:
    require_binary("chromium")
    app = make_app()
    model = app.plan.container.get(chat.EchoModel)
    with trio.fail_after(60):
        async with serve_app(app) as url:
            seen = await trio.to_thread.run_sync(reload_mid_answer, url + "/")
    before = seen.pop("before")
    assert 0 < len(before["reply"]) < len(PROMPT)  # reloaded mid-way
    assert seen["reattached"] is True
    assert seen["runId"] == before["runId"]
    assert seen["error"] is None
    assert seen["reply"] == seen["shown"] == PROMPT  # all of it, each word once
    assert seen["finishReason"] == "stop"
    # The model was not restarted: one answer, generated once, to its end.
    assert (model.stats.finished, model.stats.stopped) == (1, 0)


def test_the_docs_show_the_pages_own_reader() -> None:
    """docs/streaming-any-method.md shows the page's reader, tagged no-run: this test is what
    runs it, so the copy must be the page's, line for line."""
    docs = ROOT / "docs" / "streaming-any-method.md"
    name = "docs/streaming-any-method.md"
    blocks = [b for b in parse_blocks(docs.read_text(encoding="utf-8"), name) if b.language == "js"]
    assert [block.no_run is not None for block in blocks] == [True]
    assert blocks[0].code in chat.PAGE.read_text(encoding="utf-8")
