"""Per-request providers, with a database-like pool of one connection, on a real server.

The point of ``Inject(release="headers")``: a stream that needs a connection only to load its
first page gives it back once its headers are out, so a long stream does not hold a pool slot.
With one slot, that is visible: a second request gets the slot while the stream runs, and
without the early release it is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Annotated

import httpx
import pytest
import trio
import trio.lowlevel

from tests.helpers import open_stream, wait_until
from trio_dwex import (
    ConfigurationError,
    Controller,
    Get,
    Inject,
    Injectable,
    Module,
    Query,
    ServiceUnavailableException,
    Sse,
    SseEvent,
    create_app,
)
from trio_dwex.testing import serve_app


@Injectable()
class Pool:
    """One connection; taking a second while it is lent is refused (a 503)."""

    def __init__(self) -> None:
        self.lent = 0
        self.taken = 0

    def take(self) -> None:
        if self.lent:
            raise ServiceUnavailableException("the pool is exhausted")
        self.lent += 1
        self.taken += 1

    def give_back(self) -> None:
        self.lent -= 1


@Injectable(scope="request")
class DbSession:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.open = False

    async def __aenter__(self) -> DbSession:
        self.pool.take()
        self.open = True
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await trio.lowlevel.checkpoint()  # an async release: it must run for a client that left
        self.open = False
        self.pool.give_back()

    def orders(self) -> list[str]:
        assert self.open, "the session was used after it was released"
        return ["tea", "cake"]


@Injectable(scope="request")
class OrderRepository:
    def __init__(self, session: DbSession) -> None:
        self.session = session


@Controller()
class OrderController:
    @Get("orders")
    def orders(
        self,
        db: Annotated[DbSession, Inject()],
        repository: Annotated[OrderRepository, Inject()],
        limit: Annotated[int, Query()] = 10,
    ) -> dict[str, object]:
        return {"orders": db.orders()[:limit], "same": repository.session is db}

    @Get("slow")
    async def slow(self, db: Annotated[DbSession, Inject()]) -> dict[str, object]:
        await trio.sleep_forever()  # a handler still at work when the request is cancelled
        raise AssertionError("unreachable")

    @Sse("live")
    async def live(
        self, db: Annotated[DbSession, Inject(release="headers")]
    ) -> AsyncIterator[SseEvent]:
        return self.events(db.orders())

    @Sse("live-holding")
    async def live_holding(self, db: Annotated[DbSession, Inject()]) -> AsyncIterator[SseEvent]:
        return self.events(db.orders())

    async def events(self, first_page: list[str]) -> AsyncIterator[SseEvent]:
        yield SseEvent(data=first_page, event="snapshot")
        await trio.sleep_forever()


@Module(controllers=[OrderController], providers=[Pool, DbSession, OrderRepository])
class OrderModule:
    pass


@pytest.fixture
async def served() -> AsyncIterator[tuple[Pool, httpx.AsyncClient]]:
    app = create_app(OrderModule)
    pool = app.plan.container.get(Pool)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield pool, client


async def test_one_instance_per_request_released_after_the_response(
    served: tuple[Pool, httpx.AsyncClient],
) -> None:
    pool, client = served
    for _ in range(3):
        response = await client.get("/orders")
        assert response.json() == {"orders": ["tea", "cake"], "same": True}
        assert pool.lent == 0
    assert pool.taken == 3
    bad = await client.get("/orders", params={"limit": "many"})
    assert bad.status_code == 400
    assert pool.taken == 3  # a request that does not fit never takes a connection


async def test_a_stream_can_release_its_connection_once_the_headers_are_out(
    served: tuple[Pool, httpx.AsyncClient],
) -> None:
    pool, client = served
    async with open_stream(client, "/live") as stream:
        snapshot = await stream.next_event()
        assert snapshot.data == '["tea","cake"]'
        assert pool.lent == 0  # the stream runs on, without the connection
        other = await client.get("/orders")
        assert other.status_code == 200
    async with open_stream(client, "/live-holding") as stream:
        await stream.next_event()
        assert pool.lent == 1  # held for the stream's life
        refused = await client.get("/orders")
        assert (refused.status_code, refused.json()["message"]) == (503, "the pool is exhausted")
    # The client left: the held connection is given back, through an async __aexit__.
    await wait_until(lambda: pool.lent == 0)
    assert pool.taken == 3


async def test_a_request_cancelled_in_its_handler_releases_what_it_took() -> None:
    # Cancelled from outside (a server shutting down, a client gone on a server that cancels)
    # while the handler runs, after its session was taken: the session still goes back.
    app = create_app(OrderModule)
    pool = app.plan.container.get(Pool)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/slow",
        "raw_path": b"/slow",
        "query_string": b"",
        "headers": [],
        "root_path": "",
    }

    async def receive() -> dict[str, object]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: object) -> None:
        raise AssertionError(f"nothing is sent: {message!r}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, scope, receive, send)
        await wait_until(lambda: pool.lent == 1)
        nursery.cancel_scope.cancel()
    assert (pool.taken, pool.lent) == (1, 0)


def test_wiring_mistakes_fail_at_create_app() -> None:
    @Injectable()
    class Report:  # app-wide, but needs a per-request session
        def __init__(self, session: DbSession) -> None:
            self.session = session

    @Module(controllers=[OrderController], providers=[Pool, DbSession, OrderRepository, Report])
    class Wrong:
        pass

    with pytest.raises(ConfigurationError, match=r"DbSession lives per request"):
        create_app(Wrong)

    @Module(controllers=[OrderController], providers=[Pool, OrderRepository])
    class Missing:
        pass

    with pytest.raises(ConfigurationError, match="injects DbSession, which no module provides"):
        create_app(Missing)
    with pytest.raises(TypeError, match="'response' or 'headers'"):
        Inject(release="later")  # type: ignore[arg-type]
