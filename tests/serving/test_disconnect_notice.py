"""Our server tells a stream that its client left by a callback, not a task parked in receive().

``src/trio_dwex/serving/_notice.py`` explains the mechanism. These tests serve a trio-dwex app
in this process (so that they can walk Trio's task tree) and drive it over real sockets.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import hypercorn.trio
import trio
import trio.lowlevel
from hypercorn.config import Config

from trio_dwex import Controller, Module, Sse, SseEvent, create_app
from trio_dwex.testing import open_raw_stream, serve_app
from trio_dwex.testing._server import server_config

STREAMS = 3
WATCH_TASK = "trio_dwex.asgi._responses._watch_disconnect"
PUMP_TASK = "trio_dwex.streams._iterators.pump"
FEEDER_TASK = "trio_dwex.serving._fixes._DwexTCPServer._feed_protocol"
NOTICE_WITHIN = 2.0
"""Seconds within which a departed client's stream must have run its cleanup."""


def make_app(cleaned: list[str]) -> Any:
    @Controller("")
    class IdleController:
        @Sse("idle")
        async def idle(self) -> AsyncIterator[SseEvent]:
            try:
                yield SseEvent(data="hello")
                await trio.sleep_forever()
            finally:
                cleaned.append("idle")

    @Module(controllers=[IdleController])
    class IdleModule:
        pass

    return create_app(IdleModule)


def task_names() -> Iterator[str]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack = [root]
    while stack:
        task = stack.pop()
        yield task.name
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)


async def wait_for(cleaned: list[str], count: int) -> None:
    with trio.fail_after(NOTICE_WITHIN):
        while len(cleaned) < count:  # noqa: ASYNC110  # the app's own list, no event to wait on
            await trio.sleep(0.01)


async def test_an_idle_stream_on_our_server_has_no_task_waiting_for_its_client() -> None:
    cleaned: list[str] = []
    async with serve_app(make_app(cleaned)) as url, trio.open_nursery() as nursery:
        held: list[Any] = []

        async def hold(task_status: trio.TaskStatus[None]) -> None:
            async with open_raw_stream(url + "/idle") as stream:
                assert (await stream.next_event()) is not None
                held.append(stream)
                task_status.started()
                await trio.sleep_forever()

        for _ in range(STREAMS):
            await nursery.start(hold)
        names = list(task_names())
        assert names.count(PUMP_TASK) == STREAMS  # the walk sees the streams' tasks...
        assert WATCH_TASK not in names  # ...and none of them waits in receive()
        assert FEEDER_TASK not in names  # nor does any connection park a read-ahead feeder
        for index, stream in enumerate(held):
            # Both ways of leaving: a reset, and a polite close.
            stream.vanish() if index % 2 else stream.close()
        await wait_for(cleaned, STREAMS)
        nursery.cancel_scope.cancel()
    assert cleaned == ["idle"] * STREAMS


async def test_on_plain_hypercorn_a_stream_waits_in_receive_and_still_ends() -> None:
    cleaned: list[str] = []
    config: Config = server_config()
    shutdown = trio.Event()
    async with trio.open_nursery() as server:
        binds = await server.start(
            partial(hypercorn.trio.serve, make_app(cleaned), config, shutdown_trigger=shutdown.wait)
        )
        url = binds[0]
        async with open_raw_stream(url + "/idle") as stream:
            assert (await stream.next_event()) is not None
            assert list(task_names()).count(WATCH_TASK) == 1
            stream.vanish()
            await wait_for(cleaned, 1)
        shutdown.set()
    assert cleaned == ["idle"]


async def test_a_stream_that_never_reads_its_request_body_ends_when_the_client_leaves() -> None:
    """The body's messages are dropped, not queued: a full queue would block the connection.

    (A GET with a body: unusual, but nothing stops a client from sending one, and the route
    never reads it.)
    """
    cleaned: list[str] = []
    body_size = 4 * 2**20
    async with serve_app(make_app(cleaned)) as url:
        port = int(url.rsplit(":", 1)[1])
        sock = trio.socket.socket()
        with sock:
            await sock.connect(("127.0.0.1", port))
            head = (
                f"GET /idle HTTP/1.1\r\nHost: x\r\nContent-Length: {body_size}\r\n\r\n"
            ).encode()
            await sock.send(head)
            received = b""
            while b"data: hello" not in received:
                received += await sock.recv(2**16)
            # Far more than Hypercorn's queue of ten messages and our read-ahead of 64 KiB.
            chunk = b"x" * 2**16
            sent = 0
            with trio.move_on_after(1.0):
                while sent < body_size - len(chunk):
                    sent += await sock.send(chunk)
            assert sent > 20 * len(chunk), "the server stopped taking the body early"
        await wait_for(cleaned, 1)
    assert cleaned == ["idle"]


async def test_a_feeder_runs_only_while_bytes_wait_for_the_protocol() -> None:
    """Bytes pipelined behind a stream wait in a feeder (h11 is paused) until the client leaves."""
    cleaned: list[str] = []
    async with serve_app(make_app(cleaned)) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        get = f"GET /idle HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        with trio.socket.socket() as sock, trio.fail_after(NOTICE_WITHIN):
            await sock.connect((host, int(port)))
            await sock.send(get)
            received = b""
            while b"data: hello" not in received:
                received += await sock.recv(4096)
            assert FEEDER_TASK not in task_names()
            await sock.send(get)  # pipelined: h11 holds it until the stream ends
            while FEEDER_TASK not in task_names():  # noqa: ASYNC110  # a task tree, no event
                await trio.sleep(0.01)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await wait_for(cleaned, 1)
        with trio.fail_after(NOTICE_WITHIN):
            while FEEDER_TASK in task_names():  # noqa: ASYNC110
                await trio.sleep(0.01)
