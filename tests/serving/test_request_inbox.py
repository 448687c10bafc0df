"""`RequestInbox`: the messages a request's app has yet to receive, bounded, in order."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tests.helpers import accept_lifespan
from trio_dwex.serving._notice import RequestInbox, RequestNotice
from trio_dwex.testing import serve_app


def body(n: int) -> Any:
    return {"type": "http.request", "body": b"%d" % n, "more_body": True}


async def test_a_full_inbox_holds_the_protocol_back_until_the_app_reads() -> None:
    inbox = RequestInbox(2)
    put: list[int] = []

    async def protocol() -> None:
        for n in range(5):
            await inbox.put(body(n))
            put.append(n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(protocol)
        await trio.testing.wait_all_tasks_blocked()
        assert put == [0, 1]  # the third waits for room
        received = [dict(await inbox.receive())["body"] for _ in range(5)]
    assert received == [b"0", b"1", b"2", b"3", b"4"]
    assert put == [0, 1, 2, 3, 4]


async def test_receive_waits_for_a_message_and_a_cancelled_receive_loses_nothing() -> None:
    inbox = RequestInbox(10)
    with trio.move_on_after(0.01) as timer:
        await inbox.receive()
    assert timer.cancelled_caught
    got: list[Any] = []

    async def app() -> None:
        got.append(await inbox.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await inbox.put(body(7))
    assert got == [body(7)]


async def test_two_apps_tasks_waiting_each_get_one_message() -> None:
    inbox = RequestInbox(10)
    got: list[Any] = []

    async def reader() -> None:
        got.append(dict(await inbox.receive())["body"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await inbox.put(body(1))
        await inbox.put(body(2))
    assert sorted(got) == [b"1", b"2"]


async def test_a_disconnect_fires_the_notice_and_is_still_queued_until_handed_over() -> None:
    notice = RequestNotice()
    inbox = RequestInbox(10, notice)
    await inbox.put({"type": "http.disconnect"})
    assert notice.gone
    assert await inbox.receive() == {"type": "http.disconnect"}


async def test_nothing_is_queued_once_receive_was_handed_over() -> None:
    notice = RequestNotice()
    inbox = RequestInbox(1, notice)
    told: list[str] = []
    notice.hand_over(lambda: told.append("gone"))
    # More than the limit: a handed-over inbox never fills, so the connection never blocks.
    for n in range(3):
        await inbox.put(body(n))
    await inbox.put({"type": "http.disconnect"})
    assert told == ["gone"]
    with trio.move_on_after(0.01) as timer:
        await inbox.receive()
    assert timer.cancelled_caught


async def test_put_and_receive_are_checkpoints_and_a_cancelled_one_changes_nothing() -> None:
    inbox = RequestInbox(10)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await inbox.put(body(0))
    await inbox.put(body(1))
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await inbox.receive()
    assert await inbox.receive() == body(1)  # neither the cancelled put nor receive counted


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_an_upload_larger_than_the_inbox_arrives_whole_to_a_slow_app(http2: bool) -> None:
    """Through the server: 4 MiB in 64 KiB pieces to an app that reads one message per tick,
    so the protocol waits for room in the inbox (10 messages) again and again; over HTTP/1.1
    and over HTTP/2 with prior knowledge, whose streams get an inbox each too."""
    digest = hashlib.sha256()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        while True:
            message = await receive()
            digest.update(message.get("body", b""))
            await trio.sleep(0.001)
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": digest.hexdigest().encode()})

    payload = os.urandom(4 * 1024 * 1024)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30, http1=not http2, http2=http2) as client,
    ):
        response = await client.post("/upload", content=pieces())
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.status_code == 200
    assert response.text == hashlib.sha256(payload).hexdigest()
