"""``merge_window``: unnamed events (an LLM's tokens) share writes, each still whole, in order
and late by at most the window; named events, comments and the end go out at once (issue 15,
item 4). On a real server, counting the server's writes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from tests.helpers import open_stream
from trio_dwex import Controller, Module, Sse, SseEvent, StreamSettings, create_app
from trio_dwex.serving._direct import direct_write_counts
from trio_dwex.testing import serve_app

TOKENS = 30
GAP = 0.005


@Controller()
class TokenController:
    @Sse("merged", merge_window=0.05)
    async def merged(self) -> AsyncIterator[SseEvent]:
        for n in range(TOKENS):
            yield SseEvent(data=f"token {n}")
            await trio.sleep(GAP)

    @Sse("plain")
    async def plain(self) -> AsyncIterator[SseEvent]:
        for n in range(TOKENS):
            yield SseEvent(data=f"token {n}")
            await trio.sleep(GAP)

    @Sse("late", merge_window=0.1)
    async def late(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="first")
        await trio.sleep(0.2)
        yield SseEvent(data="second")  # waits at most the window for company
        await trio.sleep_forever()

    @Sse("named", merge_window=1.0)
    async def named(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="first")
        await trio.sleep(0.2)
        yield SseEvent(data="token")
        yield SseEvent(data={"finish": "stop"}, event="status")  # goes now, with the token
        await trio.sleep_forever()

    @Sse("ends", merge_window=2.0)
    async def ends(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="first")
        await trio.sleep(0.1)
        yield SseEvent(data="last")  # the end sends it at once


@Module(controllers=[TokenController])
class TokenModule:
    pass


def writes() -> int:
    return direct_write_counts.whole + direct_write_counts.partial + direct_write_counts.declined


async def count_writes(client: httpx.AsyncClient, path: str) -> tuple[int, list[str]]:
    before = writes()
    response = await client.get(path)
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return writes() - before, data


async def test_tokens_share_writes_whole_and_in_order() -> None:
    app = create_app(TokenModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        merged, merged_data = await count_writes(client, "/merged")
        plain, plain_data = await count_writes(client, "/plain")
    expected = [f"token {n}" for n in range(TOKENS)]
    assert merged_data == plain_data == expected
    assert plain >= TOKENS * 0.8  # a write per token, or nearly
    assert merged <= TOKENS / 3, (merged, plain)  # 50 ms windows of 5 ms tokens


async def arrivals(client: httpx.AsyncClient, path: str, count: int) -> list[tuple[float, str]]:
    seen: list[tuple[float, str]] = []
    async with open_stream(client, path) as stream:
        while len(seen) < count:
            event = await stream.next_event()
            seen.append((trio.current_time(), event.data))
    return seen


async def test_an_event_waits_at_most_the_window() -> None:
    app = create_app(TokenModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        (first, _), (second, data) = await arrivals(client, "/late", 2)
    assert data == "second"
    assert 0.19 <= second - first <= 0.2 + 0.1 + 0.15  # its gap, at most the window, slack


async def test_a_named_event_flushes_what_waits() -> None:
    app = create_app(TokenModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        seen = await arrivals(client, "/named", 3)
    (first, _), (token, token_data), (status, status_data) = seen
    assert (token_data, status_data) == ("token", '{"finish":"stop"}')
    assert token - first < 0.6  # not the 1 s window
    assert status - token < 0.05  # in the same write


async def test_the_end_of_the_stream_flushes_at_once() -> None:
    app = create_app(TokenModule)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        start = trio.current_time()
        response = await client.get("/ends")
        took = trio.current_time() - start
    assert response.text.count("data: ") == 2
    assert took < 1.0  # not the 2 s window


def test_the_window_is_a_checked_setting() -> None:
    for bad in (0, -1, float("inf"), "0.1"):
        with pytest.raises(ValueError, match="merge_window"):
            StreamSettings(merge_window=bad)  # type: ignore[arg-type]
    assert StreamSettings(merge_window=0.02).merge_window == 0.02
