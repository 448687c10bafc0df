"""Limits over a real server: request head size (431), body size (413), stream lifetime.

``max_streams`` (503 with ``Retry-After``) is covered by ``tests/asgi/test_app.py``.

Where each limit lives: the request head is Hypercorn's ``h11_max_incomplete_size`` (16 KiB by
default; pass it to ``make_config``), enforced by h11 while a head is incomplete and by
``serving._h11.DwexH11Protocol`` once it is complete. The body is the app's
``Settings.max_body_size`` (1 MiB by default): Hypercorn has no body limit for ASGI apps
(``wsgi_max_body_size`` is for WSGI only). The lifetime is ``StreamSettings.max_lifetime``.
"""

from __future__ import annotations

import httpx
import trio

from tests.helpers import open_stream
from tests.reliability.apps import Counters, make_app
from tests.reliability.support import Reply, exchange, get, post, running_server
from trio_dwex.lowlevel import CloseReason

CLOSE = "Connection: close"


def padded_get(total: int) -> bytes:
    """A request to ``/t/ping`` whose head is exactly ``total`` bytes long."""
    bare = get("/t/ping", CLOSE, "X-Pad: ")
    request = get("/t/ping", CLOSE, "X-Pad: " + "p" * (total - len(bare)))
    assert len(request) == total
    return request


async def test_a_head_over_the_limit_is_431_however_it_arrives() -> None:
    limit = 4096
    async with running_server(make_app(Counters()), h11_max_incomplete_size=limit) as port:
        # In one read: h11 sees a complete head and would accept it at any size (regression).
        assert (await exchange(port, padded_get(limit))).status == 200
        assert (await exchange(port, padded_get(limit + 1))).status == 431
        assert (await exchange(port, padded_get(60_000))).status == 431
        # In pieces: h11's own check on an incomplete head.
        pieces = await exchange_in_pieces(port, padded_get(3 * limit), piece=1024)
        assert pieces.status == 431, pieces
        assert pieces.closed, pieces
        assert (await exchange(port, get("/t/ping", CLOSE))).status == 200


async def test_the_default_head_limit_is_16_kib() -> None:
    async with running_server(make_app(Counters())) as port:
        assert (await exchange(port, padded_get(16 * 1024))).status == 200
        assert (await exchange(port, padded_get(16 * 1024 + 1))).status == 431


async def exchange_in_pieces(port: int, request: bytes, *, piece: int) -> Reply:
    """Send ``request`` in pieces of ``piece`` bytes, 10 ms apart, and read the answer."""
    received = bytearray()
    closed = False
    with trio.socket.socket() as sock:
        await sock.connect(("127.0.0.1", port))
        with trio.move_on_after(5):
            try:
                for start in range(0, len(request), piece):
                    await sock.send(request[start : start + piece])
                    await trio.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before we were done: expected
            try:
                while data := await sock.recv(65536):
                    received += data
                closed = True
            except ConnectionResetError:
                closed = True
    return Reply(bytes(received), closed=closed, reset=False)


async def test_a_body_over_max_body_size_is_413() -> None:
    app = make_app(Counters(), max_body_size=1000)
    async with running_server(app) as port:
        at_limit = b'{"name": "' + b"n" * 988 + b'"}'
        assert len(at_limit) == 1000
        as_json = "Content-Type: application/json"
        reply = await exchange(port, post("/t/body", at_limit, as_json, CLOSE))
        assert reply.status == 200, reply
        reply = await exchange(port, post("/t/body", at_limit + b" ", as_json, CLOSE))
        assert reply.status == 413, reply
        assert b"larger than 1000 bytes" in reply.data, reply
    async with running_server(make_app(Counters())) as port:  # the default: 1 MiB
        huge = post("/t/body", b" " * (2 * 1024 * 1024), CLOSE)
        reply = await exchange(port, huge)
        assert reply.status == 413, reply
        assert (await exchange(port, get("/t/ping", CLOSE))).status == 200


async def test_max_lifetime_ends_the_stream_cleanly_and_the_client_resumes() -> None:
    app = make_app(Counters())
    async with running_server(app) as port, httpx.AsyncClient(timeout=5) as client:
        url = f"http://127.0.0.1:{port}/t/numbered"
        started = trio.current_time()
        async with open_stream(client, url) as stream:
            await stream.rest()  # ends without an error: a complete chunked response
        first_run = [int(e) for e in _ids(bytes(stream.raw))]
        assert 0.25 < trio.current_time() - started < 1.5
        assert first_run[0] == 0
        assert len(first_run) >= 3
        assert stream.raw.endswith(b"\n\n")  # the last event is whole
        # The client reconnects with the last id, as EventSource does, and resumes after it.
        headers = {"Last-Event-ID": str(first_run[-1])}
        async with open_stream(client, url, headers=headers) as again:
            await again.rest()
        second_run = [int(e) for e in _ids(bytes(again.raw))]
        assert second_run[0] == first_run[-1] + 1
    assert app.streams.closed[CloseReason.LIFETIME] == 2
    assert app.streams.open_count == 0


def _ids(raw: bytes) -> list[str]:
    return [line[4:].decode() for line in raw.split(b"\n") if line.startswith(b"id: ")]
