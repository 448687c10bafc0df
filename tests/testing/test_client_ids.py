"""`EventSource` sends ids back as browsers do, follows redirects for good, and never spins.

Chromium and npm ``eventsource`` send a resumed id as its UTF-8 bytes, trimmed of the spaces and
tabs at either end; a reconnection goes to the URL that the last response came from, after its
redirects. And every way the source gives up is an `EventSourceError`, raised at once when a
retry could not help (a scheme httpx cannot speak, an id no header can carry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
import trio

from tests.testing.apps import Reply, ScriptedApp
from trio_dwex import Controller, Headers, Module, Sse, SseEvent, create_app
from trio_dwex.testing import EventSource, EventSourceError, StopReason, serve_app

pytestmark = pytest.mark.filterwarnings("error")

DEADLINE = 10


@pytest.mark.parametrize(
    ("stream_id", "sent"),
    [
        ("é…-1", "é…-1"),
        ("  padded\t", "padded"),  # the stream may set it; HTTP trims it on the way back
        ("in\tside", "in\tside"),
    ],
)
async def test_a_resumed_id_is_sent_as_utf8_and_trimmed(stream_id: str, sent: str) -> None:
    app = ScriptedApp(
        Reply([b"retry: 10\nid: " + stream_id.encode() + b"\ndata: one\n\n"]),
        Reply([b"data: two\n\n"]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, max_events=2) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["one", "two"]
    assert events[0].id == stream_id  # what the stream said, as a browser reports it
    assert app.last_event_ids() == [None, sent]


async def test_a_non_ascii_last_event_id_argument_is_sent_as_utf8() -> None:
    app = ScriptedApp(Reply([b"data: one\n\n"]))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, max_events=1, last_event_id="日本-7") as source:
                [event async for event in source]
    assert app.last_event_ids() == ["日本-7"]


@pytest.mark.parametrize("control", ["\x0b", "\x0c", "\x01"])
async def test_an_id_no_header_can_carry_fails_at_once(control: str) -> None:
    app = ScriptedApp(
        Reply([b"retry: 1\nid: a" + control.encode() + b"b\ndata: one\n\n"]),
        Reply([b"data: never\n\n"]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url) as source:
                first = await anext(aiter(source))
                with pytest.raises(EventSourceError, match="cannot be sent back as Last-Event-ID"):
                    await anext(aiter(source))
    assert first.data == "one"
    assert source.stop_reason is StopReason.FAILED
    assert len(app.seen) == 1  # no request was even attempted, let alone 200 of them


async def test_a_reconnection_goes_to_the_url_the_redirect_led_to() -> None:
    app = ScriptedApp(
        Reply(status=307, headers=[(b"location", b"/moved")]),
        Reply([b"retry: 10\nid: 1\ndata: one\n\n"]),
        Reply([b"data: two\n\n"]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url + "/events", max_events=2) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["one", "two"]
    assert [seen.path for seen in app.seen] == ["/events", "/moved", "/moved"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/events", "file:///etc/passwd"])
async def test_a_scheme_httpx_cannot_speak_fails_at_once(url: str) -> None:
    with trio.fail_after(DEADLINE):
        async with EventSource(url, reconnect_delay=0) as source:
            with pytest.raises(EventSourceError, match="UnsupportedProtocol") as caught:
                await anext(aiter(source))
    assert isinstance(caught.value.__cause__, httpx.UnsupportedProtocol)
    assert source.stop_reason is StopReason.FAILED
    assert source.reconnects == 0


@Controller("")
class EchoController:
    @Sse("resume")
    async def resume(
        self, last_id: Annotated[str | None, Headers("last-event-id")] = None
    ) -> AsyncIterator[SseEvent]:
        yield SseEvent(data={"resumed_from": last_id}, id="é…-2")


@Module(controllers=[EchoController])
class EchoModule:
    pass


async def test_the_server_reads_a_browser_sent_utf8_id_as_the_id_it_sent() -> None:
    app = create_app(EchoModule)
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url + "/resume", max_events=1, last_event_id="é…-1") as s:
                [event] = [event async for event in s]
    assert event.json() == {"resumed_from": "é…-1"}
    assert event.id == "é…-2"
