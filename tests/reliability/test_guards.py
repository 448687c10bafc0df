"""A rejected request on a guarded SSE route never opens a stream, even under concurrency.

The single-request case is in ``tests/asgi/test_app.py``; here 50 clients hit a route whose
async guard sleeps before refusing, all at once, so that the guards overlap each other and
the stream machinery of other requests.
"""

from __future__ import annotations

import trio

from tests.reliability.apps import GUARD_DELAY, Counters, make_app
from tests.reliability.support import Reply, exchange, get, running_server

CONCURRENT = 50


async def test_50_concurrent_rejected_requests_never_see_200_or_an_event_byte() -> None:
    counters = Counters()
    app = make_app(counters)
    replies: list[Reply] = []
    async with running_server(app) as port:

        async def rejected() -> None:
            replies.append(await exchange(port, get("/t/guarded", "Connection: close")))

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENT):
                nursery.start_soon(rejected)
        elapsed = trio.current_time() - started
        allowed = await exchange(port, get("/t/guarded", "X-Allow: yes"), until=b"0\r\n\r\n")

    assert len(replies) == CONCURRENT
    for reply in replies:
        assert reply.status == 403, reply
        assert reply.closed, reply
        assert b"text/event-stream" not in reply.data
        assert b"secret" not in reply.data
        assert b"data:" not in reply.data
    # The guards really overlapped (they sleep concurrently, not one after another).
    assert elapsed < GUARD_DELAY * 10
    # No handler code ran and no stream was opened for a rejected request.
    assert counters.handler_calls == ["guarded"]  # the allowed request only
    assert app.streams.opened == 1
    assert allowed.status == 200, allowed
    assert b"data: secret" in allowed.data, allowed
