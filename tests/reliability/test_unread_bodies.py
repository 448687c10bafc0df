"""A request answered before its body arrived (``serving/_h11.py``,
``ServerLimits.unread_body_bytes``).

A guard that refuses, or a 406 for a wrong ``Accept``, answers without reading the body. If the
body was still on its way, Hypercorn closed the connection after the answer, and a client that
had already sent its next request on it got no response at all (seen as a flaky failure of the
MCP example's tests: httpx's "Server disconnected without sending a response"). Our server reads
the rest of the body and drops it, within limits, and keeps serving the connection.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Annotated

import trio

from trio_dwex import Body, Controller, Injectable, Module, Post, UseGuards, create_app
from trio_dwex.framework import ExecutionContext
from trio_dwex.serving import ServerLimits
from trio_dwex.serving._h11 import DEFAULT_UNREAD_BODY_BYTES

from .support import get, read_response, running_server


@Injectable()
class Refuse:
    def can_activate(self, context: ExecutionContext) -> bool:
        return False


@Controller("b")
class BodyController:
    @Post("refused")
    @UseGuards(Refuse)
    async def refused(self, body: Annotated[dict[str, str], Body()]) -> dict[str, str]:
        return body

    @Post("echo")
    async def echo(self, body: Annotated[dict[str, str], Body()]) -> dict[str, str]:
        return body


@Module(controllers=[BodyController], providers=[Refuse])
class BodyModule:
    pass


def post_head(path: str, length: int, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}", *headers]
    return "\r\n".join(lines).encode() + b"\r\n\r\n"


BODY = b'{"name": "value"}'


async def refused_before_its_body(client: trio.SocketStream, length: int = len(BODY)) -> None:
    """Send a refused request's head alone, and read the refusal."""
    await client.send_all(post_head("/b/refused", length))
    assert (await read_response(client)).startswith(b"HTTP/1.1 403 ")


async def assert_closed(client: trio.SocketStream, seconds: float) -> None:
    with trio.fail_after(seconds):
        try:
            while await client.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass  # an RST after unread bytes is a close too


async def test_a_body_that_arrives_after_the_answer_is_dropped_and_the_connection_serves_on() -> (
    None
):
    async with running_server(create_app(BodyModule)) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            await refused_before_its_body(client)
            await client.send_all(BODY)
            # The next request on the same connection, as a pooled client sends it.
            await client.send_all(post_head("/b/echo", len(BODY)) + BODY)
            echoed = await read_response(client)
            assert echoed.startswith(b"HTTP/1.1 200 "), echoed
            assert json.loads(echoed.partition(b"\r\n\r\n")[2]) == json.loads(BODY)
            # Twice, with the body in pieces and the next request pipelined behind it.
            await refused_before_its_body(client)
            await client.send_all(BODY[:5])
            await trio.sleep(0.05)
            await client.send_all(BODY[5:] + get("/b/nothing-here"))
            assert (await read_response(client)).startswith(b"HTTP/1.1 404 ")


async def test_a_body_over_the_limit_closes_the_connection() -> None:
    async with running_server(create_app(BodyModule)) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            length = DEFAULT_UNREAD_BODY_BYTES * 4
            await refused_before_its_body(client, length)
            with suppress(trio.BrokenResourceError):  # closed while we sent: as expected
                await client.send_all(b"x" * length)
            await assert_closed(client, seconds=5)


async def test_a_body_that_never_comes_is_waited_for_keep_alive_timeout() -> None:
    async with running_server(create_app(BodyModule), keep_alive_timeout=0.5) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            await refused_before_its_body(client)
            await client.send_all(BODY[:3])
            started = trio.current_time()
            await assert_closed(client, seconds=5)
            assert 0.4 < trio.current_time() - started < 3


async def test_a_client_waiting_for_100_continue_gets_the_connection_closed() -> None:
    """It sends no body before ``100 Continue``, which a refusal never sends: nothing to wait
    for, so the connection closes as Hypercorn closes it."""
    async with running_server(create_app(BodyModule), keep_alive_timeout=30) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            await client.send_all(post_head("/b/refused", len(BODY), "Expect: 100-continue"))
            assert (await read_response(client)).startswith(b"HTTP/1.1 403 ")
            await assert_closed(client, seconds=2)


async def test_the_limit_is_a_setting_and_zero_closes_at_once() -> None:
    """``unread_body_bytes=0`` is Hypercorn's way: the connection closes with the answer; a
    small limit closes it once the body has gone past it."""
    app = create_app(BodyModule)
    async with running_server(app, limits=ServerLimits(unread_body_bytes=0)) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            await refused_before_its_body(client)
            await assert_closed(client, seconds=2)
    small = ServerLimits(unread_body_bytes=len(BODY) - 1)
    async with running_server(app, limits=small, keep_alive_timeout=30) as port:
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            await refused_before_its_body(client)
            await client.send_all(BODY)
            await assert_closed(client, seconds=2)
