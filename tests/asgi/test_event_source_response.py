"""EventSourceResponse on a real Hypercorn Trio server, driven by httpx over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from tests.helpers import accept_lifespan, open_stream, read_all_events
from trio_dwex._errors import NotFoundException
from trio_dwex.asgi._responses import EventSourceResponse
from trio_dwex.asgi._types import ASGIApp, Receive, Scope, Send
from trio_dwex.streams._stream import SseStream
from trio_dwex.testing._server import serve_app
from trio_dwex.wire._decoder import SseDecoder
from trio_dwex.wire._sse import SseEvent


async def test_headers_and_exact_framing_of_an_all_fields_event() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return

        async def source() -> AsyncIterator[SseEvent]:
            yield SseEvent(data={"a": 1}, event="update", id="7", retry=3000, comment="hi")

        await EventSourceResponse(source())(scope, receive, send)

    async with serve_app(app) as url, httpx.AsyncClient() as client:
        response = await client.get(url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache, no-transform"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["connection"] == "keep-alive"
    assert response.content == b': hi\nevent: update\nid: 7\nretry: 3000\ndata: {"a":1}\n\n'


SourceFactory = Callable[[Scope], SseStream | AsyncIterable[object]]


def sse_app(make_source: SourceFactory, **options: Any) -> ASGIApp:
    """A raw ASGI app: every request streams make_source(scope)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        await EventSourceResponse(make_source(scope), **options)(scope, receive, send)

    return app


async def test_first_event_arrives_before_the_stream_ends() -> None:
    release = trio.Event()

    async def source(scope: Scope) -> AsyncIterator[dict[str, int]]:
        yield {"n": 1}
        await release.wait()
        yield {"n": 2}

    async with serve_app(sse_app(source)) as url, httpx.AsyncClient() as client:
        async with open_stream(client, url) as stream:
            with trio.fail_after(2):
                first = await stream.next_event()
            assert first.json() == {"n": 1}
            assert not release.is_set()  # the generator is still parked: nothing was buffered
            release.set()
            assert (await stream.next_event()).json() == {"n": 2}


async def test_disconnect_runs_finally_cancels_tasks_and_runs_on_close_within_a_second() -> None:
    observed: dict[str, float] = {}
    opened = trio.Event()
    all_done = trio.Event()

    def note(what: str) -> None:
        observed[what] = trio.current_time()
        if len(observed) == 3:
            all_done.set()

    async def generator(scope: Scope) -> AsyncIterator[dict[str, bool]]:
        try:
            yield {"hello": True}
            opened.set()
            await trio.sleep_forever()
        finally:
            note("generator finally")

    async def ticker() -> None:
        try:
            await trio.sleep_forever()
        finally:
            note("task cancelled")

    def imperative(scope: Scope) -> SseStream:
        stream = SseStream()
        stream.send_nowait({"hello": True})
        stream.start_soon(ticker)
        stream.on_close(lambda: note("on_close"))
        opened.set()
        return stream

    make_source: SourceFactory
    for make_source in (generator, imperative):
        observed.clear()
        opened = trio.Event()
        all_done = trio.Event()
        # Each approach has only some of the three cleanups: count the others as done.
        if make_source is generator:
            note("task cancelled")
            note("on_close")
        else:
            note("generator finally")
        async with serve_app(sse_app(make_source)) as url, httpx.AsyncClient() as client:
            async with open_stream(client, url) as stream:
                await stream.next_event()
                await opened.wait()
                left_at = trio.current_time()
            with trio.fail_after(1):
                await all_done.wait()
        assert max(observed.values()) - left_at < 1.0, (make_source.__name__, observed)


async def test_keepalive_comments_on_an_idle_stream() -> None:
    async def source(scope: Scope) -> AsyncIterator[dict[str, int]]:
        yield {"n": 1}
        await trio.sleep_forever()

    app = sse_app(source, keepalive=0.1)
    async with serve_app(app) as url, httpx.AsyncClient() as client:
        async with open_stream(client, url) as stream:
            await stream.next_event()
            with trio.fail_after(2):
                while stream.raw.count(b": keep-alive\n") < 3:
                    await stream.next_chunk()


async def test_an_error_before_the_first_event_is_a_real_http_error() -> None:
    async def not_found(scope: Scope) -> AsyncIterator[object]:
        raise NotFoundException("no such feed")
        yield  # pragma: no cover

    async def broken(scope: Scope) -> AsyncIterator[object]:
        raise RuntimeError("database is down: password=hunter2")
        yield  # pragma: no cover

    async with serve_app(sse_app(not_found)) as url, httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "error": "Not Found", "message": "no such feed"}

    async with serve_app(sse_app(broken)) as url, httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 500
    assert response.json()["statusCode"] == 500
    assert "hunter2" not in response.text


async def test_a_slow_first_event_still_gets_headers_promptly() -> None:
    async def slow(scope: Scope) -> AsyncIterator[dict[str, bool]]:
        await trio.sleep(30)
        yield {"late": True}

    async with serve_app(sse_app(slow, first_event_wait=0.05)) as url:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(1):
                async with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")


async def test_two_hundred_concurrent_streams_each_receive_every_event() -> None:
    async def source(scope: Scope) -> AsyncIterator[SseEvent]:
        for n in range(20):
            yield SseEvent(data={"n": n}, id=str(n))
            await trio.sleep(0.01)

    results: list[list[int]] = []

    async def one(client: httpx.AsyncClient, url: str) -> None:
        events = await read_all_events(client, url)
        results.append([event.json()["n"] for event in events])

    limits = httpx.Limits(max_connections=250)
    async with serve_app(sse_app(source), backlog=512) as url:
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for _ in range(200):
                        nursery.start_soon(one, client, url)
    assert len(results) == 200
    assert all(numbers == list(range(20)) for numbers in results)


async def test_an_error_in_one_stream_leaves_the_others_untouched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def source(scope: Scope) -> AsyncIterator[dict[str, int]]:
        for n in range(5):
            yield {"n": n}
            await trio.sleep(0.02)
            if scope["path"] == "/bad" and n == 1:
                raise RuntimeError("boom in one stream")

    async with serve_app(sse_app(source)) as url, httpx.AsyncClient() as client:
        async with trio.open_nursery() as nursery:
            good: list[list[int]] = []

            async def read(path: str) -> None:
                events = await read_all_events(client, url + path)
                if path == "/good":
                    good.append([e.json()["n"] for e in events])

            nursery.start_soon(read, "/bad")
            for _ in range(3):
                nursery.start_soon(read, "/good")
        bad_events = await read_all_events(client, url + "/bad")
    assert good == [[0, 1, 2, 3, 4]] * 3
    assert [e.json()["n"] for e in bad_events] == [0, 1]
    assert any(
        "boom in one stream" in r.getMessage() or (r.exc_info and "boom" in repr(r.exc_info[1]))
        for r in caplog.records
    )


async def test_a_yield_in_finally_after_the_client_left_neither_crashes_nor_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaned = trio.Event()

    async def source(scope: Scope) -> AsyncIterator[dict[str, str]]:
        try:
            yield {"status": "started"}
            await trio.sleep_forever()
        except Exception as error:  # the guide's error-handling shape
            yield {"error": str(error)}
        finally:
            yield {"status": "ended"}
            cleaned.set()

    async with serve_app(sse_app(source)) as url, httpx.AsyncClient() as client:
        async with open_stream(client, url) as stream:
            await stream.next_event()
        with trio.fail_after(1):
            await cleaned.wait()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]


async def _raw_exchange(url: str, request: bytes) -> tuple[list[bytes], bytes]:
    """Send ``request`` on a raw socket, read until the server closes or the chunked body ends.

    Returns the lower-cased lines of the response head, and the body as it came.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    with sock, trio.fail_after(5):
        await sock.connect((host, int(port)))
        await sock.send(request)
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n") and (chunk := await sock.recv(65536)):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.lower().split(b"\r\n"), body


async def test_http_1_0_gets_every_event_and_no_keep_alive_header() -> None:
    async def source(scope: Scope) -> AsyncIterator[SseEvent]:
        for n in range(3):
            yield SseEvent(data={"n": n}, event="tick", id=str(n))
            await trio.sleep(0.01)

    async with serve_app(sse_app(source)) as url:
        head, body = await _raw_exchange(url, b"GET /events HTTP/1.0\r\nHost: test\r\n\r\n")
        # The same stream over HTTP/1.1 does say keep-alive: the check below can fail.
        head_1_1, _ = await _raw_exchange(url, b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
    assert head[0].split()[1] == b"200", head
    assert b"content-type: text/event-stream; charset=utf-8" in head
    # No keep-alive promise to an HTTP/1.0 client (the runner sends it on HTTP/1.1 only, and
    # h11 also rewrites it): the connection closes after the body.
    assert not [line for line in head if line.startswith(b"connection:") and b"keep-alive" in line]
    assert b"connection: close" in head
    assert b"connection: keep-alive" in head_1_1
    # No chunked framing for HTTP/1.0: the body is the events themselves, ended by the close.
    assert not [line for line in head if line.startswith(b"transfer-encoding:")]
    events = SseDecoder().feed(body)
    assert [(e.type, e.id, e.json()) for e in events] == [
        ("tick", str(n), {"n": n}) for n in range(3)
    ]
