"""A span per stream, with OpenTelemetry's SDK and its in-memory exporter (issue 19, item 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import open_stream, wait_until
from trio_dwex import Controller, Module, Settings, Sse, SseEvent, create_app
from trio_dwex.testing import serve_app

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
# The global provider can be set once per process; this module is its only user in the suite.
trace.set_tracer_provider(_provider)


@Controller()
class TracedController:
    @Sse("feed")
    async def feed(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="one")
        await trio.sleep_forever()

    @Sse("broken")
    async def broken(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="one")
        await trio.sleep(0.3)  # the headers are out by now: the stream fails, not the request
        raise RuntimeError("the source broke")


@Module(controllers=[TracedController])
class TracedModule:
    pass


def stream_spans() -> list[object]:
    return [span for span in EXPORTER.get_finished_spans() if span.name == "sse stream"]


async def test_each_stream_has_a_span_that_ends_with_its_reason() -> None:
    EXPORTER.clear()
    app = create_app(TracedModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with open_stream(client, "/feed") as stream:
            await stream.next_event()
            assert stream_spans() == []  # still open
        await wait_until(lambda: len(stream_spans()) == 1)
        assert "data: one" in (await client.get("/broken")).text
        await wait_until(lambda: len(stream_spans()) == 2)
    gone, failed = EXPORTER.get_finished_spans()
    assert gone.attributes is not None
    assert failed.attributes is not None
    assert gone.attributes["trio_dwex.stream.close_reason"] == "client_gone"
    assert gone.attributes["client.address"] == "127.0.0.1"
    assert [event.name for event in gone.events] == ["first event"]
    assert gone.status.status_code is trace.StatusCode.UNSET
    assert failed.attributes["trio_dwex.stream.close_reason"] == "error"
    assert failed.status.status_code is trace.StatusCode.ERROR


async def test_tracing_can_be_switched_off() -> None:
    EXPORTER.clear()
    app = create_app(TracedModule, settings=Settings(tracing=False))
    assert app.spans is None
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with open_stream(client, "/feed") as stream:
            await stream.next_event()
    assert EXPORTER.get_finished_spans() == ()
