"""Idle keep-alive connections (``serving/_idle.py``): closed after ``keep_alive_timeout``, and
at once when the server shuts down, with no task of their own while they wait.

Upstream runs a task per idle spell for this; our server makes it the deadline of the read the
connection waits in anyway. Each test here holds for upstream's way too, except the task
count, which is the point of the change.
"""

from __future__ import annotations

import h2.connection
import h2.events
import trio
import trio.testing

from tests.helpers import wait_until
from trio_dwex import Controller, Get, Module, create_app

from .apps import Counters, make_app
from .support import get, read_response, reset_on_close, running_server, task_count

KEEP_ALIVE = 0.5


async def request_on(client: trio.SocketStream, path: str) -> bytes:
    """Send a GET on an open connection and read its whole response."""
    await client.send_all(get(path))
    received = await read_response(client)
    assert received.startswith(b"HTTP/1.1 200 "), received
    return received


async def seconds_until_closed(client: trio.SocketStream, limit: float) -> float:
    """How long the server takes to close ``client`` (reading nothing else first)."""
    started = trio.current_time()
    with trio.fail_after(limit):
        assert await client.receive_some(65536) == b""
    return trio.current_time() - started


async def test_a_connection_idle_after_its_response_is_closed_after_keep_alive_timeout() -> None:
    async with running_server(make_app(Counters()), keep_alive_timeout=KEEP_ALIVE) as port:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        async with client:
            await request_on(client, "/t/ping")
            # A request before the timeout starts the timer again: the connection lives on
            # for longer than keep_alive_timeout in all, and serves both.
            await trio.sleep(KEEP_ALIVE * 0.6)
            await request_on(client, "/t/ping")
            await trio.sleep(KEEP_ALIVE * 0.6)
            await request_on(client, "/t/ping")
            elapsed = await seconds_until_closed(client, limit=5)
    assert KEEP_ALIVE * 0.8 < elapsed < KEEP_ALIVE + 1.5, elapsed


async def test_idle_connections_wait_without_a_task_of_their_own() -> None:
    """Upstream parks a task per idle connection (its timer); ours parks none but the
    connection's own."""
    connections = 20
    async with running_server(make_app(Counters()), keep_alive_timeout=60) as port:
        # One connection first, so that whatever the server starts once is already running.
        first = await trio.open_tcp_stream("127.0.0.1", port)
        await request_on(first, "/t/ping")
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        before = task_count()
        clients = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(connections)]
        for client in clients:
            await request_on(client, "/t/ping")
        # The requests' own tasks end once their responses are out.
        await wait_until(lambda: task_count() <= before + connections, seconds=5)
        assert task_count() == before + connections
        for client in [first, *clients]:
            await client.aclose()


async def test_a_reset_idle_connection_ends_at_once() -> None:
    """The reader waits on an idle connection's socket, so a client's reset ends it then, not
    at ``keep_alive_timeout``."""
    async with running_server(make_app(Counters()), keep_alive_timeout=60) as port:
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        before = task_count()
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await request_on(client, "/t/ping")
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert task_count() == before + 1  # the connection's own task
        reset_on_close(client.socket)
        await client.aclose()
        await wait_until(lambda: task_count() == before, seconds=2)


async def test_shutdown_closes_idle_connections_at_once() -> None:
    """Idle since their last response, or since accept: closed when the server stops, long
    before ``keep_alive_timeout`` or ``graceful_timeout``."""
    app = make_app(Counters())
    async with running_server(app, keep_alive_timeout=60, graceful_timeout=30) as port:
        answered = await trio.open_tcp_stream("127.0.0.1", port)
        await request_on(answered, "/t/ping")
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        # Every task waits (the accept included, which the cushion lets epoll report).
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        stopping = trio.current_time()
    assert trio.current_time() - stopping < 5
    for client in (answered, silent):
        async with client:
            assert await seconds_until_closed(client, limit=1) < 1


@Controller("h2")
class SlowController:
    @Get("slow")
    async def slow(self) -> dict[str, str]:
        await trio.sleep(1.0)
        return {"slow": "done"}


@Module(controllers=[SlowController])
class SlowModule:
    pass


async def test_an_http2_connection_idle_during_shutdown_closes_at_once() -> None:
    """HTTP/2 goes idle (its last stream ends) after shutdown began: Hypercorn sends GOAWAY
    and says the connection is idle. A client that keeps the connection open after GOAWAY
    (this one, a raw ``h2`` client) must still be closed at once, not after
    ``keep_alive_timeout`` or at ``graceful_timeout``."""
    app = create_app(SlowModule)
    events: list[type[h2.events.Event]] = []
    closed_after: list[float] = []

    async def fetch_slowly(port: int) -> None:
        connection = h2.connection.H2Connection()
        connection.initiate_connection()
        request = [(":method", "GET"), (":path", "/h2/slow"), (":scheme", "http")]
        connection.send_headers(1, [*request, (":authority", "test")], end_stream=True)
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            await client.send_all(connection.data_to_send())
            answered = trio.current_time()
            with trio.fail_after(10):
                while data := await client.receive_some(65536):
                    for event in connection.receive_data(data):
                        events.append(type(event))
                        if isinstance(event, h2.events.StreamEnded):
                            answered = trio.current_time()
                    await client.send_all(connection.data_to_send())  # acknowledgements
            closed_after.append(trio.current_time() - answered)

    async with trio.open_nursery() as nursery:
        async with running_server(app, keep_alive_timeout=60, graceful_timeout=30) as port:
            nursery.start_soon(fetch_slowly, port)
            await trio.sleep(0.3)  # the request is in the handler when the server stops
    assert h2.events.ResponseReceived in events, events
    assert h2.events.StreamEnded in events, events
    assert h2.events.ConnectionTerminated in events, events  # GOAWAY, which the client ignored
    assert len(closed_after) == 1, closed_after
    assert closed_after[0] < 2, closed_after
