"""A client that stops reading is dropped, and costs bounded memory, under `serve()`."""

from __future__ import annotations

import resource
import socket
from functools import partial

import httpx
import pytest
import trio

from tests.helpers import accept_lifespan, open_stream, read_all_events
from trio_dwex import CloseReason, EventSourceResponse, SseEvent, SseStream, StreamSettings
from trio_dwex.serving import serve
from trio_dwex.serving.serve import make_config
from trio_dwex.streams.runner import StreamTracker


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_a_stalled_client_is_dropped_and_the_others_get_every_event() -> None:
    streams: list[SseStream] = []
    tracker = StreamTracker()
    settings = StreamSettings(send_timeout=1.0, buffer_size=64)

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        stream = SseStream(buffer_size=settings.buffer_size)
        streams.append(stream)
        stream.send_nowait(SseEvent(data="welcome", id="0"))
        await EventSourceResponse(stream, settings=settings, tracker=tracker)(scope, receive, send)

    payload = "x" * 4096
    total = 2000
    async with trio.open_nursery() as nursery:
        config = make_config(port=0)
        binds = await nursery.start(
            partial(
                serve, app, config=config, write_timeout=1.0, shutdown_trigger=trio.sleep_forever
            )
        )
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)

        # The staller: asks for the stream, then never reads, with tiny socket buffers.
        staller = trio.socket.socket()
        staller.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await staller.connect((host, int(port)))
        await staller.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")

        received: list[str] = []
        async with httpx.AsyncClient(timeout=10) as client:
            async with open_stream(client, binds[0]) as reader:
                await reader.next_event()
                with trio.fail_after(5):
                    while len(streams) < 2:  # noqa: ASYNC110 (server-side state)
                        await trio.sleep(0.01)
                before = rss_kib()

                async def publish() -> None:
                    for n in range(1, total + 1):
                        for stream in list(streams):
                            stream.send_nowait(SseEvent(data=payload, id=str(n)))
                        await trio.sleep(0.0005)
                    streams[-1].close()

                nursery.start_soon(publish)
                with trio.fail_after(30):
                    while True:
                        event = await reader.next_event()
                        received.append(event.id)
                        if event.id == str(total):
                            break
                grown = rss_kib() - before
        staller.close()
        nursery.cancel_scope.cancel()

    assert received == [str(n) for n in range(1, total + 1)]
    stalled = tracker.closed[CloseReason.OVERFLOW] + tracker.closed[CloseReason.SLOW_CLIENT]
    assert stalled == 1, tracker.stats()
    # 2,000 events of 4 KiB went to the staller's stream: it kept at most its 64-event buffer.
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB"


@pytest.mark.parametrize("fast_send_lock", [True, False])
async def test_both_send_lock_modes_deliver_every_event_to_every_client(
    fast_send_lock: bool,
) -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return

        async def numbers():  # type: ignore[no-untyped-def]
            for n in range(300):
                yield SseEvent(data=str(n), id=str(n))
                await trio.lowlevel.checkpoint()

        await EventSourceResponse(numbers())(scope, receive, send)

    results: list[list[str]] = []
    async with trio.open_nursery() as nursery:
        config = make_config(port=0)
        binds = await nursery.start(
            partial(
                serve,
                app,
                config=config,
                fast_send_lock=fast_send_lock,
                shutdown_trigger=trio.sleep_forever,
            )
        )

        async def one(client: httpx.AsyncClient) -> None:
            events = await read_all_events(client, binds[0])
            results.append([event.id for event in events])

        async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as clients:
            for _ in range(20):
                clients.start_soon(one, client)
        nursery.cancel_scope.cancel()
    assert results == [[str(n) for n in range(300)]] * 20
