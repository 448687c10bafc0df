"""gzip for streams that opt in: each event still arrives at once, and only for clients that ask."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httpx
import pytest
import trio

from tests.helpers import wait_until
from trio_dwex import Controller, Module, Settings, Sse, SseEvent, StreamSettings, create_app
from trio_dwex.testing import serve_app
from trio_dwex.wire._decoder import MessageEvent, SseDecoder

#: A realistic event: a notification as JSON, much of it repeated from one event to the next.
NOTE = {
    "type": "order.updated",
    "order": {"id": "ord_0001", "status": "shipped", "carrier": "parcel-express"},
    "customer": {"id": "cus_42", "name": "Ada Lovelace", "email": "ada@example.com"},
}

RELEASE = trio.Event()


@Controller()
class FeedController:
    @Sse("feed", compress=True)
    async def feed(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data=NOTE, event="note", id="1")
        await RELEASE.wait()  # the stream stays open: the first event must not wait for it
        for n in range(2, 50):
            yield SseEvent(data=NOTE, event="note", id=str(n))

    @Sse("plain")
    async def plain(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data=NOTE, event="note")

    @Sse("brotli", compress="br")
    async def brotli(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data=NOTE, event="note", id="1")
        await RELEASE.wait()
        for n in range(2, 50):
            yield SseEvent(data=NOTE, event="note", id=str(n))


@Module(controllers=[FeedController])
class FeedModule:
    pass


class Inflater(Protocol):
    """A client's side of one coding: bytes in, decoded bytes out, and whether it ended."""

    def decode(self, chunk: bytes) -> bytes: ...

    def ended(self) -> bool: ...


class GzipInflater:
    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(31)

    def decode(self, chunk: bytes) -> bytes:
        return self._inflate.decompress(chunk)

    def ended(self) -> bool:
        return self._inflate.eof  # a whole gzip member: the trailer came at the end


class BrotliInflater:
    def __init__(self) -> None:
        import brotli  # type: ignore[import-untyped]

        self._decompressor = brotli.Decompressor()

    def decode(self, chunk: bytes) -> bytes:
        return bytes(self._decompressor.process(chunk))

    def ended(self) -> bool:
        return bool(self._decompressor.is_finished())  # the stream's end came at the end


@pytest.mark.parametrize(
    ("path", "coding", "inflater"),
    [("/feed", "gzip", GzipInflater), ("/brotli", "br", BrotliInflater)],
    ids=["gzip", "brotli"],
)
async def test_a_lone_event_arrives_compressed_without_waiting_for_more(
    path: str, coding: str, inflater: Callable[[], Inflater]
) -> None:
    global RELEASE
    RELEASE = trio.Event()
    app = create_app(FeedModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {"Accept-Encoding": coding}
        async with client.stream("GET", path, headers=headers) as response:
            assert response.headers["content-encoding"] == coding
            assert response.headers["vary"] == "accept-encoding"
            assert "no-transform" in response.headers["cache-control"]
            inflate = inflater()
            decoder = SseDecoder()
            raw = response.aiter_raw()
            wire = 0
            events: list[MessageEvent] = []
            with trio.fail_after(5):
                while not events:  # the stream is still open: nothing else is coming yet
                    chunk = await anext(raw)
                    wire += len(chunk)
                    events += decoder.feed(inflate.decode(chunk))
            assert [e.id for e in events] == ["1"]
            RELEASE.set()
            async for chunk in raw:
                wire += len(chunk)
                events += decoder.feed(inflate.decode(chunk))
            assert inflate.ended()
        assert [e.id for e in events] == [str(n) for n in range(1, 50)]
        plain = sum(len(event.data) for event in events)
        assert wire < plain / 3  # what compression is for


async def test_only_for_a_client_that_asks() -> None:
    global RELEASE
    RELEASE = trio.Event()
    RELEASE.set()
    app = create_app(FeedModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        # httpx asks for gzip unless told otherwise: "" stands for a client that says nothing.
        for accept in ("", "identity", "gzip;q=0", "gzip;q=0, br;q=0", "*;q=0"):
            headers = {"Accept-Encoding": accept}
            async with client.stream("GET", "/feed", headers=headers) as response:
                assert "content-encoding" not in response.headers, accept
                body = await response.aread()
            assert len(SseDecoder().feed(body)) == 49, accept
        for accept in ("gzip", "deflate, gzip;q=0.5", "br;q=0, gzip"):
            response = await client.get("/feed", headers={"Accept-Encoding": accept})
            assert response.headers["content-encoding"] == "gzip", accept
            assert len(SseDecoder().feed(response.content)) == 49  # httpx inflates it
        # compress=True is gzip, even for a client that also takes brotli.
        response = await client.get("/feed", headers={"Accept-Encoding": "br, gzip"})
        assert response.headers["content-encoding"] == "gzip"
        # compress="br": brotli (installed with the test extra) for a client that takes it,
        # gzip for one that does not.
        for accept, coding in (("br", "br"), ("gzip, br", "br"), ("*", "br"), ("gzip", "gzip")):
            response = await client.get("/brotli", headers={"Accept-Encoding": accept})
            assert response.headers["content-encoding"] == coding, accept
            assert len(SseDecoder().feed(response.content)) == 49  # httpx decodes it
        refused = await client.get("/brotli", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in refused.headers
        plain = await client.get("/plain", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in plain.headers  # not asked for by the route


async def test_the_app_can_compress_every_stream() -> None:
    settings = Settings(streams=StreamSettings(compress=True))
    app = create_app(FeedModule, settings=settings)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        plain = await client.get("/plain", headers={"Accept-Encoding": "gzip"})
        assert plain.headers["content-encoding"] == "gzip"
        assert SseDecoder().feed(plain.content)[0].type == "note"
        await wait_until(lambda: app.stats()["open"] == 0)


def test_the_coding_is_a_checked_setting() -> None:
    for bad in ("zstd", 1, "gzip "):
        with pytest.raises(ValueError, match='compress must be a bool, "gzip" or "br"'):
            StreamSettings(compress=bad)  # type: ignore[arg-type]
    assert StreamSettings(compress="br").compress == "br"
