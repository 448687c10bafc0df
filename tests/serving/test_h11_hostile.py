"""HTTP/1 requests that are ambiguous or hostile, answered before any app runs (``_h11.py``),
and request bodies bounded in time and asked for only when read (issue 18 item 7)."""

from __future__ import annotations

import socket
from typing import Annotated, Any

import pytest
import trio

from tests.reliability.support import exchange, running_server
from trio_dwex import Body, Controller, Get, Module, Post, Settings, create_app

SMUGGLED = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"


class Calls:
    echo = 0


@Controller()
class EchoController:
    @Post("echo")
    async def echo(self, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        Calls.echo += 1
        return body

    @Get("ping")
    async def ping(self) -> dict[str, bool]:
        return {"ok": True}


@Module(controllers=[EchoController])
class EchoModule:
    pass


def json_post(body: bytes, *headers: bytes, version: bytes = b"1.1") -> bytes:
    head = [b"POST /echo HTTP/" + version, b"Host: t", b"Content-Type: application/json"]
    return b"\r\n".join([*head, *headers, b"", b""]) + body


@pytest.fixture
async def port() -> Any:
    Calls.echo = 0
    async with running_server(create_app(EchoModule, settings=Settings(body_timeout=0.5))) as p:
        yield p


async def test_content_length_with_transfer_encoding_is_refused_and_closed(port: int) -> None:
    # A front proxy that frames by Content-Length would see the GET as the POST's body; we
    # would have framed by the chunks and served the GET as a second request.
    request = json_post(
        b"0\r\n\r\n" + SMUGGLED, b"Content-Length: 36", b"Transfer-Encoding: chunked"
    )
    reply = await exchange(port, request)
    assert reply.statuses == [400]
    assert reply.closed
    assert Calls.echo == 0


async def test_transfer_encoding_in_http_1_0_is_refused_and_closed(port: int) -> None:
    request = json_post(b"2\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: chunked", version=b"1.0")
    reply = await exchange(port, request)
    assert reply.statuses == [400]
    assert reply.closed
    assert Calls.echo == 0


@pytest.mark.parametrize("version", [b"2.0", b"3.0", b"0.9"])
async def test_a_version_other_than_1_x_is_505(port: int, version: bytes) -> None:
    reply = await exchange(port, b"GET /ping HTTP/" + version + b"\r\nHost: t\r\n\r\n")
    assert reply.statuses == [505]
    assert reply.closed


async def test_a_later_1_x_is_served_as_1_1_with_the_head_limit(port: int) -> None:
    # RFC 9110 section 2.5: a higher minor version is processed as the highest we conform to.
    reply = await exchange(port, b"GET /ping HTTP/1.2\r\nHost: t\r\n\r\n", until=b'{"ok":true}')
    assert reply.status == 200
    big = b"GET /ping HTTP/1.2\r\nHost: t\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    reply = await exchange(port, big)
    assert reply.statuses == [431]
    assert reply.closed


async def test_a_declared_length_over_the_limit_gets_413_without_100_continue(port: int) -> None:
    request = json_post(b"", b"Content-Length: 5000000", b"Expect: 100-continue")
    reply = await exchange(port, request)
    assert reply.statuses == [413]  # and no "HTTP/1.1 100" before it


async def test_100_continue_is_sent_when_the_app_reads_the_body(port: int) -> None:
    request = json_post(b"", b"Content-Length: 8", b"Expect: 100-continue")
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(5)
        client.sendall(request)
        interim = await trio.to_thread.run_sync(client.recv, 65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        client.sendall(b'{"a": 1}')
        final = b""
        while not final.endswith(b'{"a":1}'):
            data = await trio.to_thread.run_sync(client.recv, 65536)
            assert data, f"closed before the whole answer: {final!r}"
            final += data
    assert final.startswith(b"HTTP/1.1 200 ")


async def test_no_100_continue_for_a_request_whose_body_nobody_reads(port: int) -> None:
    request = (
        b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n"
    )
    reply = await exchange(port, request)
    assert reply.statuses == [404]


async def test_a_body_slower_than_body_timeout_gets_408_and_a_close(port: int) -> None:
    request = json_post(b"{", b"Content-Length: 10")  # 9 bytes never come
    reply = await exchange(port, request)
    assert reply.statuses == [408]
    assert reply.closed
    assert b'"statusCode":408' in reply.data
    assert Calls.echo == 0


async def test_good_requests_still_pass(port: int) -> None:
    reply = await exchange(port, json_post(b'{"x":1}', b"Content-Length: 7", b"Connection: close"))
    assert reply.statuses == [200]
    assert reply.data.endswith(b'{"x":1}')
    chunked = json_post(
        b'7\r\n{"x":1}\r\n0\r\n\r\n', b"Transfer-Encoding: chunked", b"Connection: close"
    )
    reply = await exchange(port, chunked)
    assert reply.statuses == [200]
    assert reply.data.endswith(b'{"x":1}')
