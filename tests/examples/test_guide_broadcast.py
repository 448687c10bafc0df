"""The guide app with its activity example on the broadcast hub on Redis, as two workers."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import httpx
import trio

from examples import guide
from tests.broadcast.conftest import RedisServer
from tests.helpers import open_stream
from trio_dwex.testing._server import serve_app


async def test_guide_activity_on_redis_reaches_a_client_of_another_instance(
    redis_server: RedisServer,
) -> None:
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):  # two instances on two ports, sharing one redis-server
            url = await stack.enter_async_context(serve_app(guide.make_app(redis_server.url)))
            clients.append(
                await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
            )
        poster, listener = clients
        posted: list[str] = []
        async with open_stream(listener, "/activity/stream") as stream:
            with trio.fail_after(10):
                # The stream subscribes as it starts: post until the listener has one.
                while True:
                    response = await poster.post(
                        "/activity", json={"userId": "u1", "activity": "login"}
                    )
                    assert response.status_code in (200, 201), response.text
                    posted.append(response.json()["id"])
                    with trio.move_on_after(0.3):
                        event = await stream.next_event()
                        break
    assert event.type == "activity"
    assert event.id is not None
    assert json.loads(event.data)["activity"] == "login"
    assert json.loads(event.data)["userId"] == "u1"
    # The hub's id, as the instance that published it answered: one stream for both.
    assert event.id in posted


def test_the_guide_uses_the_in_process_emitter_unless_told() -> None:
    assert guide.BROADCAST is None
    assert guide.app.plan.container.get(guide.ActivityService).listener_count == 0
