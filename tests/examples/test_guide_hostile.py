"""The guide app under the attacks of issue 18 that concern the app itself, on a real server.

- its per-user notification feeds are read, and written, only with the right credentials
  (finding 3: ``?userId=user-1`` once streamed user-1's private feed to anyone, and an
  anonymous POST put text into it);
- a lone surrogate (``"\\ud800"``, valid JSON) in a body is delivered, not fatal: it once ended
  the token holder's stream with an ERROR traceback, and made ``POST /activity`` a 500
  (finding 4); and a value that cannot be sent fails in the request that sent it, not in
  another user's stream;
- the activity example builds one event per activity, however many streams listen (finding 2).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

from examples import guide
from tests.helpers import LiveStream, open_stream, wait_until
from trio_dwex import SseEvent
from trio_dwex.testing._server import serve_app
from trio_dwex.wire._decoder import MessageEvent

USER_1 = {"Authorization": "Bearer secret-token"}
ADMIN = {"Authorization": "Bearer admin-token"}
JSON = {"content-type": "application/json"}
PHISH = "Log in again at https://evil.example"


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


async def next_of_type(stream: LiveStream, kind: str, seconds: float = 5) -> MessageEvent:
    """The stream's next event of type ``kind`` (the guide's demo notifications interleave)."""
    with trio.fail_after(seconds):
        while True:
            event = await stream.next_event()
            if event.type == kind and not (
                kind == "notification" and event.json()["title"] == "Demo"
            ):
                return event


async def connected(stream: LiveStream) -> None:
    """Wait for the stream's ``connected`` event: the feed is subscribed by then."""
    assert stream.response.status_code == 200, stream.response
    await next_of_type(stream, "connected")


# -- finding 3: a user's feed is theirs --------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic c2VjcmV0LXRva2Vu"}, 401),
        (ADMIN, 403),  # someone else's valid credentials, an admin's included
    ],
)
async def test_a_users_feed_is_not_readable_without_their_credentials(
    client: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    service = guide.app.plan.container.get(guide.NotificationService)
    opened = guide.app.stats()["opened"]
    async with client.stream(
        "GET", "/notifications/stream?userId=user-1", headers=headers
    ) as response:
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert json.loads(await response.aread())["statusCode"] == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert service.subscriber_count("user-1") == 0
    assert guide.app.stats()["opened"] == opened  # refused before any stream opened


async def test_a_user_reads_their_own_feed_by_either_route(client: httpx.AsyncClient) -> None:
    for url in ("/notifications/stream?userId=user-1", "/private/notifications"):
        async with open_stream(client, url, headers=USER_1) as stream:
            await connected(stream)
            sent = await client.post(
                "/notifications",
                json={"userId": "user-1", "title": "Mine", "body": url},
                headers=USER_1,
            )
            assert sent.json() == {"delivered": 1}
            event = await next_of_type(stream, "notification")
            assert event.json()["body"] == url


async def test_posting_to_another_users_feed_needs_authorization(
    client: httpx.AsyncClient,
) -> None:
    phish = {"userId": "user-1", "title": "Security notice", "body": PHISH}
    async with open_stream(client, "/private/notifications", headers=USER_1) as stream:
        await connected(stream)
        anonymous = await client.post("/notifications", json=phish)
        assert anonymous.status_code == 401
        assert anonymous.json()["statusCode"] == 401
        # user-1 is no admin: their own feed only.
        to_admin = {"userId": "admin", "title": "Hi", "body": "from user-1"}
        forbidden = await client.post("/notifications", json=to_admin, headers=USER_1)
        assert forbidden.status_code == 403
        assert forbidden.json()["message"] == "only an admin may notify another user"
        # An admin may notify anyone.
        from_admin = {"userId": "user-1", "title": "Maintenance", "body": "at noon"}
        allowed = await client.post("/notifications", json=from_admin, headers=ADMIN)
        assert allowed.json() == {"delivered": 1}
        event = await next_of_type(stream, "notification")
    # What reached the feed is the admin's notification, and only that.
    assert event.json()["body"] == "at noon"
    assert PHISH.encode() not in stream.raw


# -- finding 4: a lone surrogate is delivered, and a producer's error stays its own -----------


async def test_a_lone_surrogate_in_a_notification_is_delivered_and_ends_nothing(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # The escape as a client sends it: json.loads accepts it and makes a lone surrogate.
    body = b'{"userId": "user-1", "title": "\\ud800", "body": "lone \\udfff surrogate"}'
    async with open_stream(client, "/private/notifications", headers=USER_1) as stream:
        await connected(stream)
        sent = await client.post("/notifications", content=body, headers={**USER_1, **JSON})
        assert sent.status_code == 200, sent.text
        assert sent.json() == {"delivered": 1}
        event = await next_of_type(stream, "notification")
        # Escaped in the JSON, so JSON.parse gives back exactly the string that was posted.
        assert b'"title":"\\ud800"' in stream.raw
        assert event.json()["title"] == "\ud800"
        assert event.json()["body"] == "lone \udfff surrogate"
        # The stream lives on.
        after = {"userId": "user-1", "title": "After", "body": "still here"}
        await client.post("/notifications", json=after, headers=USER_1)
        assert (await next_of_type(stream, "notification")).json()["title"] == "After"
    no_errors_logged(caplog)


async def test_a_notification_that_cannot_be_sent_fails_in_its_sender_not_in_the_feed(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    service = guide.app.plan.container.get(guide.NotificationService)
    async with open_stream(client, "/private/notifications", headers=USER_1) as stream:
        await connected(stream)
        # A producer with a value JSON cannot carry: its own call fails...
        with pytest.raises(ValueError, match="cannot be serialized"):
            service.notify("user-1", "Broken", object())  # type: ignore[arg-type]
        # ... and the reader's stream never saw it: the next notification arrives as usual.
        after = {"userId": "user-1", "title": "After", "body": "still here"}
        await client.post("/notifications", json=after, headers=USER_1)
        assert (await next_of_type(stream, "notification")).json()["title"] == "After"
    no_errors_logged(caplog)


async def post_to_listeners(
    client: httpx.AsyncClient, listeners: int, post: Callable[[], Any], ready: Callable[[], bool]
) -> tuple[Any, list[MessageEvent]]:
    """Open ``listeners`` activity streams, call ``post`` once ``ready()``, and collect the
    first event of each stream."""
    got: list[MessageEvent] = []
    result: list[Any] = []

    async def listen(task_status: trio.TaskStatus[None]) -> None:
        async with open_stream(client, "/activity/stream") as stream:
            assert stream.response.status_code == 200
            task_status.started()
            with trio.fail_after(5):
                got.append(await stream.next_event())

    async with trio.open_nursery() as nursery:
        for _ in range(listeners):
            await nursery.start(listen)
        await wait_until(ready)
        result.append(await post())
    return result[0], got


async def test_a_lone_surrogate_in_an_activity_is_delivered_not_a_500(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    service = guide.app.plan.container.get(guide.ActivityService)
    body = b'{"userId": "\\ud800", "activity": "login"}'

    async def post() -> httpx.Response:
        return await client.post("/activity", content=body, headers=JSON)

    response, events = await post_to_listeners(client, 2, post, lambda: service.listener_count == 2)
    assert response.status_code == 200, response.text
    assert response.json() == {"delivered": 2}
    assert [event.json()["userId"] for event in events] == ["\ud800", "\ud800"]
    no_errors_logged(caplog)


async def test_a_lone_surrogate_in_an_activity_on_the_hub_is_delivered_not_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    body = b'{"userId": "\\ud800", "activity": "login"}'
    async with (
        serve_app(guide.make_app("memory://")) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        open_stream(client, "/activity/stream") as stream,
    ):
        assert stream.response.status_code == 200
        with trio.fail_after(5):
            # The hub's stream subscribes as it starts: post until the listener has one.
            while True:
                response = await client.post("/activity", content=body, headers=JSON)
                assert response.status_code in (200, 201), response.text
                with trio.move_on_after(0.2):
                    event = await stream.next_event()
                    break
    assert event.json()["userId"] == "\ud800"
    no_errors_logged(caplog)


# -- finding 2: one event per activity, shared by every listener -------------------------------


async def test_an_activity_is_built_into_one_event_for_every_listener(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = guide.app.plan.container.get(guide.ActivityService)
    built: list[SseEvent] = []

    def counting(*args: Any, **kwargs: Any) -> SseEvent:
        event = SseEvent(*args, **kwargs)
        built.append(event)
        return event

    async def post() -> httpx.Response:
        monkeypatch.setattr(guide, "SseEvent", counting)
        try:
            return await client.post("/activity", json={"userId": "u1", "activity": "login"})
        finally:
            monkeypatch.setattr(guide, "SseEvent", SseEvent)

    response, events = await post_to_listeners(client, 3, post, lambda: service.listener_count == 3)
    assert response.json() == {"delivered": 3}
    assert [event.json()["activity"] for event in events] == ["login"] * 3
    assert len(built) == 1, built
