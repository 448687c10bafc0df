"""`EventSource` behaves like a browser's, against real servers running scripted raw ASGI apps."""

from __future__ import annotations

import socket

import httpx
import pytest
import trio

from tests.testing.apps import NO_CONTENT, Reply, ScriptedApp
from trio_dwex.testing import EventSource, EventSourceError, StopReason, serve_app

pytestmark = pytest.mark.filterwarnings("error")

#: Upper bound on any single test here; each one expects to take well under a second.
DEADLINE = 10


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_event_fields_and_json() -> None:
    app = ScriptedApp(
        Reply(
            [
                b": a comment is not an event\n",
                b'event: greeting\nid: 7\nretry: 1500\ndata: {"hello":\ndata: "world"}\n\n',
                b"data: plain\n\n",
            ]
        )
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, max_events=2) as source:
                first, second = [event async for event in source]
    assert (first.type, first.id, first.retry) == ("greeting", "7", 1500)
    assert first.data == '{"hello":\n"world"}'
    assert first.json() == {"hello": "world"}
    # The id and retry stay in force until the stream changes them, as in a browser.
    assert (second.type, second.data, second.id, second.retry) == ("message", "plain", "7", 1500)
    assert source.stop_reason is StopReason.MAX_EVENTS
    assert source.response is not None
    assert app.seen[0].headers["accept"] == "text/event-stream"
    assert "last-event-id" not in app.seen[0].headers


async def test_reconnects_after_the_servers_retry_and_sends_last_event_id() -> None:
    app = ScriptedApp(
        Reply([b"retry: 150\nid: 1\ndata: one\n\n"]),
        Reply([b"id: 2\ndata: two\n\n"]),
        Reply([b"data: three\n\n"]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, reconnect_delay=5) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["one", "two", "three"]
    assert app.last_event_ids() == [None, "1", "2", "2"]
    # 150 ms from the server, not the 5 s default, and not a hot loop either.
    gaps = app.gaps()
    assert len(gaps) == 3
    assert all(0.15 <= gap < 1.5 for gap in gaps), gaps
    assert (source.connections, source.reconnects) == (4, 3)
    assert source.stop_reason is StopReason.NO_CONTENT


async def read_raw(url: str) -> tuple[bytes, bool]:
    """GET ``url`` on a raw socket until the server closes it: (the bytes, whether it closed)."""
    host, port = url.removeprefix("http://").split(":")
    received = b""
    closed = False
    with trio.socket.socket() as sock:
        await sock.connect((host, int(port)))
        await sock.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        with trio.move_on_after(5):
            try:
                while data := await sock.recv(65536):
                    received += data
            except ConnectionResetError:
                pass
            closed = True
    return received, closed


async def test_reconnects_after_the_server_aborts_mid_stream() -> None:
    # The app raises after one event, its headers long out: Hypercorn cuts the connection
    # without the chunked body's last chunk, which httpx reports as a protocol error.
    aborted = Reply([b"retry: 50\nid: 1\ndata: one\n\n", 0.05], abort=True)
    witness = ScriptedApp(aborted)
    async with serve_app(witness) as url:
        with trio.fail_after(DEADLINE):
            raw, closed = await read_raw(url)
    assert raw.startswith(b"HTTP/1.1 200"), raw
    assert b"id: 1\ndata: one\n\n" in raw, raw
    assert closed, raw
    assert not raw.endswith(b"0\r\n\r\n"), raw  # cut, not ended

    app = ScriptedApp(aborted, Reply([b"id: 2\ndata: two\n\n"]))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, reconnect_delay=5) as source:
                events = [event async for event in source]
    assert [(e.data, e.id) for e in events] == [("one", "1"), ("two", "2")]
    # Reconnected after the cut, with the id it had seen, after the server's 50 ms retry.
    assert app.last_event_ids() == [None, "1", "2"]
    assert (source.connections, source.reconnects) == (3, 2)
    assert source.stop_reason is StopReason.NO_CONTENT
    (first_gap, _) = app.gaps()
    assert 0.05 <= first_gap < 1.5, first_gap


async def test_waits_reconnect_delay_when_the_server_sets_no_retry() -> None:
    app = ScriptedApp(Reply([b"data: one\n\n"]))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, reconnect_delay=0.3) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["one"]
    (gap,) = app.gaps()
    assert 0.3 <= gap < 2.0


async def test_stops_for_good_on_204() -> None:
    app = ScriptedApp(NO_CONTENT, Reply([b"data: never\n\n"]))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, reconnect_delay=0.01) as source:
                events = [event async for event in source]
    assert events == []
    assert source.stop_reason is StopReason.NO_CONTENT
    assert len(app.seen) == 1


async def test_an_unfinished_event_is_discarded_when_the_connection_drops() -> None:
    app = ScriptedApp(Reply([b"retry: 10\ndata: whole\n\nid: 9\ndata: half"]))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["whole"]
    # The id of the unfinished event never took effect either.
    assert app.last_event_ids() == [None, None]


async def test_a_stream_can_clear_the_last_event_id() -> None:
    app = ScriptedApp(Reply([b"retry: 10\nid\ndata: cleared\n\n"]))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, last_event_id="41") as source:
                events = [event async for event in source]
                assert source.last_event_id == ""
    assert [(e.data, e.id) for e in events] == [("cleared", "")]
    # Given on the first connection; cleared by `id` alone, so not sent on the second.
    assert app.last_event_ids() == ["41", None]


@pytest.mark.parametrize(
    ("reply", "status", "content_type", "quoted"),
    [
        (Reply([b"hello"], headers=[(b"content-type", b"text/plain")]), 200, "text/plain", "hello"),
        (
            Reply(
                [b'{"error": "boom"}'], status=500, headers=[(b"content-type", b"application/json")]
            ),
            500,
            "application/json",
            "boom",
        ),
        (Reply([b"data: x\n\n"], status=404), 404, "text/event-stream; charset=utf-8", "data: x"),
        (Reply([b"no type"], headers=[]), 200, None, "no type"),
        (
            Reply([b"data: x\n\n"], headers=[(b"content-type", b"text/event-streamer")]),
            200,
            "text/event-streamer",
            "",
        ),
    ],
)
async def test_fails_clearly_on_a_wrong_status_or_content_type(
    reply: Reply, status: int, content_type: str | None, quoted: str
) -> None:
    app = ScriptedApp(reply)
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, reconnect_delay=0.01) as source:
                with pytest.raises(EventSourceError) as caught:
                    await anext(source)
                # Failed for good: no reconnection, the iteration is over.
                assert [event async for event in source] == []
    error = caught.value
    assert (error.status_code, error.content_type) == (status, content_type)
    assert str(status) in str(error)
    assert quoted in str(error)
    assert source.stop_reason is StopReason.FAILED
    assert len(app.seen) == 1


async def test_a_wrong_answer_on_reconnection_fails_too() -> None:
    app = ScriptedApp(
        Reply([b"retry: 10\ndata: one\n\n"]),
        Reply([b"go away"], status=401, headers=[(b"content-type", b"text/plain")]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url) as source:
                assert (await anext(source)).data == "one"
                with pytest.raises(EventSourceError, match="401"):
                    await anext(source)


async def test_an_endless_stream_stops_after_max_events_and_hangs_up() -> None:
    app = ScriptedApp(Reply([b"data: tick\n\n" * 5], hold=True))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, max_events=3) as source:
                assert len([event async for event in source]) == 3
                # Hung up at once, not when the block ends: the server already knows.
                with trio.fail_after(2):
                    await app.seen[0].disconnected.wait()
    assert source.received == 3
    assert source.stop_reason is StopReason.MAX_EVENTS


async def test_timeout_ends_an_idle_stream_without_raising() -> None:
    app = ScriptedApp(Reply([b"data: only\n\n"], hold=True))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, timeout=0.3) as source:
                start = trio.current_time()
                events = [event async for event in source]
                elapsed = trio.current_time() - start
                with trio.fail_after(2):
                    await app.seen[0].disconnected.wait()
    assert [e.data for e in events] == ["only"]
    assert 0.2 <= elapsed < 2.0
    assert source.stop_reason is StopReason.TIMEOUT


@pytest.mark.parametrize(("max_reconnects", "connections"), [(0, 1), (2, 3)])
async def test_reconnect_limits(max_reconnects: int, connections: int) -> None:
    replies = [Reply([b"retry: 10\ndata: x\n\n"]) for _ in range(5)]
    app = ScriptedApp(*replies)
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, max_reconnects=max_reconnects) as source:
                events = [event async for event in source]
    assert len(events) == connections
    assert len(app.seen) == connections
    assert source.stop_reason is StopReason.ENDED


async def test_reconnect_false_stops_at_the_first_drop() -> None:
    app = ScriptedApp(Reply([b"retry: 10\ndata: x\n\n"]), Reply([b"data: y\n\n"]))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, reconnect=False) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["x"]
    assert source.stop_reason is StopReason.ENDED


async def test_an_unreachable_server_raises_once_reconnects_run_out() -> None:
    url = f"http://127.0.0.1:{free_port()}/events"
    with trio.fail_after(DEADLINE):
        async with EventSource(url, reconnect_delay=0.01, max_reconnects=2) as source:
            with pytest.raises(EventSourceError, match="could not connect") as caught:
                await anext(source)
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert source.reconnects == 2


async def test_an_unreachable_server_is_retried_until_the_timeout() -> None:
    url = f"http://127.0.0.1:{free_port()}/events"
    with trio.fail_after(DEADLINE):
        async with EventSource(url, reconnect_delay=0.05, timeout=0.5) as source:
            assert [event async for event in source] == []
    assert source.stop_reason is StopReason.TIMEOUT
    assert source.reconnects >= 2


async def test_read_timeout_treats_silence_as_a_dead_connection() -> None:
    app = ScriptedApp(
        Reply([b"retry: 10\nid: 1\ndata: one\n\n"], hold=True),
        Reply([b"data: two\n\n"]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, read_timeout=0.2) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["one", "two"]
    assert app.last_event_ids() == [None, "1", "1"]


async def test_follows_redirects_and_resolves_paths_on_a_given_client() -> None:
    app = ScriptedApp(
        Reply(status=307, headers=[(b"location", b"/moved")]),
        Reply([b"data: here\n\n"]),
    )
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=1) as client:
        with trio.fail_after(DEADLINE):
            async with EventSource("/events", client=client, max_events=1) as source:
                events = [event async for event in source]
        # The caller's client is the caller's to close.
        assert not client.is_closed
    assert [e.data for e in events] == ["here"]
    assert [seen.path for seen in app.seen] == ["/events", "/moved"]


async def test_the_read_timeout_of_a_given_client_does_not_cut_idle_streams() -> None:
    app = ScriptedApp(Reply([b"data: one\n\n", 0.4, b"data: two\n\n"]))
    async with serve_app(app) as url, httpx.AsyncClient(timeout=0.1) as client:
        with trio.fail_after(DEADLINE):
            async with EventSource(url, client=client, max_events=2) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["one", "two"]
    assert len(app.seen) == 1


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="last_event_id="):
        EventSource("http://x", headers={"last-event-id": "3"})
    with pytest.raises(ValueError, match="max_events"):
        EventSource("http://x", max_events=-1)
    with pytest.raises(ValueError, match="timeout"):
        EventSource("http://x", timeout=float("nan"))
    with pytest.raises(ValueError, match="control characters"):
        EventSource("http://x", last_event_id="1\n2")
    with pytest.raises(ValueError, match="control characters"):
        EventSource("http://x", last_event_id="1\x0b2")


async def test_ids_persist_across_reconnections_as_in_chromium() -> None:
    # Chromium 156 (see tests/clients/test_chromium.py) sends the old id again after a
    # reconnection whose events had no id of their own, and reports it as their lastEventId.
    app = ScriptedApp(
        Reply([b"retry: 10\nid: 1\ndata: one\n\n"]),
        Reply([b"data: two\n\n"]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url) as source:
                events = [event async for event in source]
    assert [(e.data, e.id) for e in events] == [("one", "1"), ("two", "1")]
    assert app.last_event_ids() == [None, "1", "1"]


async def test_a_byte_order_mark_is_stripped_on_every_connection() -> None:
    bom = "\ufeff".encode()
    app = ScriptedApp(
        # Split inside the BOM, with a pause so that the pieces arrive as separate chunks.
        Reply([bom[:2], 0.05, bom[2:] + b"retry: 10\ndata: one\n\n"]),
        Reply([bom + b"data: two\n\n"]),
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with EventSource(url) as source:
                events = [event async for event in source]
    assert [e.data for e in events] == ["one", "two"]


async def test_hanging_up_an_http2_stream_is_immediate_and_leaves_nothing_behind() -> None:
    # On HTTP/2 the connection outlives the stream; closing must not wait on it (it once
    # waited for the client's 5 s timeout). `filterwarnings("error")` above turns an httpx
    # generator left for the GC into a failure.
    app = ScriptedApp(Reply([b"data: one\n\n"], hold=True), Reply([b"data: two\n\n"], hold=True))
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with httpx.AsyncClient(base_url=url, http1=False, http2=True) as client:
                start = trio.current_time()
                for expected in ("one", "two"):  # one connection, two streams in turn
                    async with EventSource("/", client=client, max_events=1) as source:
                        assert [event.data async for event in source] == [expected]
                    assert source.response is not None
                    assert source.response.http_version == "HTTP/2"
                took = trio.current_time() - start
            # httpx sends no RST_STREAM for a response closed early (see the EventSource
            # docstring): the server sees these clients leave with the connection.
            for seen in app.seen:
                with trio.fail_after(2):
                    await seen.disconnected.wait()
    assert took < 1.0
