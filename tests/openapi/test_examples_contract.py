"""Every example's contract holds, as the guide's does (``test_guide_contract.py``): the chat
(OpenAI's API), the MCP server and the order board.

For each: its OpenAPI document is valid 3.2; every stream route declares its events;
schemathesis finds nothing wrong with the operations that do not stream (no server error,
every status and body as documented, the handlers' own errors included, and no request the
document calls valid refused: the board's bounds are `Constraint`\\ s, so the document has
them); and a real stream's events fit its ``itemSchema`` (the chat's mixes JSON chunks with
the text ``[DONE]``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV32SpecValidator

from examples import board, chat, mcp_server
from tests.helpers import open_stream, read_all_events
from tests.openapi.contract import ItemChecker, fuzz, plain_operations
from trio_dwex import DwexApp
from trio_dwex.testing import serve_app

CHAT_KEY = {"Authorization": "Bearer sk-contract"}


def chat_app() -> DwexApp:
    return chat.build_app(chat.ChatConfig(api_key="sk-contract", token_delay=0.0))


def mcp_app() -> DwexApp:
    return mcp_server.build_app(mcp_server.McpConfig(step_delay=0.0, retry_ms=10))


def board_app() -> DwexApp:
    return board.build_app(board.BoardConfig(secret=b"contract"))


APPS = {"chat": chat_app, "mcp": mcp_app, "board": board_app}
#: Headers schemathesis sends: the chat's guard wants its key (a wrong one is a 401 in
#: OpenAI's shape, which the document also describes).
HEADERS = {"chat": CHAT_KEY, "mcp": {}, "board": {}}
#: The plain operations of each: the fuzzing must reach them all.
PLAIN = {
    "chat": {"GET /", "GET /v1/models", "GET /v1/runs/{run_id}", "POST /v1/runs/{run_id}/cancel"},
    "mcp": {"DELETE /mcp"},
    "board": {"GET /", "POST /login", "POST /logout", "POST /orders", "GET /healthz"},
}


def document_of(app: DwexApp) -> dict[str, Any]:
    assert app.openapi is not None
    return app.openapi


@pytest.mark.parametrize("name", APPS)
def test_the_document_is_valid_and_every_stream_declares_its_events(name: str) -> None:
    document = document_of(APPS[name]())
    validate(document, cls=OpenAPIV32SpecValidator)
    streams = 0
    for path, item in document["paths"].items():
        for operation in item.values():
            content = operation["responses"].get("200", {}).get("content", {})
            if "text/event-stream" in content:
                streams += 1
                assert "oneOf" in content["text/event-stream"]["itemSchema"], path
    assert streams > 0


@pytest.mark.parametrize("name", APPS)
async def test_schemathesis_finds_nothing_wrong(name: str) -> None:
    app = APPS[name]()
    document = document_of(app)
    reached = {f"{op.method.upper()} {op.path}" for op in plain_operations(document)}
    assert reached == PLAIN[name]
    with trio.fail_after(240):
        async with serve_app(app) as url:
            failures = await trio.to_thread.run_sync(fuzz, document, url, HEADERS[name])
    assert not failures, "\n\n".join(failures)


async def test_the_chat_stream_fits_its_item_schema() -> None:
    app = chat_app()
    checker = ItemChecker(document_of(app), "/v1/chat/completions", "post")
    body = {
        "model": "echo",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "three little words"}],
    }
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        events = await read_all_events(
            client, "/v1/chat/completions", method="POST", json=body, headers=CHAT_KEY
        )
    for event in events:
        checker.check(event)
    assert events[-1].data == "[DONE]"
    assert len(events) >= 6  # role, three words, stop, usage, [DONE]


async def test_a_runs_events_fit_their_item_schema_cancelled_or_not() -> None:
    app = chat_app()
    checker = ItemChecker(document_of(app), "/v1/runs/{run_id}/events")
    long = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "w " * 500}]}
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=long, headers=CHAT_KEY
        ) as answer:
            run_id = answer.headers["x-run-id"]
        cancelled = await client.post(f"/v1/runs/{run_id}/cancel", headers=CHAT_KEY)
        assert cancelled.json()["status"] == "cancelled"
        events = await read_all_events(client, f"/v1/runs/{run_id}/events", headers=CHAT_KEY)
    for event in events:
        checker.check(event)
    assert "error" in json.loads(events[-1].data)  # the cancel, in OpenAI's shape


async def test_the_mcp_streams_fit_their_item_schemas() -> None:
    app = mcp_app()
    post = ItemChecker(document_of(app), "/mcp", "post")
    get = ItemChecker(document_of(app), "/mcp", "get")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}},
    }
    accept = {"Accept": "application/json, text/event-stream"}
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url + "/mcp") as client:
        started = await client.post("", json=initialize, headers=accept)
        headers = {**accept, "Mcp-Session-Id": started.headers["mcp-session-id"]}
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "countdown", "arguments": {"n": 3}, "_meta": {"progressToken": 7}},
        }
        async with open_stream(client, "", headers=headers) as standalone:
            events = await read_all_events(client, "", method="POST", json=call, headers=headers)
            logged = [await standalone.next_event() for _ in range(2)]  # priming, then a log
    for event in events:
        post.check(event)
    for event in logged:
        get.check(event)
    assert [event.data == "" for event in events] == [True, False, False, False, False]


async def test_the_board_stream_fits_its_item_schema() -> None:
    app = board_app()
    checker = ItemChecker(document_of(app), "/orders/stream")
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        await client.post("/orders", json={"item": "tea", "quantity": 1, "price": 2.5})
        async with open_stream(client, "/orders/stream") as stream:
            first = await stream.next_event()
        async with open_stream(client, "/orders/stream", headers={"Last-Event-ID": "x"}) as stream:
            reset = await stream.next_event()
    checker.check(first)
    checker.check(reset)
    assert (first.type, reset.type) == ("order", "reset")
