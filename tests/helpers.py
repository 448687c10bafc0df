"""Small helpers shared by the tests: reading a live event stream with httpx, and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from trio_dwex.wire._decoder import MessageEvent, SseDecoder


class LiveStream:
    """An open ``text/event-stream`` response, read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.decoder = SseDecoder()
        self._chunks = response.aiter_raw()
        self._ready: list[MessageEvent] = []
        self.raw = bytearray()

    async def next_event(self) -> MessageEvent:
        while not self._ready:
            chunk = await anext(self._chunks)
            self.raw += chunk
            self._ready.extend(self.decoder.feed(chunk))
        return self._ready.pop(0)

    async def next_chunk(self) -> bytes:
        chunk = await anext(self._chunks)
        self.raw += chunk
        self._ready.extend(self.decoder.feed(chunk))
        return chunk

    async def rest(self) -> bytes:
        """Everything until the server ends the response."""
        start = len(self.raw)
        async for chunk in self._chunks:
            self.raw += chunk
        return bytes(self.raw[start:])

    async def events(self, count: int) -> list[MessageEvent]:
        return [await self.next_event() for _ in range(count)]


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str, *, method: str = "GET", **kwargs: object
) -> AsyncIterator[LiveStream]:
    async with client.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        yield LiveStream(response)


async def read_all_events(
    client: httpx.AsyncClient, url: str, *, method: str = "GET", **kwargs: object
) -> list[MessageEvent]:
    decoder = SseDecoder()
    events: list[MessageEvent] = []
    async with client.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        async for chunk in response.aiter_raw():
            events.extend(decoder.feed(chunk))
    return events


async def accept_lifespan(receive, send) -> None:  # type: ignore[no-untyped-def]
    """The lifespan protocol for a raw ASGI test app that has nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll server-side state that a test cannot await, failing after ``seconds``."""
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 (the state has no event to wait on)
            await trio.sleep(0.005)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``text``, by (sample name, labels)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels``; fails if there is none."""
    key = (name, frozenset(labels.items()))
    found = samples(text)
    assert key in found, f"no sample {name}{labels} in:\n{text}"
    return found[key]
