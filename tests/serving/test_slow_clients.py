"""A client that stops reading is dropped, and costs bounded memory, under `serve()`."""

from __future__ import annotations

import resource
import socket
from collections.abc import AsyncIterator
from functools import partial

import httpx
import pytest
import trio

from tests.helpers import accept_lifespan, open_stream, read_all_events
from trio_dwex import EventSourceResponse, SseEvent, SseStream, StreamSettings
from trio_dwex.asgi._types import Receive, Scope, Send
from trio_dwex.lowlevel import CloseReason, StreamTracker
from trio_dwex.serving import serve
from trio_dwex.serving._serve import make_config


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


#: Events of `STALLER_PAYLOAD` bytes published at once to the stalled client: 128 MiB in all.
#: Had its stream no bound, the server would hold all of them (measured: RSS grows by 260 MiB
#: with a buffer of a million events); with a 64-event buffer it grows by about 17 MiB, most
#: of it the reader's share and the allocator's.
STALLER_EVENTS = 2000
STALLER_PAYLOAD = 64 * 1024
#: The most the server's RSS may grow meanwhile: well under the 128 MiB of unbounded buffering.
RSS_BOUND_KIB = 48 * 1024


async def stall(staller_buffer_size: int) -> tuple[list[str], StreamTracker, int]:
    """A reader and a staller; returns the reader's event ids, the tracker, RSS growth (KiB).

    ``staller_buffer_size`` is a parameter so that the counterfactual can be tried by hand:
    ``trio.run(stall, 10**6)`` grows the RSS far beyond `RSS_BOUND_KIB`.
    """
    streams: dict[str, SseStream] = {}
    tracker = StreamTracker()
    settings = StreamSettings(send_timeout=1.0, buffer_size=64)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        size = staller_buffer_size if scope["path"] == "/staller" else settings.buffer_size
        stream = SseStream(buffer_size=size)
        streams[scope["path"]] = stream
        stream.send_nowait(SseEvent(data="welcome", id="0"))
        await EventSourceResponse(stream, settings=settings, tracker=tracker)(scope, receive, send)

    payload = "x" * 4096
    big = "y" * STALLER_PAYLOAD
    total = STALLER_EVENTS
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
        await staller.send(b"GET /staller HTTP/1.1\r\nHost: test\r\n\r\n")

        received: list[str] = []
        async with httpx.AsyncClient(timeout=10) as client:
            async with open_stream(client, binds[0] + "/reader") as reader:
                await reader.next_event()
                with trio.fail_after(5):
                    while len(streams) < 2:  # noqa: ASYNC110 (server-side state)
                        await trio.sleep(0.01)
                before = rss_kib()
                peak = before

                async def publish() -> None:
                    # At once, well within the send timeout, and each event its own 64 KiB
                    # string: an unbounded stream would hold all 128 MiB of them.
                    for n in range(1, total + 1):
                        data = f"{n:08d}" + big
                        streams["/staller"].send_nowait(SseEvent(data=data, id=str(n)))
                    for n in range(1, total + 1):
                        streams["/reader"].send_nowait(SseEvent(data=payload, id=str(n)))
                        await trio.sleep(0.0005)
                    streams["/reader"].close()

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, rss_kib())
                        await trio.sleep(0.005)

                nursery.start_soon(publish)
                nursery.start_soon(sample)
                with trio.fail_after(30):
                    while True:
                        event = await reader.next_event()
                        received.append(event.id)
                        if event.id == str(total):
                            break
                grown = max(peak, rss_kib()) - before
        staller.close()
        nursery.cancel_scope.cancel()

    return received, tracker, grown


async def test_a_stalled_client_is_dropped_and_the_others_get_every_event() -> None:
    received, tracker, grown = await stall(staller_buffer_size=64)
    assert received == [str(n) for n in range(1, STALLER_EVENTS + 1)]
    stalled = tracker.closed[CloseReason.OVERFLOW] + tracker.closed[CloseReason.SLOW_CLIENT]
    assert stalled == 1, tracker.stats()
    # 128 MiB of events went to the staller's stream: it kept at most its 64-event buffer.
    assert grown < RSS_BOUND_KIB, f"RSS grew by {grown} KiB"


@pytest.mark.parametrize("fast_send_lock", [True, False])
async def test_both_send_lock_modes_deliver_every_event_to_every_client(
    fast_send_lock: bool,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return

        async def numbers() -> AsyncIterator[SseEvent]:
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
