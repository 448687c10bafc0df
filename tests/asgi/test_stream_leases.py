"""A stream's access ends when its guard said (expiry) or when the app says (logout), and no
owner or address takes more than its share of streams (429 with ``Retry-After``).

Issue 19, item 5. Everything runs on a real server with httpx clients.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
import pytest
import trio

from tests.helpers import open_stream, wait_until
from trio_dwex import (
    Controller,
    ExecutionContext,
    Get,
    Injectable,
    Module,
    Post,
    Query,
    Req,
    Request,
    Settings,
    Sse,
    SseEvent,
    StreamLease,
    UnauthorizedException,
    UseGuards,
    create_app,
)
from trio_dwex.lowlevel import CloseReason, StreamTracker
from trio_dwex.testing import serve_app

#: Logged-in users by token; a token's expiry (Unix seconds) or None.
SESSIONS: dict[str, tuple[str, float | None]] = {}
#: Streams whose generator ran its ``finally``, by user.
CLEANED: list[str] = []


@Injectable()
class TokenGuard:
    """Lets in a known token and writes the stream's lease: its owner and its expiry."""

    def can_activate(self, context: ExecutionContext) -> bool:
        token = dict(context.request.query_params).get("token", "")
        if token not in SESSIONS:
            raise UnauthorizedException("log in first")
        user, expires = SESSIONS[token]
        context.lease.owner = user
        context.lease.labels["token"] = token
        if expires is not None:
            context.lease.expire_at(expires)
        return True


async def greet_forever() -> AsyncIterator[SseEvent]:
    yield SseEvent(data="from a plain route")
    await trio.sleep_forever()


@Controller()
@UseGuards(TokenGuard)
class FeedController:
    def __init__(self, streams: StreamTracker) -> None:
        self.streams = streams

    @Sse("feed")
    async def feed(self, token: Annotated[str, Query()]) -> AsyncIterator[SseEvent]:
        user = SESSIONS[token][0]
        try:
            await trio.sleep(0.02)  # a handler that awaits: requests overlap while starting
            for n in range(10**6):
                yield SseEvent(data=f"{user}-{n}")
                await trio.sleep(0.05)
        finally:
            CLEANED.append(user)

    @Get("plain-feed")
    def plain_feed(self, token: Annotated[str, Query()]) -> AsyncIterator[SseEvent]:
        return greet_forever()  # a plain route may answer with a stream too

    @Post("logout")
    def logout(self, request: Annotated[Request, Req()]) -> dict[str, int]:
        user = request.lease.owner  # the guard's word for who this is
        for token, (owner, _) in list(SESSIONS.items()):
            if owner == user:
                del SESSIONS[token]
        return {"closed": self.streams.close_where(lambda lease: lease.owner == user)}


@Module(controllers=[FeedController], providers=[TokenGuard])
class FeedModule:
    pass


@pytest.fixture(autouse=True)
def _sessions() -> None:
    SESSIONS.clear()
    CLEANED.clear()


def client_for(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=60))


async def test_a_stream_ends_when_its_lease_expires_and_is_told_to_come_back() -> None:
    app = create_app(FeedModule)
    SESSIONS["t-ada"] = ("ada", time.time() + 0.6)
    SESSIONS["t-bob"] = ("bob", None)
    async with serve_app(app) as url, client_for(url) as client:
        async with (
            open_stream(client, "/feed?token=t-ada") as ada,
            open_stream(client, "/feed?token=t-bob") as bob,
        ):
            assert (await ada.next_event()).data == "ada-0"
            opened = time.time()
            rest = await ada.rest()  # the server ends it
            assert 0.3 < time.time() - opened < 2.0
            assert rest.endswith(b"\n\n")
            assert rest.rsplit(b"\n\n", 2)[-2].startswith(b"retry: ")  # the last thing sent
            # The other user's stream goes on.
            assert len(await bob.events(3)) == 3
    assert app.stats()["closed"]["expired"] == 1
    assert "ada" in CLEANED  # its cleanup ran


async def test_an_expired_lease_refuses_nothing_but_ends_at_once() -> None:
    app = create_app(FeedModule)
    SESSIONS["t-old"] = ("ada", time.time() - 5)
    async with serve_app(app) as url, client_for(url) as client:
        response = await client.get("/feed?token=t-old")
    assert response.status_code == 200
    assert b"data: ada" not in response.content  # not one event past its expiry
    assert app.stats()["closed"]["expired"] == 1


def test_the_earlier_expiry_wins_and_times_must_be_unambiguous() -> None:
    lease = StreamLease("ada")
    later = datetime.now(UTC) + timedelta(hours=1)
    lease.expire_at(later)
    lease.expire_at(time.time() + 60)
    lease.expire_at(later + timedelta(hours=1))  # later: ignored, a lease never grows
    left = lease.seconds_left()
    assert left is not None
    assert 55 < left <= 60
    with pytest.raises(ValueError, match="aware datetime"):
        lease.expire_at(datetime(2030, 1, 1))  # naive on purpose
    for bad in (float("nan"), float("inf"), "3600", True):
        with pytest.raises(ValueError, match="Unix seconds"):
            lease.expire_at(bad)  # type: ignore[arg-type]


async def test_logout_closes_that_users_streams_and_only_those() -> None:
    app = create_app(FeedModule)
    SESSIONS.update({"t-ada": ("ada", None), "t-ada2": ("ada", None), "t-bob": ("bob", None)})
    async with serve_app(app) as url, client_for(url) as client:
        async with (
            open_stream(client, "/feed?token=t-ada") as first,
            open_stream(client, "/feed?token=t-ada2") as second,
            open_stream(client, "/feed?token=t-bob") as bob,
        ):
            for stream in (first, second, bob):
                await stream.next_event()
            answer = await client.post("/logout?token=t-ada")
            assert answer.json() == {"closed": 2}
            for stream in (first, second):
                assert b"retry: " in await stream.rest()
            assert len(await bob.events(3)) == 3  # bob's stream goes on
            # The browser comes back after the retry: the guard refuses it now.
            assert (await client.get("/feed?token=t-ada")).status_code == 401
        await wait_until(lambda: app.stats()["open"] == 0)
    assert app.stats()["closed"]["revoked"] == 2
    assert sorted(CLEANED) == ["ada", "ada", "bob"]


async def test_close_where_matches_labels_and_skips_streams_without_a_lease() -> None:
    app = create_app(FeedModule)
    SESSIONS.update({"t-1": ("ada", None), "t-2": ("ada", None)})
    async with serve_app(app) as url, client_for(url) as client:
        async with (
            open_stream(client, "/feed?token=t-1") as one,
            open_stream(client, "/feed?token=t-2") as two,
        ):
            await one.next_event()
            await two.next_event()
            # One session of the user signs out: only its stream goes.
            assert app.streams.close_where(lambda lease: lease.labels["token"] == "t-1") == 1
            await one.rest()
            assert len(await two.events(2)) == 2
            assert app.streams.close_where(lambda lease: False) == 0


async def test_a_per_owner_cap_answers_429_with_retry_after() -> None:
    app = create_app(FeedModule, settings=Settings(max_streams_per_owner=2, retry_after=7))
    SESSIONS.update({"t-ada": ("ada", None), "t-bob": ("bob", None)})
    async with serve_app(app) as url, client_for(url) as client:
        async with open_stream(client, "/feed?token=t-ada") as first:
            await first.next_event()
            async with open_stream(client, "/feed?token=t-ada") as second:
                await second.next_event()
                refused = await client.get("/feed?token=t-ada")
                assert refused.status_code == 429
                assert refused.headers["retry-after"] == "7"
                assert "max_streams_per_owner=2" in refused.json()["message"]
                assert "ada" not in refused.text  # the owner is not echoed
                # Another owner is not affected, nor a plain route's stream of another owner.
                async with open_stream(client, "/feed?token=t-bob") as bob:
                    assert (await bob.next_event()).data == "bob-0"
                late = await client.get("/plain-feed?token=t-ada")
                assert late.status_code == 429
        # Both closed: ada has her share back.
        await wait_until(lambda: app.streams.open_for(owner="ada") == 0)
        async with open_stream(client, "/feed?token=t-ada") as again:
            assert (await again.next_event()).data == "ada-0"


async def test_a_burst_of_one_owners_requests_gets_exactly_its_cap() -> None:
    cap, burst = 3, 20
    app = create_app(FeedModule, settings=Settings(max_streams_per_owner=cap))
    SESSIONS["t-ada"] = ("ada", None)
    statuses: list[int] = []
    async with serve_app(app) as url, client_for(url) as client:
        hold = trio.Event()

        async def one() -> None:
            async with client.stream("GET", "/feed?token=t-ada") as response:
                statuses.append(response.status_code)
                if response.status_code == 200:
                    await hold.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(burst):
                nursery.start_soon(one)
            await wait_until(lambda: len(statuses) == burst)
            hold.set()
    assert sorted(statuses) == [200] * cap + [429] * (burst - cap)


async def test_a_per_client_cap_counts_the_address() -> None:
    app = create_app(FeedModule, settings=Settings(max_streams_per_client=1))
    SESSIONS.update({"t-ada": ("ada", None), "t-bob": ("bob", None)})
    async with serve_app(app) as url, client_for(url) as client:
        async with open_stream(client, "/feed?token=t-ada") as ada:
            await ada.next_event()
            refused = await client.get("/feed?token=t-bob")  # another user, same address
            assert refused.status_code == 429
            assert "max_streams_per_client=1" in refused.json()["message"]
            assert app.streams.open_for(client="127.0.0.1") == 1


def test_the_caps_are_checked_settings() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="max_streams_per_owner"):
            Settings(max_streams_per_owner=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_streams_per_client"):
            Settings(max_streams_per_client=bad)  # type: ignore[arg-type]


def test_the_tracker_needs_an_owner_or_a_client_to_count() -> None:
    with pytest.raises(TypeError, match="owner or a client"):
        StreamTracker().open_for()
    assert CloseReason("expired") is CloseReason.EXPIRED
