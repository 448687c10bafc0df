"""Fuzzing the router and parameter conversion with arbitrary paths, query strings, headers
and bodies: the framework answers 2xx or 4xx, never a 500, and raises nothing but an
`HttpException`.

The number of examples comes from ``HYPOTHESIS_EXAMPLES`` (default 200), as in
``tests/wire/test_roundtrip.py``; ``nox -s fuzz`` runs both with 100,000.

Requests go through the whole app in this process (ASGI scope in, messages out), built the way
Hypercorn builds them from what h11 lets through: the request target is printable ASCII
(``%``-escapes carry anything else), header values are any bytes but NUL, CR and LF. An SSE
route the fuzzer reaches sees the client leave at once, so that every request ends.
"""

from __future__ import annotations

import json
import os
from urllib.parse import unquote

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.apps import Counters, make_app
from trio_dwex import HttpException, MethodNotAllowedException, NotFoundException
from trio_dwex.asgi._types import Message, Scope
from trio_dwex.framework._solving import _convert_text

settings.register_profile(
    "reliability-fuzz",
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("reliability-fuzz")

APP = make_app(Counters())
ROUTER = APP.plan.router

# Segments that reach real routes often, and anything else.
_known = st.sampled_from(["t", "num", "text", "body", "ping", "gen", "stream", "numbered", ""])
_printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_escape = st.integers(0, 255).map(lambda b: f"%{b:02x}")
_junk = st.lists(st.one_of(_printable, _escape), max_size=12).map("".join)
# Integers past Python's 4300-digit parsing limit: int() raises ValueError on them, not a 400.
_huge_int = st.integers(4000, 5000).map(lambda digits: "7" * digits)
_segment = st.one_of(_known, _junk, st.integers().map(str), _huge_int)
_path = st.lists(_segment, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW"])
_query = st.lists(
    st.tuples(
        st.sampled_from(["q", "x", "", "q[]"]) | _junk, st.integers().map(str) | _huge_int | _junk
    ),
    max_size=4,
).map(lambda pairs: "&".join(f"{key}={value}" for key, value in pairs))
_header_value = st.binary(max_size=40).map(
    lambda raw: raw.replace(b"\0", b"").replace(b"\r", b"").replace(b"\n", b"").strip()
)
_headers = st.lists(
    st.tuples(st.sampled_from([b"x-n", b"x-s", b"last-event-id", b"content-type"]), _header_value),
    max_size=3,
)
_json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
).map(lambda value: json.dumps(value).encode())
_bodies = st.one_of(st.binary(max_size=64), _json_bodies, st.just(b'{"name": "n", "count": 2}'))


@FUZZ
@given(method=_methods, path=_path | st.text(max_size=30))
def test_the_router_finds_a_route_or_answers_404_or_405(method: str, path: str) -> None:
    try:
        route, params = ROUTER.match(method, path)
    except (NotFoundException, MethodNotAllowedException):
        return
    assert route.method == method
    assert set(params) == set(route.template.param_names)
    assert all(isinstance(value, str) and value for value in params.values())


async def call(scope: Scope, body: bytes) -> list[Message]:
    """Run one request through the app; the client leaves as soon as its body is read."""
    sent: list[Message] = []
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    with trio.fail_after(5):
        await APP(scope, receive, send)
    return sent


@FUZZ
@given(method=_methods, path=_path, query=_query, headers=_headers, body=_bodies)
def test_any_request_is_answered_without_a_500(
    method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),  # what Hypercorn does
        "raw_path": path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "headers": [(b"host", b"test"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    sent = trio.run(call, scope, body)
    assert sent, "no response at all"
    assert sent[0]["type"] == "http.response.start", sent
    status = sent[0]["status"]
    assert status < 500, (status, sent[1:2])
    if status >= 400 and method != "HEAD":  # a HEAD answer has no body
        error = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
        assert error["statusCode"] == status


@FUZZ
@given(value=st.text(max_size=60) | st.integers().map(str) | _huge_int)
def test_text_conversion_raises_only_http_exceptions(value: str) -> None:
    """Each converter of the test app's parameters, straight: a value or a 400."""
    for route in APP.plan.routes:
        for param in route.call_plan.params:
            if param.text is None:
                continue
            try:
                _convert_text(param, value)
            except HttpException as exc:
                refused: HttpException | None = exc
            else:
                refused = None
            assert refused is None or refused.status == 400, refused
