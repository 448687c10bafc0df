"""The guide's contract holds: its document is valid OpenAPI 3.2, schemathesis finds nothing
wrong with its plain operations, and every stream's real events fit its ``itemSchema``.

Schemathesis runs in a worker thread (it is synchronous, and the server runs in this test's
Trio loop), with a fixed seed and a bounded number of examples per operation and mode, so a
run is quick and the same every time.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import trio
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV32SpecValidator

from tests.helpers import open_stream, wait_until
from tests.openapi.contract import ItemChecker, fuzz, plain_operations
from trio_dwex.testing._server import serve_app

os.environ.setdefault("GUIDE_TICK", "0.01")

from examples import guide

ADMIN = {"Authorization": "Bearer admin-token"}
USER = {"Authorization": "Bearer secret-token"}


def document() -> dict[str, Any]:
    assert guide.app.openapi is not None
    return guide.app.openapi


def test_the_guide_document_is_valid_openapi_3_2() -> None:
    validate(document(), cls=OpenAPIV32SpecValidator)


def test_every_stream_of_the_guide_declares_its_events() -> None:
    for path, item in document()["paths"].items():
        for operation in item.values():
            content = operation["responses"]["200"].get("content", {})
            if "text/event-stream" in content:
                assert "oneOf" in content["text/event-stream"]["itemSchema"], path


async def test_schemathesis_finds_nothing_wrong_with_the_plain_operations() -> None:
    # GET / (the front page), POST /activity, POST /notifications
    assert len(plain_operations(document())) == 3
    with trio.fail_after(240):
        async with serve_app(guide.app) as url:
            failures = await trio.to_thread.run_sync(fuzz, document(), url, ADMIN)
    assert not failures, "\n\n".join(failures)


# -- the streams' real events ----------------------------------------------------------------


STREAMS: list[tuple[str, str, dict[str, str], int]] = [
    # (path in the document, URL, headers, events to read; 0: until the stream ends)
    ("/events/updates", "/events/updates", {}, 0),
    ("/events/time", "/events/time", {}, 0),
    ("/events/countdown", "/events/countdown", {}, 0),
    ("/events/notifications", "/events/notifications", {}, 0),
    ("/events/resumable", "/events/resumable", {}, 5),
    ("/events/data", "/events/data", {}, 0),
    ("/monitoring/metrics", "/monitoring/metrics", {}, 3),
    ("/jobs/progress/{jobId}", "/jobs/progress/job-7", {}, 0),
    ("/notifications/stream", "/notifications/stream?userId=user-1", USER, 2),
    ("/private/notifications", "/private/notifications", USER, 2),
]


@pytest.mark.parametrize(("path", "url", "headers", "count"), STREAMS, ids=[s[1] for s in STREAMS])
async def test_a_stream_sends_only_what_its_item_schema_describes(
    path: str, url: str, headers: dict[str, str], count: int
) -> None:
    checker = ItemChecker(document(), path)
    seen: set[str] = set()
    async with serve_app(guide.app) as base, httpx.AsyncClient(base_url=base) as client:
        with trio.fail_after(10):
            async with open_stream(client, url, headers=headers) as stream:
                received = 0
                while count == 0 or received < count:
                    try:
                        event = await stream.next_event()
                    except StopAsyncIteration:
                        break
                    checker.check(event)
                    seen.add(event.type)
                    received += 1
    assert received > 0
    assert seen <= set(checker.branches)


async def test_the_activity_stream_sends_what_it_declares() -> None:
    checker = ItemChecker(document(), "/activity/stream")
    async with serve_app(guide.app) as base, httpx.AsyncClient(base_url=base) as client:
        with trio.fail_after(10):
            async with open_stream(client, "/activity/stream") as stream:
                await wait_until(lambda: guide.app.stats()["open"] >= 1)
                posted = await client.post("/activity", json={"userId": "u", "activity": "login"})
                assert posted.json() == {"delivered": 1}
                event = await stream.next_event()
    checker.check(event)
