"""The guide's contract holds: its document is valid OpenAPI 3.2, schemathesis finds nothing
wrong with its plain operations, and every stream's real events fit its ``itemSchema``.

Schemathesis runs in a worker thread (it is synchronous, and the server runs in this test's
Trio loop), with a fixed seed and a bounded number of examples per operation and mode, so a
run is quick and the same every time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import jsonschema  # type: ignore[import-untyped]
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV32SpecValidator
from schemathesis import GenerationMode

from tests.helpers import open_stream, wait_until
from trio_dwex.testing._server import serve_app

os.environ.setdefault("GUIDE_TICK", "0.01")

from examples import guide

#: Examples schemathesis tries per operation, in each of its two modes (valid and invalid
#: input): enough to cross every field and kind of mistake, small enough for CI.
EXAMPLES = 40
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


def plain_operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(document())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    return [
        op
        for op in operations
        if "text/event-stream" not in op.definition.raw["responses"]["200"].get("content", {})
    ]


def fuzz(base_url: str) -> list[str]:
    """Run schemathesis against every plain operation; the failures, described."""
    failures: list[str] = []
    for operation in plain_operations():
        raw = operation.definition.raw
        takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
        # An operation that takes nothing (the front page) has no wrong input to try.
        modes = (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if takes_input
            else (GenerationMode.POSITIVE,)
        )
        for mode in modes:

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(base_url=base_url, headers=dict(ADMIN), timeout=10)

            try:
                run()
            except Exception as error:  # one failure per operation and mode is enough to say
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {error}")
    return failures


async def test_schemathesis_finds_nothing_wrong_with_the_plain_operations() -> None:
    assert (
        len(plain_operations()) == 3
    )  # GET / (the front page), POST /activity, POST /notifications
    with trio.fail_after(240):
        async with serve_app(guide.app) as url:
            failures = await trio.to_thread.run_sync(fuzz, url)
    assert not failures, "\n\n".join(failures)


# -- the streams' real events ----------------------------------------------------------------


def item_validators(path: str) -> tuple[Callable[[dict[str, Any]], None], dict[str, Any]]:
    """A check of one parsed event against ``path``'s itemSchema, and its branches by name."""
    doc = document()
    content = doc["paths"][path]["get"]["responses"]["200"]["content"]
    item_schema = content["text/event-stream"]["itemSchema"]
    components = {"components": doc["components"]}
    item_validator = jsonschema.Draft202012Validator({**item_schema, **components})
    branches: dict[str, Any] = {}
    for branch in item_schema["oneOf"]:
        data = branch["properties"]["data"]
        schema = data.get("contentSchema", data)
        branches[branch["title"]] = jsonschema.Draft202012Validator({**schema, **components})

    def check(item: dict[str, Any]) -> None:
        item_validator.validate(item)
        # contentSchema is an annotation to JSON Schema: the data's JSON is checked here.
        branch = branches[item.get("event", "message")]
        is_json = "contentSchema" in branch.schema or branch.schema.get("type") != "string"
        branch.validate(json.loads(item["data"]) if is_json else item["data"])

    return check, branches


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
    check, branches = item_validators(path)
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
                    item: dict[str, Any] = {"data": event.data}
                    if event.type != "message":
                        item["event"] = event.type
                    if event.id:
                        item["id"] = event.id
                    if event.retry is not None:
                        item["retry"] = event.retry
                    check(item)
                    seen.add(event.type)
                    received += 1
    assert received > 0
    assert seen <= set(branches)


async def test_the_activity_stream_sends_what_it_declares() -> None:
    check, _ = item_validators("/activity/stream")
    async with serve_app(guide.app) as base, httpx.AsyncClient(base_url=base) as client:
        with trio.fail_after(10):
            async with open_stream(client, "/activity/stream") as stream:
                await wait_until(lambda: guide.app.stats()["open"] >= 1)
                posted = await client.post("/activity", json={"userId": "u", "activity": "login"})
                assert posted.json() == {"delivered": 1}
                event = await stream.next_event()
    check({"event": event.type, "data": event.data, "id": event.id})
