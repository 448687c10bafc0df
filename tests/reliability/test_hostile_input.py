"""Hostile and malformed input: every request gets a clean 4xx (never a 500, never a hang), and
the server keeps serving.

Each case is sent byte for byte on a raw socket to a real server (`serve`, our patched
Hypercorn Trio worker), because most of these bytes are ones an HTTP client library refuses to
send. After each case the same server must still answer a plain request, and nothing may have
been logged at ERROR level (an exception escaping the app or Hypercorn would be).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated, Any

import pytest
import trio

from tests.reliability.apps import Counters, make_app
from tests.reliability.support import Reply, exchange, get, post, running_server
from trio_dwex import Body, Controller, CorsSettings, Post

os.environ.setdefault("GUIDE_TICK", "0.01")
from examples import guide  # GUIDE_TICK is read at import

CLOSE = "Connection: close"
#: A JSON body must say it is JSON (else 415): the body cases below are about the JSON itself.
AS_JSON = "Content-Type: application/json"

#: (request bytes, the status the server must answer) against `tests.reliability.apps`.
CASES: dict[str, tuple[bytes, int]] = {
    # Path: control characters and invalid UTF-8, percent-encoded and raw.
    "path-control-chars-as-int": (get("/t/num/%00%01%7f", CLOSE), 400),
    "path-control-chars-as-str": (get("/t/text/%00%01%7f", CLOSE), 200),
    "path-invalid-utf8-as-int": (get("/t/num/%ff%fe", CLOSE), 400),
    "path-invalid-utf8-as-str": (get("/t/text/%ff%fe", CLOSE), 200),
    "path-raw-control-char": (get(b"/t/text/\x01", CLOSE), 400),
    "path-raw-invalid-utf8": (get(b"/t/text/\xff", CLOSE), 400),
    "path-unknown-invalid-utf8": (get("/t/%ff/%00", CLOSE), 404),
    # Query string.
    "query-invalid-utf8": (get("/t/num/1?q=%ff", CLOSE), 400),
    "query-control-chars": (get("/t/num/1?q=%00%1b", CLOSE), 400),
    "query-raw-invalid-utf8": (get(b"/t/num/1?q=\xff", CLOSE), 400),
    "query-huge-integer": (get("/t/num/1?q=" + "9" * 5000, CLOSE), 400),
    # Headers.
    "header-invalid-utf8": (get("/t/num/1", b"X-N: \xff\xfe", CLOSE), 400),
    "header-control-chars": (get("/t/num/1", b"X-N: 1\x01\x02", CLOSE), 400),
    "header-nul": (get("/t/num/1", b"X-N: 1\x002", CLOSE), 400),
    "header-huge-integer": (get("/t/num/1", "X-N: " + "1" * 10_000, CLOSE), 400),
    "header-without-colon": (get("/t/ping", "NoColonHere", CLOSE), 400),
    "header-space-before-colon": (get("/t/ping", "X-N : 1", CLOSE), 400),
    # Bodies.
    "body-not-json": (post("/t/body", b"hello", AS_JSON, CLOSE), 400),
    "body-invalid-utf8": (post("/t/body", b'{"name": "\xff"}', AS_JSON, CLOSE), 400),
    "body-nested-10000-deep-list": (
        post("/t/body", b"[" * 10_000 + b"]" * 10_000, AS_JSON, CLOSE),
        400,
    ),
    "body-nested-10000-deep-object": (
        post("/t/body", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, AS_JSON, CLOSE),
        400,
    ),
    "body-wrong-shape": (post("/t/body", b'{"name": 5}', AS_JSON, CLOSE), 400),
    "body-huge-number": (
        post("/t/body", b'{"name": "x", "count": ' + b"9" * 5000 + b"}", AS_JSON, CLOSE),
        400,
    ),
    # JSON bodies only with a JSON content type: a browser sends a cross-site form as
    # text/plain, urlencoded or multipart without a CORS preflight (CVE-2021-32677).
    "body-json-as-text-plain": (
        post("/t/body", b'{"name": "x"}', "Content-Type: text/plain", CLOSE),
        415,
    ),
    "body-json-as-form": (
        post("/t/body", b'{"name": "x"}', "Content-Type: application/x-www-form-urlencoded", CLOSE),
        415,
    ),
    "body-json-as-multipart": (
        post("/t/body", b'{"name": "x"}', "Content-Type: multipart/form-data; boundary=b", CLOSE),
        415,
    ),
    "body-json-without-content-type": (post("/t/body", b'{"name": "x"}', CLOSE), 415),
    # No body is a missing body, whatever the content type: "required", not 415.
    "body-empty-without-content-type": (post("/t/body", b"", CLOSE), 400),
    "body-json-as-text-json": (
        post("/t/body", b'{"name": "x"}', "Content-Type: text/json", CLOSE),
        415,
    ),
    "body-json-as-jsonp": (
        post("/t/body", b'{"name": "x"}', "Content-Type: application/jsonp", CLOSE),
        415,
    ),
    "body-json-as-bare-suffix": (
        post("/t/body", b'{"name": "x"}', "Content-Type: application/+json", CLOSE),
        415,
    ),
    "body-json-with-charset": (
        post("/t/body", b'{"name": "x"}', "Content-Type: application/json; charset=utf-8", CLOSE),
        200,
    ),
    "body-json-upper-case": (
        post("/t/body", b'{"name": "x"}', "Content-Type: Application/JSON", CLOSE),
        200,
    ),
    "body-json-suffix": (
        post("/t/body", b'{"name": "x"}', "Content-Type: application/merge-patch+json", CLOSE),
        200,
    ),
    "body-bad-chunked-framing": (
        b"POST /t/body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    # The request line.
    "garbage-request-line": (b"\x16\x03\x01\x00\xa5garbage\r\n\r\n", 400),
    "request-line-without-version": (b"GET /t/ping\r\nHost: t\r\n\r\n", 400),
    "method-with-bad-chars": (b"G(T /t/ping HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    "http-1.1-without-host": (b"GET /t/ping HTTP/1.1\r\n\r\n", 400),
    "unknown-method": (get("/t/ping", CLOSE).replace(b"GET", b"BREW", 1), 405),
    "dot-dot-path": (get("/../../etc/passwd", CLOSE), 404),
    "absolute-form-target": (get("http://evil.example/t/ping", CLOSE), 404),
}


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


def assert_no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


async def assert_still_serving(port: int) -> None:
    reply = await exchange(port, get("/t/ping", CLOSE))
    assert reply.status == 200, reply
    assert reply.data.endswith(b"pong"), reply


@pytest.mark.parametrize("case", list(CASES))
async def test_hostile_request_gets_a_clean_answer(
    case: str, no_error_logs: pytest.LogCaptureFixture
) -> None:
    request, status = CASES[case]
    async with running_server(make_app(Counters())) as port:
        reply = await exchange(port, request)
        assert reply.status == status, reply
        assert reply.closed, f"no answer within 5 s: {reply}"
        await assert_still_serving(port)
    assert_no_errors_logged(no_error_logs)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("abc", 400),
        ("-5", 400),
        ("1e3", 400),
        (" ", 200),  # empty once trimmed: no id, so the stream starts over
        ("9" * 10_000, 400),  # regression: > 4300 digits made int() raise ValueError, a 500
        ("x" * 8_000, 400),
        ("99999999999999999999999", 200),  # valid and past the end: an empty stream
    ],
)
async def test_malformed_and_huge_last_event_id(
    value: str, status: int, no_error_logs: pytest.LogCaptureFixture
) -> None:
    async with running_server(guide.app) as port:
        request = get("/events/resumable", f"Last-Event-ID: {value}", CLOSE)
        # A 200 here is a live stream: read its headers only.
        reply = await exchange(port, request, until=b"\r\n\r\n" if status == 200 else None)
        assert reply.status == status, reply
        if status == 400:
            assert b"last-event-id" in reply.data
            # A complete answer, then the close the client asked for: no stream was opened.
            assert reply.closed, f"no close within 5 s: {reply}"
            assert_complete_body(reply)
            assert b"text/event-stream" not in reply.data.lower()
        await assert_still_serving_guide(port)
    assert_no_errors_logged(no_error_logs)


def assert_complete_body(reply: Reply) -> None:
    """The response carries a ``Content-Length`` and exactly that many bytes of body."""
    head, _, body = reply.data.partition(b"\r\n\r\n")
    lengths = [
        line.split(b":", 1)[1].strip()
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    ]
    assert len(lengths) == 1, reply
    assert len(body) == int(lengths[0]), reply


async def assert_still_serving_guide(port: int) -> None:
    reply = await exchange(port, get("/events/notifications", CLOSE), until=b"0\r\n\r\n")
    assert reply.status == 200, reply
    assert b"event: notification" in reply.data, reply


async def test_a_source_failing_right_after_its_first_event_does_not_crash_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: the failure cancelled the stream while it sent its response headers.

    Hypercorn's HTTPStream then believed no response had started while h11 had sent one, its
    fallback 500 raised LocalProtocolError out of the connection, and the whole server died
    (every later connection refused). `run_stream` now sends the headers shielded.
    """
    async with running_server(make_app(Counters())) as port:
        for _ in range(3):
            reply = await exchange(port, get("/t/fails-after-first", CLOSE))
            assert reply.status == 200, reply
            assert reply.closed, reply
            assert reply.data.endswith(b"0\r\n\r\n"), reply
        await assert_still_serving(port)
    # Hypercorn's complaints, not its "Running on" line (INFO once a test before this one
    # raised hypercorn's log level, as `serve(log_level=...)` does).
    hypercorn_errors = [
        r for r in caplog.records if r.name.startswith("hypercorn") and r.levelno >= logging.WARNING
    ]
    assert not hypercorn_errors
    assert any("SSE stream failed" in r.getMessage() for r in caplog.records)


async def test_http_1_0_gets_the_stream_without_chunking_then_a_close() -> None:
    async with running_server(guide.app) as port:
        reply = await exchange(port, get("/events/notifications", version="1.0"))
        assert reply.data.startswith(b"HTTP/1.1 200"), reply
        head, _, body = reply.data.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower()
        assert b"connection: keep-alive" not in head.lower()  # only sent to HTTP/1.1 clients
        assert body.startswith(b": User notification event\n")
        assert body.endswith(b"\n\n")
        assert reply.closed  # HTTP/1.0 without chunking: the close ends the body
        await assert_still_serving_guide(port)


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with running_server(make_app(Counters())) as port:
        request = get("/t/num/1") + get("/t/num/abc") + get("/t/num/3", CLOSE)
        reply = await exchange(port, request)
    assert reply.statuses == [200, 400, 200], reply
    assert reply.data.index(b'"n":1') < reply.data.index(b"must be an integer")
    assert reply.data.endswith(b'{"n":3,"q":null,"h":null}')


async def test_a_request_pipelined_behind_a_stream_waits_and_the_stream_ends_on_close() -> None:
    counters = Counters()
    app = make_app(counters)
    async with running_server(app) as port:
        reply = await exchange(port, get("/t/gen") + get("/t/ping"), seconds=0.5)
        assert reply.statuses == [200], reply  # the stream never ends: /t/ping waits behind it
        with trio.fail_after(2):
            while app.streams.open_count:  # noqa: ASYNC110 (server-side state)
                await trio.sleep(0.01)
    assert counters.generators_finally == counters.generators_started == 1


async def test_slowloris_headers_are_dropped_by_keep_alive_timeout() -> None:
    """Hypercorn's idle timer (``keep_alive_timeout``) runs from accept until a request's
    headers are complete, so a client that dribbles its headers is cut off after that long.
    (``read_timeout`` would not do: it bounds one read, and each byte restarts it.)"""
    counters = Counters()
    async with running_server(make_app(counters), keep_alive_timeout=0.5) as port:
        started = trio.current_time()
        request = get("/t/ping", "X-Padding: " + "a" * 100)
        reply = await exchange(port, request, byte_delay=0.05, seconds=5)
        elapsed = trio.current_time() - started
        assert reply.closed, reply
        assert reply.status is None, reply
        assert 0.4 < elapsed < 2.0, elapsed
        # The timer stops once headers are complete: a stream outlives keep_alive_timeout.
        stream = await exchange(port, get("/t/gen"), seconds=1.2)
        assert not stream.closed, stream
        assert stream.data.count(b"data: ") >= 15, stream
        await assert_still_serving(port)


async def test_a_json_body_of_another_media_type_gets_a_415_json_error(
    no_error_logs: pytest.LogCaptureFixture,
) -> None:
    async with running_server(make_app(Counters())) as port:
        request = post("/t/body", b'{"name": "x"}', "Content-Type: text/plain", CLOSE)
        reply = await exchange(port, request)
    assert reply.status == 415, reply
    assert_complete_body(reply)
    head, _, body = reply.data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)
    assert error["statusCode"] == 415
    assert error["error"] == "Unsupported Media Type"
    assert "application/json" in error["message"]
    assert "'text/plain'" in error["message"]
    assert_no_errors_logged(no_error_logs)


#: What a client may send in kilobytes, to see whether the server repeats it in its error.
LONG = "x" * 10_000
#: The most bytes an error body may have here: its JSON, and at most about a hundred
#: characters of each value the client sent (a refused preflight names three).
MAX_ERROR_BODY = 500

ECHO_CASES: dict[str, tuple[bytes, int]] = {
    "404-long-path": (get("/" + LONG, CLOSE), 404),
    "405-long-path": (get("/t/num/" + LONG, CLOSE).replace(b"GET", b"DELETE", 1), 405),
    "405-long-method": (get("/t/ping", CLOSE).replace(b"GET", LONG.upper().encode(), 1), 405),
    "400-long-unknown-body-field": (
        post("/t/body", b'{"name": "a", "' + LONG.encode() + b'": 1}', AS_JSON, CLOSE),
        400,
    ),
    "400-long-value-of-wrong-type": (
        post("/t/body", b'{"name": ["' + LONG.encode() + b'"]}', AS_JSON, CLOSE),
        400,
    ),
    "400-long-query-value": (get("/t/num/1?q=" + LONG, CLOSE), 400),
    "415-long-content-type": (
        post("/t/body", b'{"name": "x"}', "Content-Type: text/" + LONG, CLOSE),
        415,
    ),
    # Three long values, a third of LONG each: together they stay under the head size limit.
    "403-cors-preflight-long-values": (
        b"OPTIONS /t/ping HTTP/1.1\r\nHost: t\r\nOrigin: http://"
        + LONG[:3000].encode()
        + b"\r\nAccess-Control-Request-Method: "
        + LONG[:3000].upper().encode()
        + b"\r\nAccess-Control-Request-Headers: "
        + LONG[:3000].encode()
        + b"\r\nConnection: close\r\n\r\n",
        403,
    ),
}


@pytest.mark.parametrize("case", list(ECHO_CASES))
async def test_error_bodies_do_not_echo_unbounded_input(
    case: str, no_error_logs: pytest.LogCaptureFixture
) -> None:
    request, status = ECHO_CASES[case]
    cors = CorsSettings(allow_origins=("http://page.example",))
    async with running_server(make_app(Counters(), cors=cors)) as port:
        reply = await exchange(port, request)
    assert reply.status == status, reply
    assert_complete_body(reply)
    body = reply.data.partition(b"\r\n\r\n")[2]
    assert len(body) <= MAX_ERROR_BODY, body
    assert json.loads(body)["statusCode"] == status
    assert b"..." in body, body  # cut, and says so
    assert_no_errors_logged(no_error_logs)


async def test_a_lone_surrogate_in_a_body_comes_back_escaped_in_a_json_response(
    no_error_logs: pytest.LogCaptureFixture,
) -> None:
    # "\ud800" is valid JSON, and json.loads makes a lone surrogate of it, which UTF-8 cannot
    # encode: the JSON answer must escape it again, not fail with a 500.
    async with running_server(make_app(Counters())) as port:
        request = post("/t/body", b'{"name": "a\\ud800b\\udfff"}', AS_JSON, CLOSE)
        reply = await exchange(port, request)
    assert reply.status == 200, reply
    body = reply.data.partition(b"\r\n\r\n")[2]
    assert json.loads(body) == {"name": "a\ud800b\udfff", "count": 1}
    assert b'"a\\ud800b\\udfff"' in body
    assert_no_errors_logged(no_error_logs)


@Controller("echo")
class EchoController:
    @Post("text")
    def text(self, body: Annotated[str, Body()]) -> str:
        return body

    @Post("json")
    def json(self, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return body


def lenient_json(value: object) -> str:
    """A serializer that leaves lone surrogates in its text, as ``json.dumps`` can."""
    return json.dumps(value, ensure_ascii=False)


async def test_a_lone_surrogate_in_a_text_answer_or_another_serializers_json_is_no_500(
    no_error_logs: pytest.LogCaptureFixture,
) -> None:
    app = make_app(Counters(), controllers=[EchoController], serializer=lenient_json)
    async with running_server(app) as port:
        text = await exchange(port, post("/echo/text", b'"a\\ud800b"', AS_JSON, CLOSE))
        data = await exchange(port, post("/echo/json", b'{"k": "\\udfff"}', AS_JSON, CLOSE))
    assert text.status == 200, text
    assert text.data.partition(b"\r\n\r\n")[2] == "a\ufffdb".encode()  # text: replaced
    assert data.status == 200, data
    assert data.data.partition(b"\r\n\r\n")[2] == b'{"k": "\\udfff"}'  # JSON: escaped
    assert_no_errors_logged(no_error_logs)
