"""The shell and JavaScript blocks of ``docs/`` run: real curl and Chromium against the guide app.

The blocks are the ones :mod:`tests.docs.runnable` selects (``test_docs.py`` asks the same
functions, so a block is either run here or must be checked or tagged ``no-run`` there):

* ``sh`` blocks of ``curl`` commands. Each command runs with real curl, in the block's order, a
  command ending in ``&`` in the background (the next one starts once the background stream is
  subscribed), with ``--max-time`` so that an endless stream ends. Its output is checked against
  :data:`CURL_EXPECTED`, by method and path: a command without an entry there fails.
* ``js`` blocks that open an ``EventSource``, in Debian's Chromium (driven by Playwright, as in
  ``tests/clients/test_chromium.py``), on a page served from another origin (another port),
  so every stream is a CORS request, as in the guide's setup.
  A plain script runs as the page's script; a React hook runs as a module, with ``react``
  mapped to :data:`REACT_STUB`, a few lines of ``useState`` and ``useEffect``.

Every URL on ``localhost:9929`` or ``127.0.0.1:9929`` is swapped for one guide server, started
for the module as the docs start it, with ``trio-dwex run examples.guide:app``, with
``GUIDE_TICK`` small so the countdown lasts a tenth of a second; it is stopped by PID with
SIGTERM, and must exit 0.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.clients.test_chromium import CHROMIUM_FLAGS, PAGE_TIMEOUT_MS
from tests.clients.tools import free_port, require_binary
from tests.docs.runnable import Command, runs_in_chromium, runs_with_curl, shell_commands
from tests.docs.test_docs import Block, pages, parse_blocks
from trio_dwex.wire._decoder import MessageEvent, SseDecoder

ROOT = Path(__file__).resolve().parents[2]
#: The guide's tick (seconds): the countdown's ten events take 0.1 s.
TICK = 0.01
#: The host and port the docs use for the guide app.
DOCS_ADDRESS = re.compile(r"\b(?:localhost|127\.0\.0\.1):9929\b")
#: Seconds an endless stream is read for (curl's ``--max-time``), and a finite one may take.
ENDLESS_SECONDS = 1.5
FINITE_SECONDS = 10.0
#: curl's exit code when ``--max-time`` ends the transfer.
CURL_TIMED_OUT = 28


def doc_blocks(select: Callable[[str, str], bool]) -> list[Any]:
    """``pytest.param(page_name, block)`` for every block of ``docs/`` that ``select`` picks."""
    params = []
    for page in pages():
        name = page.relative_to(ROOT / "docs").as_posix()
        for block in parse_blocks(page.read_text(encoding="utf-8"), name):
            if block.no_run is None and select(block.language, block.code):
                params.append(pytest.param(name, block, id=f"{name}:{block.line - 1}"))
    return params


# -- the guide server --------------------------------------------------------------------------


def trio_dwex_command() -> str:
    """The ``trio-dwex`` script of this environment (next to its Python), or the one on PATH."""
    beside = Path(sys.executable).with_name("trio-dwex")
    return str(beside) if beside.is_file() else require_binary("trio-dwex")


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``trio-dwex run examples.guide:app`` on a free port; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("guide") / "server.log"
    command = [trio_dwex_command(), "run", "examples.guide:app", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            cwd=ROOT,
            env={**os.environ, "GUIDE_TICK": str(TICK)},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, f"the guide server exited: {log.read_text()}"
            assert time.monotonic() < deadline, (
                f"the guide server never listened: {log.read_text()}"
            )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()  # SIGTERM, to its PID: a graceful shutdown
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0, f"the guide server exited with {code}: {log.read_text()}"


def localize(text: str, guide_url: str) -> str:
    """``text`` with the docs' address of the guide swapped for the test server's."""
    return DOCS_ADDRESS.sub(guide_url.removeprefix("http://"), text)


# -- curl --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurlRequest:
    """What a curl command of the docs asks for, read from its arguments."""

    method: str
    #: The URL's path and query, which :data:`CURL_EXPECTED` is keyed by.
    target: str
    headers: dict[str, str]
    include: bool

    #: Options with a value, and flags, that the docs' curl commands use.
    WITH_VALUE = frozenset({"-X", "--request", "-H", "--header", "-d", "--data"})
    FLAGS = frozenset({"-N", "--no-buffer", "-i", "--include"})

    @classmethod
    def parse(cls, argv: tuple[str, ...]) -> CurlRequest:
        method, headers, include, urls, data = None, {}, False, [], False
        words = iter(argv[1:])
        for word in words:
            if word in cls.WITH_VALUE:
                value = next(words)
                if word in ("-X", "--request"):
                    method = value
                elif word in ("-H", "--header"):
                    name, _, header = value.partition(":")
                    headers[name.strip().lower()] = header.strip()
                else:
                    data = True
            elif word in cls.FLAGS:
                include = include or word in ("-i", "--include")
            elif word.startswith("-"):
                raise AssertionError(f"curl option {word!r} is new here: teach CurlRequest it")
            else:
                urls.append(word)
        assert len(urls) == 1, f"one URL per curl command, not {urls}"
        assert DOCS_ADDRESS.search(urls[0]), f"{urls[0]!r} is not the guide on localhost:9929"
        target = "/" + DOCS_ADDRESS.split(urls[0], maxsplit=1)[1].lstrip("/")
        return cls(method or ("POST" if data else "GET"), target, headers, include)


@dataclass
class CurlOutput:
    """What curl printed: the status and headers if ``-i``, the body, its events."""

    body: bytes
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, output: bytes, request: CurlRequest) -> CurlOutput:
        if not request.include:
            return cls(output)
        head, _, body = output.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return cls(body, int(status_line.split()[1]), headers)

    @property
    def events(self) -> list[MessageEvent]:
        return SseDecoder().feed(self.body)

    def typed(self, kind: str) -> list[MessageEvent]:
        return [event for event in self.events if event.type == kind]


@dataclass(frozen=True)
class Expected:
    """What a curl command of the docs must print."""

    check: Callable[[CurlOutput], None]
    #: The stream never ends by itself: read it for ``ENDLESS_SECONDS``.
    endless: bool = False
    #: For a command sent to the background: the output that shows it is ready (subscribed).
    ready: Callable[[CurlOutput], bool] | None = None


def countdown(output: CurlOutput) -> None:
    events = output.events
    assert [(event.type, event.json()) for event in events] == [
        *(("countdown", {"count": n}) for n in range(10, 0, -1)),
        ("complete", {"message": "Countdown complete!"}),
    ], output.body
    assert [event.id for event in events[:10]] == [str(n) for n in range(1, 11)]


def private_notifications(output: CurlOutput) -> None:
    events = output.events
    assert events[0].type == "connected", output.body
    demos = output.typed("notification")
    assert demos, output.body  # the guide's demo notifies every subscriber every 3 ticks
    assert all(event.json()["body"] == "A demo notification for user-1" for event in demos)


def resumable_after_41(output: CurlOutput) -> None:
    events = output.events
    assert [event.id for event in events] == [str(n) for n in range(42, 100)], output.body
    assert [event.json()["count"] for event in events] == list(range(42, 100))
    assert {event.retry for event in events} == {3000}


def notification_with_headers(output: CurlOutput) -> None:
    assert output.status == 200, output
    assert output.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert output.body.startswith(b": User notification event\n"), output.body
    [event] = output.events
    assert (event.type, event.id, event.retry) == ("notification", "msg-123", 3000)
    assert event.json()["title"] == "New Message"


def user_1_stream(output: CurlOutput) -> None:
    assert output.events[0].type == "connected", output.body
    notes = [event.json() for event in output.typed("notification")]
    # The demo's notifications, and the one the POST of the same block sent.
    assert any(note["title"] == "Hi" and note["body"] == "from curl" for note in notes), notes


def delivered_to_one(output: CurlOutput) -> None:
    assert json.loads(output.body) == {"delivered": 1}, output.body


#: What each curl command of the docs prints, by method and target.
CURL_EXPECTED: dict[tuple[str, str], Expected] = {
    ("GET", "/events/countdown"): Expected(countdown),
    ("GET", "/private/notifications"): Expected(private_notifications, endless=True),
    ("GET", "/events/resumable"): Expected(resumable_after_41),
    ("GET", "/events/notifications"): Expected(notification_with_headers),
    ("GET", "/notifications/stream?userId=user-1"): Expected(
        user_1_stream,
        endless=True,
        # Subscribed once the guide's demo notification (every 3 ticks) has reached it.
        ready=lambda output: bool(output.typed("notification")),
    ),
    ("POST", "/notifications"): Expected(delivered_to_one),
}


def curl_argv(command: Command, expected: Expected, guide_url: str) -> list[str]:
    seconds = ENDLESS_SECONDS if expected.endless else FINITE_SECONDS
    words = [localize(word, guide_url) for word in command.argv[1:]]
    return [require_binary("curl"), "--silent", "--show-error", "--max-time", str(seconds), *words]


def check_exit(code: int, expected: Expected, where: str, stderr: bytes) -> None:
    wanted = CURL_TIMED_OUT if expected.endless else 0
    assert code == wanted, f"{where}: curl exited with {code}, not {wanted}: {stderr.decode()}"


@dataclass
class Background:
    where: str
    request: CurlRequest
    expected: Expected
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> CurlOutput:
        return CurlOutput.parse(self.stdout.read_bytes(), self.request)


@pytest.mark.parametrize(("page", "block"), doc_blocks(runs_with_curl))
def test_curl_block(page: str, block: Block, guide: str, tmp_path: Path) -> None:
    commands = shell_commands(block.code, block.line)
    assert commands is not None
    background: list[Background] = []
    try:
        for number, command in enumerate(commands):
            where = f"docs/{page}:{command.line}"
            request = CurlRequest.parse(command.argv)
            expected = CURL_EXPECTED.get((request.method, request.target))
            assert expected is not None, (
                f"{where}: nothing says what `curl` {request.method} {request.target} prints; "
                "add it to CURL_EXPECTED"
            )
            argv = curl_argv(command, expected, guide)
            if command.background:
                assert expected.endless, f"{where}: a finite stream in the background"
                assert expected.ready, f"{where}: say when it is ready in CURL_EXPECTED"
                out, err = tmp_path / f"{number}.out", tmp_path / f"{number}.err"
                with out.open("wb") as stdout, err.open("wb") as stderr:
                    process = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
                job = Background(where, request, expected, process, out, err)
                background.append(job)
                deadline = time.monotonic() + ENDLESS_SECONDS
                while not expected.ready(job.output()):
                    assert time.monotonic() < deadline, f"{where}: not ready: {out.read_bytes()!r}"
                    time.sleep(0.01)
                continue
            done = subprocess.run(argv, capture_output=True, timeout=FINITE_SECONDS + 5)
            check_exit(done.returncode, expected, where, done.stderr)
            expected.check(CurlOutput.parse(done.stdout, request))
        for job in background:
            code = job.process.wait(timeout=ENDLESS_SECONDS + 5)
            check_exit(code, job.expected, job.where, job.stderr.read_bytes())
            job.expected.check(job.output())
    finally:
        for job in background:
            if job.process.poll() is None:
                job.process.kill()
                job.process.wait()


# -- Chromium ----------------------------------------------------------------------------------


#: A stand-in for React's ``useState`` and ``useEffect``, enough to run a custom hook as a
#: component would: state per call order, a render per change, effects after the render that
#: re-run (cleaning up first) when their dependencies change, every cleanup on unmount.
REACT_STUB = """
let current = null;

export function useState(initial) {
  const component = current;
  const slot = component.slot++;
  if (!(slot in component.states)) component.states[slot] = initial;
  const setState = (value) => {
    if (Object.is(component.states[slot], value)) return;  // as React: no change, no render
    component.states[slot] = value;
    component.render();
  };
  return [component.states[slot], setState];
}

export function useEffect(effect, deps) {
  const component = current;
  const slot = component.slot++;
  const previous = component.effects[slot];
  if (previous && deps.every((dep, i) => Object.is(dep, previous.deps[i]))) return;
  component.pending.push(() => {
    if (previous && previous.cleanup) previous.cleanup();
    component.effects[slot] = { deps, cleanup: effect() };
  });
}

export function mount(hook, ...args) {
  const component = { states: [], effects: [], pending: [], args, renders: [], mounted: true };
  component.render = () => {
    if (!component.mounted) return;
    current = component;
    component.slot = 0;
    try {
      component.renders.push(hook(...component.args));
    } finally {
      current = null;
    }
    const pending = component.pending;
    component.pending = [];
    pending.forEach((run) => run());
  };
  component.render();
  return {
    renders: component.renders,
    rerender(...args) { component.args = args; component.render(); },
    unmount() {
      component.mounted = false;
      component.effects.forEach((e) => e && e.cleanup && e.cleanup());
    },
  };
}
"""

#: Records what a plain script logs, with its arguments as they were (numbers stay numbers).
SCRIPT_PAGE = """<!doctype html>
<meta charset="utf-8">
<script>
(() => {
  const log = console.log.bind(console);
  window.logged = [];
  console.log = (...args) => { window.logged.push(args); log(...args); };
})();
</script>
<script>
BLOCK
</script>
"""

#: Mounts the hook the way a component would use it, and writes down what it returned.
HOOK_PAGE = """<!doctype html>
<meta charset="utf-8">
<script type="importmap">{"imports": {"react": "/react.js"}}</script>
<script type="module">
import { mount } from "react";
import { useEventStream } from "/hook.js";

const guide = GUIDE;
const result = window.result = {};
// Every EventSource the hook opens, to see when it is closed (readyState 2).
const sources = result.sources = [];
window.EventSource = class extends EventSource {
  constructor(...args) { super(...args); sources.push(this); }
};
const states = () => sources.map((source) => source.readyState);
const until = (what, predicate) => new Promise((resolve, reject) => {
  const deadline = Date.now() + 10000;
  const poll = () => {
    if (predicate()) resolve();
    else if (Date.now() > deadline) reject(new Error("timed out waiting for " + what));
    else setTimeout(poll, 5);
  };
  poll();
});
const counts = (renders) => renders.map(({ last }) => last && last.count);

try {
  // Mounted on the countdown: `last` follows its "countdown" events.
  const component = mount(useEventStream, guide + "/events/countdown", "countdown");
  await until("count 1", () => component.renders.at(-1).last?.count === 1);
  result.countdown = counts(component.renders);
  result.failedOnCountdown = component.renders.some(({ failed }) => failed);
  // Another URL: the effect's cleanup closes the first EventSource, the new one opens.
  const before = component.renders.length;
  component.rerender(guide + "/events/updates", "update");
  result.afterNewUrl = states();
  await until("update 9", () => component.renders.at(-1).last?.count === 9);
  result.updates = counts(component.renders.slice(before));
  // Unmounted: closed.
  component.unmount();
  result.afterUnmount = states();
  // A URL the server answers with a 404: the browser gives up, and the hook says so.
  const missing = mount(useEventStream, guide + "/events/missing");
  await until("failed", () => missing.renders.at(-1).failed);
  result.missing = { failed: missing.renders.at(-1).failed, last: missing.renders.at(-1).last };
  missing.unmount();
} catch (error) {
  result.error = String(error.stack || error);
}
result.done = true;
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, under Playwright (no browser download)."""
    executable = require_binary("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.fail("playwright is not installed: pip install the 'test' extra", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


class PageServer:
    """The pages' own origin: a small HTTP server on another port, answering from a dict."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, str]] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                content_type, body = files.get(self.path, ("text/plain", "not found"))
                self.send_response(200 if self.path in files else 404)
                self.send_header("content-type", content_type + "; charset=utf-8")
                self.send_header("cache-control", "no-store")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    pages = PageServer()
    thread = threading.Thread(target=pages.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield pages
    finally:
        pages.server.shutdown()
        pages.server.server_close()
        thread.join(timeout=5)


@dataclass
class BrowserPage:
    """A page of the page server, its errors kept."""

    page: Any
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls, browser: Any, server: PageServer, files: dict[str, tuple[str, str]]
    ) -> BrowserPage:
        """``files``: path -> (content type, body); ``/`` is the page."""
        server.files.clear()
        server.files.update(files)
        page = browser.new_page()
        opened = cls(page)
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        page.goto(server.url + "/", timeout=PAGE_TIMEOUT_MS)
        return opened

    def wait_for(self, expression: str) -> None:
        from playwright.sync_api import Error

        try:
            self.page.wait_for_function(expression, timeout=PAGE_TIMEOUT_MS)
        except Error as error:
            raise AssertionError(f"{expression} never held; page errors: {self.errors}") from error

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)


def run_updates_script(browser: Any, pages: PageServer, code: str, guide: str) -> None:
    """A plain script: the first block of docs/clients.md, on the guide's updates stream."""
    page = BrowserPage.open(
        browser, pages, {"/": ("text/html", SCRIPT_PAGE.replace("BLOCK", code))}
    )
    # `source` is the block's own top-level const; it closes itself on "complete".
    page.wait_for("typeof source !== 'undefined' && source.readyState === EventSource.CLOSED")
    logged = page.evaluate("window.logged")
    assert page.errors == []
    # "connected" from onopen, then each "update" with its count and id; the updates stream
    # has no unnamed event, so onmessage logs nothing; and it never gave up.
    assert logged == [["connected"], *(["update", n, "id", str(n)] for n in range(10))], logged


def run_react_hook(browser: Any, pages: PageServer, code: str, guide: str) -> None:
    """The React hook of docs/clients.md: mounted, given another URL, unmounted, failing."""
    files = {
        "/": ("text/html", HOOK_PAGE.replace("GUIDE", json.dumps(guide))),
        "/react.js": ("text/javascript", REACT_STUB),
        "/hook.js": ("text/javascript", code),
    }
    page = BrowserPage.open(browser, pages, files)
    page.wait_for("window.result && window.result.done")
    result = page.evaluate("window.result")
    assert page.errors == []
    assert "error" not in result, result["error"]
    # `last` is null, then each countdown event in turn; no error before the stream ended.
    assert result["countdown"] == [None, *range(10, 0, -1)]
    assert result["failedOnCountdown"] is False
    # A new URL closed the first EventSource (2) before the second connected (0).
    assert result["afterNewUrl"] == [2, 0]
    # The first render after the change still shows the old `last`; then every update.
    assert result["updates"] == [1, *range(10)]
    assert result["afterUnmount"] == [2, 2]
    assert result["missing"] == {"failed": True, "last": None}


def js_runner(code: str) -> Callable[[Any, PageServer, str, str], None]:
    """The harness of a js block of the docs, by what the block is."""
    if 'from "react"' in code and "export function useEventStream" in code:
        return run_react_hook
    if '"http://localhost:9929/events/updates"' in code:
        return run_updates_script
    raise AssertionError("no harness runs this js block here: add one, or tag it no-run")


@pytest.mark.parametrize(("page", "block"), doc_blocks(runs_in_chromium))
def test_javascript_block(
    page: str, block: Block, guide: str, chromium: Any, page_server: PageServer
) -> None:
    runner = js_runner(block.code)
    runner(chromium, page_server, localize(block.code, guide), guide)
