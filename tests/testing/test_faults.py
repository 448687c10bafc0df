"""The faulty clients do what they say on the wire, and servers clean up after them."""

from __future__ import annotations

import pytest
import trio

from tests.testing.apps import Reply, ScriptedApp
from tests.testing.dwex_apps import make_app
from trio_dwex.lowlevel import CloseReason
from trio_dwex.testing import open_raw_stream, open_stalled_stream, serve_app

DEADLINE = 10
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\n\r\n5\r\n:hi\n\n\r\n"
)


async def close_seen_by_a_plain_server(leave: str) -> str:
    """How a bare socket server sees our client leave: ``"fin"`` or ``"rst"``."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    seen: list[str] = []

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some()  # the request, in one piece on loopback
            await stream.send_all(HEAD)
            try:
                data = await stream.receive_some()
                seen.append("fin" if data == b"" else f"data {data!r}")
            except trio.BrokenResourceError as error:
                is_reset = isinstance(error.__cause__, ConnectionResetError)
                seen.append("rst" if is_reset else repr(error))
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        async with open_raw_stream(f"http://127.0.0.1:{port}/") as stream:
            assert stream.status == 200
            if leave == "vanish":
                stream.vanish()
            else:
                stream.close()
    (how,) = seen
    return how


async def test_vanish_sends_a_reset_and_close_a_fin() -> None:
    with trio.fail_after(DEADLINE):
        assert await close_seen_by_a_plain_server("vanish") == "rst"
        assert await close_seen_by_a_plain_server("close") == "fin"


async def test_a_raw_stream_reads_status_headers_and_events() -> None:
    app = ScriptedApp(
        Reply(
            [b"event: a\ndata: 1\n\n", 0.02, b"data: 2\n\n"],
            headers=[
                (b"content-type", b"text/event-stream"),
                (b"x-twice", b"one"),
                (b"x-twice", b"two"),
            ],
        )
    )
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with open_raw_stream(url + "/raw?q=1", headers={"X-Test": "yes"}) as stream:
                first = await stream.next_event()
                second = await stream.next_event()
                assert await stream.next_event() is None  # the response ended
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.headers["x-twice"] == "one, two"
    assert first is not None
    assert (first.type, first.data) == ("a", "1")
    assert second is not None
    assert second.data == "2"
    assert bytes(stream.raw) == b"event: a\ndata: 1\n\ndata: 2\n\n"
    assert app.seen[0].headers["x-test"] == "yes"
    assert app.seen[0].headers["accept"] == "text/event-stream"


async def test_the_server_cleans_up_after_a_client_that_vanishes() -> None:
    app, cleanups = make_app()
    async with serve_app(app) as url:
        with trio.fail_after(DEADLINE):
            async with open_raw_stream(url + "/idle") as stream:
                event = await stream.next_event()
                assert event is not None
                assert event.type == "greeting"
                assert app.streams.open_count == 1
                start = trio.current_time()
                stream.vanish()
                await cleanups.wait_for("idle")
                noticed_after = trio.current_time() - start
    assert noticed_after < 1.0
    assert app.streams.closed[CloseReason.CLIENT_GONE] == 1


async def test_the_server_drops_a_client_that_stalls() -> None:
    app, cleanups = make_app(send_timeout=0.3)
    async with serve_app(app, write_timeout=0.3) as url:
        with trio.fail_after(DEADLINE):
            async with open_stalled_stream(url + "/flood") as stream:
                assert stream.status == 200
                start = trio.current_time()
                await cleanups.wait_for("flood")
                dropped_after = trio.current_time() - start
    # Dropped for being slow (or, once the server's write timed out, as gone), soon after
    # its buffers filled: not when the flood ran out, nor at shutdown. Read after the server
    # stopped, when every stream's outcome is recorded.
    reasons = +app.streams.closed
    assert sum(reasons.values()) == 1, reasons
    assert set(reasons) <= {CloseReason.SLOW_CLIENT, CloseReason.CLIENT_GONE}, reasons
    assert dropped_after < 3.0


async def test_a_stalled_client_holds_the_stream_open_until_the_send_timeout() -> None:
    app, cleanups = make_app(send_timeout=5.0)
    async with serve_app(app, write_timeout=5.0) as url:
        with trio.fail_after(DEADLINE):
            async with open_stalled_stream(url + "/flood"):
                await trio.sleep(0.5)
                # Still open: the server is blocked on us, not done with its 500 MB.
                assert "flood" not in cleanups.finished
                assert app.streams.open_count == 1


async def test_only_plain_http() -> None:
    with pytest.raises(ValueError, match=r"plain HTTP/1\.1"):
        async with open_raw_stream("https://127.0.0.1:1/"):
            pass
