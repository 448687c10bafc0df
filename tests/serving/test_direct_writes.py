"""The fast write path (``serving/_direct.py``): body chunks straight to the socket.

What must hold is what held before it: the bytes on the wire are valid HTTP/1.1 chunked
encoding (or an HTTP/1.0 body), the connection is reusable after a stream ends, nothing is
torn when the socket takes only part of a chunk, ``HEAD`` has no body, and TLS and HTTP/2 take
the full path. Each test reads the raw bytes on a socket, and the counters say which path ran.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio
import trustme

from tests.helpers import wait_until
from trio_dwex import Controller, Get, Module, Sse, SseEvent, SseStream, create_app
from trio_dwex.asgi._types import DIRECT_WRITE_EXTENSION
from trio_dwex.broadcast import Broadcast
from trio_dwex.serving._direct import direct_write_counts
from trio_dwex.testing import serve_app
from trio_dwex.wire._decoder import SseDecoder

BIG = "x" * 200_000  # far more than a socket buffer: the first write can only be partial
SPACED = 60  # 12 MB: more than loopback's send and receive buffers hold together


@Controller()
class StreamController:
    @Sse("three")
    async def three(self) -> AsyncIterator[SseEvent]:
        for n in range(3):
            yield SseEvent(data=f"event {n}", id=str(n))
            await trio.sleep(0.01)

    @Get("json")
    async def json(self) -> dict[str, str]:
        return {"hello": "world"}

    @Sse("late")
    async def late(self) -> AsyncIterator[SseEvent]:
        await trio.sleep(5)  # far past first_event_wait: the head goes out on its own first
        yield SseEvent(data="late")

    @Sse("big")
    async def big(self) -> AsyncIterator[SseEvent]:
        for n in range(6):
            yield SseEvent(data=f"{n}{BIG}")

    @Sse("big-spaced")
    async def big_spaced(self) -> AsyncIterator[SseEvent]:
        # Apart, so that the generator's own task writes them (streams/_outlet.py), and more
        # than the socket buffers on both sides hold while the client reads nothing.
        yield SseEvent(data="first")
        for n in range(SPACED):
            await trio.sleep(0.005)
            yield SseEvent(data=f"{n}{BIG}")


@Module(controllers=[StreamController])
class StreamModule:
    pass


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """The payload of a chunked body, and whether it ended with the last chunk; strict."""
    payload = bytearray()
    while body:
        size_line, sep, body = body.partition(b"\r\n")
        assert sep, "a chunk size without CRLF"
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", body[:50]
            return bytes(payload), True
        chunk, crlf, body = body[:size], body[size : size + 2], body[size + 2 :]
        assert len(chunk) == size, "a torn chunk"
        assert crlf == b"\r\n", "a chunk without its CRLF"
        payload += chunk
    return bytes(payload), False


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` (one or more) and read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = bytearray()
        with trio.fail_after(10):
            while chunk := await stream.receive_some():
                data += chunk
    return bytes(data)


def request(path: str, *, version: str = "1.1", method: str = "GET", close: bool = True) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"{method} {path} HTTP/{version}\r\nHost: x\r\n{connection}\r\n".encode()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def first_read(port: int, path: str) -> bytes:
    """Ask for ``path`` and return what the first read gets."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request(path))
        return await stream.receive_some()


async def test_chunks_are_valid_and_the_connection_is_reused() -> None:
    before = direct_write_counts.whole
    async with serve_app(create_app(StreamModule)) as url:
        # Two requests on one connection: the second is answered after the first stream's end,
        # which needs h11's state right after the chunks it did not write itself.
        both = request("/three", close=False) + request("/three")
        data = await raw_exchange(port_of(url), both)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in first.lower()
    body, ended = dechunk(rest.partition(b"HTTP/1.1 200")[0])
    assert ended
    assert [e.data for e in SseDecoder().feed(body)] == ["event 0", "event 1", "event 2"]
    second = rest[rest.index(b"HTTP/1.1 200") :]
    body, ended = dechunk(second.partition(b"\r\n\r\n")[2])
    assert ended
    assert [e.id for e in SseDecoder().feed(body)] == ["0", "1", "2"]
    assert direct_write_counts.whole - before >= 6  # the fast path wrote them


async def test_the_head_and_the_first_event_leave_in_one_write() -> None:
    before = direct_write_counts.with_head
    async with serve_app(create_app(StreamModule)) as url:
        with trio.fail_after(5):
            first = await first_read(port_of(url), "/three")
    # One write(2) on loopback arrives as one segment: the first read holds both.
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert [e.data for e in SseDecoder().feed(dechunk(body)[0])] == ["event 0"]
    assert direct_write_counts.with_head == before + 1


async def test_the_server_writes_its_own_heads_and_body_ends_directly() -> None:
    before = direct_write_counts.by_server
    async with serve_app(create_app(StreamModule)) as url:
        both = request("/json", close=False) + request("/three")
        data = await raw_exchange(port_of(url), both)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"content-length: 17" in first.lower()
    assert rest.startswith(b'{"hello":"world"}HTTP/1.1 200')  # the connection was reused
    stream_body, ended = dechunk(rest.partition(b"\r\n\r\n")[2])
    assert ended
    assert [e.data for e in SseDecoder().feed(stream_body)] == ["event 0", "event 1", "event 2"]
    # The JSON head, its body, the stream's end (its head left with its first event).
    assert direct_write_counts.by_server - before >= 3


async def test_a_stream_whose_first_event_is_late_sends_its_head_at_once() -> None:
    before = direct_write_counts.with_head
    async with serve_app(create_app(StreamModule)) as url:
        with trio.fail_after(3):  # the event comes after 5 s; the head after 0.2 s
            head = await first_read(port_of(url), "/late")
    assert head.startswith(b"HTTP/1.1 200")
    assert head.endswith(b"\r\n\r\n")  # the head alone
    assert direct_write_counts.with_head == before


async def test_http_1_0_gets_the_body_as_is_and_head_gets_none() -> None:
    async with serve_app(create_app(StreamModule)) as url:
        old = await raw_exchange(port_of(url), request("/three", version="1.0"))
        head = await raw_exchange(port_of(url), request("/three", method="HEAD"))
    status, _, body = old.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in status.lower()
    assert [e.data for e in SseDecoder().feed(body)] == ["event 0", "event 1", "event 2"]
    head_status, _, head_body = head.partition(b"\r\n\r\n")
    assert head_status.startswith(b"HTTP/1.1 405")  # a stream is not served to HEAD...
    assert head_body == b""  # ...and its answer has no body


async def read_after_a_stall(port: int, path: str, stall: float) -> bytes:
    """Ask for ``path``, read nothing for ``stall`` seconds (the socket buffers fill), then
    read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request(path))
        await trio.sleep(stall)
        data = bytearray()
        with trio.fail_after(10):
            while chunk := await stream.receive_some():
                data += chunk
    return bytes(data)


async def test_a_chunk_the_socket_takes_in_part_arrives_whole() -> None:
    before = direct_write_counts.partial
    async with serve_app(create_app(StreamModule)) as url:
        data = await read_after_a_stall(port_of(url), "/big", 0.3)
    body, ended = dechunk(data.partition(b"\r\n\r\n")[2])
    assert ended
    events = SseDecoder().feed(body)
    assert [e.data for e in events] == [f"{n}{BIG}" for n in range(6)]
    assert direct_write_counts.partial > before


async def test_producers_write_their_own_events_and_partial_frames_are_completed() -> None:
    before = (direct_write_counts.by_producers, direct_write_counts.partial)
    async with serve_app(create_app(StreamModule)) as url:
        # Spaced events, on a connection that is then reused: written by the generator's task.
        both = request("/three", close=False) + request("/three")
        data = await raw_exchange(port_of(url), both)
        body, ended = dechunk(data.partition(b"\r\n\r\n")[2].partition(b"HTTP/1.1 200")[0])
        assert ended
        assert [e.data for e in SseDecoder().feed(body)] == ["event 0", "event 1", "event 2"]
        assert direct_write_counts.by_producers - before[0] >= 4
        # Events larger than the socket's buffer while the client reads nothing: the producer
        # writes part of a frame, and the writer task sends the rest before anything else.
        received = await read_after_a_stall(port_of(url), "/big-spaced", SPACED * 0.005 + 0.2)
    body, ended = dechunk(received.partition(b"\r\n\r\n")[2])
    assert ended
    events = [e.data for e in SseDecoder().feed(body)]
    assert events == ["first"] + [f"{n}{BIG}" for n in range(SPACED)]
    assert direct_write_counts.partial > before[1]


async def test_an_asgi_middleware_around_the_app_sees_every_body_chunk() -> None:
    seen: list[bytes] = []

    async def shouting(scope: Any, receive: Any, send: Any) -> None:
        # Rewrites every body chunk: nothing may reach the socket past it.
        async def send_shouting(message: Any) -> None:
            if message["type"] == "http.response.body":
                seen.append(message.get("body", b""))
                body = message.get("body", b"").replace(b"event", b"EVENT")
                message = {**message, "body": body}
            await send(message)

        await app(scope, receive, send_shouting)

    app = create_app(StreamModule)
    before = direct_write_counts.whole + direct_write_counts.partial
    async with serve_app(shouting) as url:
        data = await raw_exchange(port_of(url), request("/three"))
    body, ended = dechunk(data.partition(b"\r\n\r\n")[2])
    assert ended
    assert [e.data for e in SseDecoder().feed(body)] == ["EVENT 0", "EVENT 1", "EVENT 2"]
    assert b"".join(seen).count(b"data: event") == 3
    assert direct_write_counts.whole + direct_write_counts.partial == before


async def test_a_broadcast_publisher_writes_to_every_subscriber_in_order() -> None:
    hub = Broadcast()

    @Controller()
    class Feed:
        @Sse("feed")
        def feed(self) -> SseStream:
            return hub.stream("t")

    @Module(controllers=[Feed])
    class FeedModule:
        pass

    subscribers, events = 12, 40
    before = direct_write_counts.by_producers
    async with hub, serve_app(create_app(FeedModule)) as url:
        streams = []
        for _ in range(subscribers):
            stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
            await stream.send_all(request("/feed"))
            streams.append(stream)
        await wait_until(lambda: hub.subscriber_count("t") == subscribers)
        for n in range(events):
            await hub.publish("t", f"n{n}")
            await trio.sleep(0.002)  # apart: each goes out from the publisher's own task

        async def read(stream: trio.SocketStream) -> list[str]:
            decoder, data = SseDecoder(), list[str]()
            with trio.fail_after(10):
                while len(data) < events:
                    chunk = await stream.receive_some()
                    assert chunk
                    data += [event.data for event in decoder.feed(chunk)]
            return data

        for stream in streams:
            async with stream:
                # The headers, then chunked frames: the decoder skips the framing lines.
                assert await read(stream) == [f"n{n}" for n in range(events)]
    # Every subscriber's first event goes with its headers, by its writer; most of the rest
    # were written by the publisher's task.
    assert direct_write_counts.by_producers - before >= subscribers * (events - 1) // 2


async def test_a_client_that_leaves_is_noticed_on_the_fast_path() -> None:
    app = create_app(StreamModule)

    @Controller()
    class Forever:
        @Sse("forever")
        async def forever(self) -> AsyncIterator[SseEvent]:
            while True:
                yield SseEvent(data="tick")
                await trio.sleep(0.01)

    @Module(controllers=[Forever])
    class ForeverModule:
        pass

    app = create_app(ForeverModule)
    async with serve_app(app) as url:
        stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
        await stream.send_all(request("/forever"))
        await stream.receive_some()
        await wait_until(lambda: app.stats()["open"] == 1)
        await stream.aclose()
        await wait_until(lambda: app.stats()["open"] == 0)


async def test_tls_takes_the_full_path() -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    with certificate.private_key_and_cert_chain_pem.tempfile() as pem:
        before = (direct_write_counts.whole, direct_write_counts.partial)
        async with serve_app(create_app(StreamModule), certfile=pem, keyfile=pem) as url:
            context = ssl.create_default_context()
            authority.configure_trust(context)
            async with httpx.AsyncClient(verify=context) as client:
                response = await client.get(url.replace("http://", "https://") + "/three")
        assert [e.data for e in SseDecoder().feed(response.content)] == [
            "event 0",
            "event 1",
            "event 2",
        ]
        assert (direct_write_counts.whole, direct_write_counts.partial) == before


async def test_a_frame_begun_by_a_producer_is_completed_when_the_app_ends_without_its_end() -> None:
    # A raw ASGI app on the fast path: its producer writes a frame larger than the socket
    # buffers while the client reads nothing, so only part of it goes, and the app then returns
    # with no last message. The server must send the rest of that frame before it closes.
    finished = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        writer = scope["extensions"][DIRECT_WRITE_EXTENSION]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert writer.write_now(b"x" * 4_000_000)
        assert writer.pending  # the rest waits for whoever writes next: here, the server
        finished.set()

    async with serve_app(app) as url:
        stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
        async with stream:
            await stream.send_all(request("/"))
            with trio.fail_after(10):
                await finished.wait()
            data = bytearray()
            with trio.fail_after(10):
                while chunk := await stream.receive_some():
                    data += chunk
    body, ended = dechunk(bytes(data).partition(b"\r\n\r\n")[2])
    assert body == b"x" * 4_000_000  # whole: the frame was not torn
    assert not ended  # the app never ended its body; the connection closed instead
