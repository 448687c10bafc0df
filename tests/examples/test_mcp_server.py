"""``examples/mcp_server.py``, driven by the official ``mcp`` client and by raw HTTP.

The SDK's client (``mcp.Client(url)``, unchanged, on Trio through anyio) checks that the
server speaks the protocol: the version it negotiates, the tools, a tool call with progress,
a tool error, log messages on the ``GET`` stream, the session ended with ``DELETE`` when the
client leaves, and resumption when the server closes a response stream mid-call. Raw httpx
checks each rule of the transport one by one: sessions, ``Accept``, ``Origin``, event ids and
``Last-Event-ID``, cancellation, bad input.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import mcp
import pytest
import trio
from mcp.shared.exceptions import MCPError

from examples import mcp_server
from tests.helpers import open_stream, read_all_events, wait_until
from trio_dwex import DwexApp, Settings
from trio_dwex.testing import serve_app
from trio_dwex.wire._decoder import SseDecoder

ACCEPT_BOTH = {"Accept": "application/json, text/event-stream"}


def make_app(**config: Any) -> DwexApp:
    settings = Settings(max_body_size=config.pop("max_body_size", 1_000_000))
    return mcp_server.build_app(
        mcp_server.McpConfig(**{"step_delay": 0.01, "retry_ms": 20, **config}), settings=settings
    )


def server_of(app: DwexApp) -> mcp_server.McpServer:
    return app.plan.container.get(mcp_server.McpServer)


@pytest.fixture
async def served() -> AsyncIterator[tuple[DwexApp, str]]:
    app = make_app()
    async with serve_app(app) as url:
        yield app, url + "/mcp"


def rpc(method: str, request_id: int | str | None = 1, **params: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


INITIALIZE = rpc(
    "initialize",
    protocolVersion="2025-11-25",
    capabilities={},
    clientInfo={"name": "raw", "version": "0"},
)


async def initialize(client: httpx.AsyncClient, url: str) -> dict[str, str]:
    """A new session; the headers that its later requests carry."""
    response = await client.post(url, json=INITIALIZE, headers=ACCEPT_BOTH)
    assert response.status_code == 200
    assert response.json()["result"]["protocolVersion"] == "2025-11-25"
    return {**ACCEPT_BOTH, "Mcp-Session-Id": response.headers["mcp-session-id"]}


def messages_of(events: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in events if event.data]


# -- the official client -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_official_client_initializes_lists_and_calls_tools(
    served: tuple[DwexApp, str], mode: str
) -> None:
    app, url = served
    reported: list[tuple[float, float | None, str | None]] = []
    logged: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append((progress, total, message))

    async def on_log(params: mcp.types.LoggingMessageNotificationParams) -> None:
        logged.append(str(params.data))

    async with mcp.Client(url, mode=mode, logging_callback=on_log) as client:
        # "auto" first probes for the sessionless 2026 protocol; told the versions this
        # server speaks, it falls back to initialize, as "legacy" does at once.
        assert client.session.initialize_result is not None
        assert client.session.initialize_result.protocol_version == "2025-11-25"
        assert server_of(app).stats.sessions_opened == 1
        tools = await client.list_tools()
        assert {tool.name: tool.input_schema["required"] for tool in tools.tools} == {
            "add": ["a", "b"],
            "countdown": ["n"],
        }
        added = await client.call_tool("add", {"a": 2, "b": 0.5})
        assert not added.is_error
        assert [block.text for block in added.content] == ["2.5"]  # type: ignore[union-attr]

        counted = await client.call_tool("countdown", {"n": 5}, progress_callback=on_progress)
        assert [block.text for block in counted.content] == ["counted down from 5"]  # type: ignore[union-attr]
        assert reported == [(step, 5, f"{5 - step} to go") for step in range(1, 6)]

        for bad in ({"a": "two", "b": 1}, {"a": 1}, {"a": True, "b": 1}):
            refused = await client.call_tool("add", bad)
            assert refused.is_error  # a tool error the model can read, not a crash
        refused = await client.call_tool("countdown", {"n": -1})
        assert refused.is_error
        assert "from 0 to 1000" in refused.content[0].text  # type: ignore[union-attr]
        with pytest.raises(MCPError, match="unknown tool 'subtract'"):
            await client.call_tool("subtract", {"a": 1, "b": 2})

        # Log messages come on the session's GET stream, opened by the client on its own.
        await wait_until(lambda: len(logged) >= 6)
        assert logged[:2] == ["add answered: 2.5", "countdown answered: counted down from 5"]
        assert server_of(app).sessions
    # Leaving the client sends DELETE: the session is gone at once.
    assert not server_of(app).sessions
    assert server_of(app).stats.calls_cancelled == 0


async def test_twenty_clients_at_once(served: tuple[DwexApp, str]) -> None:
    app, url = served
    results: dict[int, list[float]] = {}

    async def one(number: int) -> None:
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        async with mcp.Client(url) as client:
            await client.call_tool("countdown", {"n": 10}, progress_callback=on_progress)
            results[number] = seen

    async with trio.open_nursery() as nursery:
        for number in range(20):
            nursery.start_soon(one, number)
    assert results == {number: [float(step) for step in range(1, 11)] for number in range(20)}
    assert server_of(app).stats.sessions_opened == 20
    assert not server_of(app).sessions


async def test_the_client_resumes_when_the_server_closes_the_stream() -> None:
    # Every response stream is closed after 0.1 s, while a countdown takes ~0.6 s: the client
    # must come back with Last-Event-ID, several times, and miss nothing.
    app = make_app(step_delay=0.03, stream_window=0.1)
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with serve_app(app) as url, mcp.Client(url + "/mcp") as client:
        result = await client.call_tool("countdown", {"n": 20}, progress_callback=on_progress)
        assert [block.text for block in result.content] == ["counted down from 20"]  # type: ignore[union-attr]
        assert seen == [float(step) for step in range(1, 21)]  # no gap, no duplicate
        assert server_of(app).stats.resumed >= 2
        assert server_of(app).stats.calls_cancelled == 0


# -- the transport, rule by rule -----------------------------------------------------------------


async def test_sessions_are_required_ended_by_delete_and_then_unknown(
    served: tuple[DwexApp, str],
) -> None:
    app, url = served
    async with httpx.AsyncClient(timeout=10) as client:
        without = await client.post(url, json=rpc("tools/list"), headers=ACCEPT_BOTH)
        assert without.status_code == 400
        assert without.json()["error"]["message"].startswith(
            "the Mcp-Session-Id header is required"
        )
        assert without.json()["id"] is None

        headers = await initialize(client, url)
        listed = await client.post(url, json=rpc("tools/list", 2), headers=headers)
        assert listed.status_code == 200
        assert listed.json()["id"] == 2
        assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["add", "countdown"]
        pong = await client.post(url, json=rpc("ping", "p"), headers=headers)
        assert pong.json() == {"jsonrpc": "2.0", "id": "p", "result": {}}
        unknown = await client.post(url, json=rpc("resources/list", 3), headers=headers)
        assert unknown.status_code == 200
        assert unknown.json()["error"]["code"] == mcp_server.METHOD_NOT_FOUND
        noted = await client.post(url, json=rpc("notifications/initialized", None), headers=headers)
        assert noted.status_code == 202
        assert noted.content == b""

        ended = await client.delete(url, headers=headers)
        assert ended.status_code == 204
        assert not server_of(app).sessions
        for method, body in (("POST", rpc("ping")), ("GET", None), ("DELETE", None)):
            gone = await client.request(method, url, json=body, headers=headers)
            assert gone.status_code == 404, method
            assert "initialize anew" in gone.json()["error"]["message"]


async def test_versions_accept_and_origin_are_checked(served: tuple[DwexApp, str]) -> None:
    _, url = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await initialize(client, url)
        newer = {**headers, "MCP-Protocol-Version": "2026-07-28"}
        refused = await client.post(url, json=rpc("ping"), headers=newer)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == mcp_server.UNSUPPORTED_PROTOCOL_VERSION
        assert refused.json()["error"]["data"]["supported"] == list(mcp_server.PROTOCOL_VERSIONS)
        older = {**headers, "MCP-Protocol-Version": "2025-03-26"}
        assert (await client.post(url, json=rpc("ping"), headers=older)).status_code == 200

        for accept in ("text/html", "application/xml, image/*"):
            wrong = await client.post(url, json=rpc("ping"), headers={**headers, "Accept": accept})
            assert wrong.status_code == 406
        html = await client.get(url, headers={**headers, "Accept": "text/html"})
        assert html.status_code == 406

        for origin in ("http://evil.example", "http://localhost.evil.example", "null"):
            foreign = await client.post(
                url, json=rpc("ping"), headers={**headers, "Origin": origin}
            )
            assert foreign.status_code == 403, origin
            assert (
                foreign.json()["error"]["message"]
                == f"requests from origin {origin!r} are not allowed"
            )
        for origin in ("http://localhost:3000", "http://127.0.0.1", "http://[::1]:8080"):
            local = await client.post(url, json=rpc("ping"), headers={**headers, "Origin": origin})
            assert local.status_code == 200, origin


async def test_an_allowed_origin_can_be_configured() -> None:
    app = make_app(allowed_origins=frozenset({"https://app.example"}))
    async with serve_app(app) as base, httpx.AsyncClient(timeout=10) as client:
        url = base + "/mcp"
        response = await client.post(
            url, json=INITIALIZE, headers={**ACCEPT_BOTH, "Origin": "https://app.example"}
        )
        assert response.status_code == 200
        other = {**ACCEPT_BOTH, "Origin": "https://app.example.evil"}
        assert (await client.post(url, json=INITIALIZE, headers=other)).status_code == 403


async def test_bad_messages_are_json_rpc_errors(served: tuple[DwexApp, str]) -> None:
    app, url = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {**await initialize(client, url), "Content-Type": "application/json"}
        cases = [
            (b"{not json", mcp_server.PARSE_ERROR),
            (b"\xff\xfe", mcp_server.PARSE_ERROR),
            (b"[]", mcp_server.INVALID_REQUEST),  # batches are not supported
            (json.dumps({"jsonrpc": "1.0", "method": "ping", "id": 1}).encode(), -32600),
            (json.dumps({"jsonrpc": "2.0", "id": 1}).encode(), -32600),
            (json.dumps({"jsonrpc": "2.0", "method": "ping", "id": True}).encode(), -32600),
            (json.dumps({"jsonrpc": "2.0", "method": "ping", "params": [1]}).encode(), -32600),
        ]
        for body, code in cases:
            response = await client.post(url, content=body, headers=headers)
            assert response.status_code == 400, body
            assert response.json()["error"]["code"] == code, body
        bad_level = await client.post(
            url, json=rpc("logging/setLevel", level="loud"), headers=headers
        )
        assert bad_level.json()["error"]["code"] == mcp_server.INVALID_PARAMS
        args = rpc("tools/call", name="add", arguments=[1, 2])
        not_object = await client.post(
            url, json=args, headers={**headers, "Accept": "application/json"}
        )
        assert not_object.json()["error"]["code"] == mcp_server.INVALID_PARAMS
        # The framework's own refusals get the same shape.
        large = await client.post(url, content=b" " * 1_000_001, headers=headers)
        assert large.status_code == 413
        assert large.json()["error"]["code"] == mcp_server.INVALID_REQUEST
    assert server_of(app).sessions  # the session outlived every bad message


async def test_a_call_is_answered_with_json_when_the_client_accepts_only_json(
    served: tuple[DwexApp, str],
) -> None:
    _, url = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {**await initialize(client, url), "Accept": "application/json"}
        call = rpc(
            "tools/call", 7, name="countdown", arguments={"n": 3}, _meta={"progressToken": 1}
        )
        response = await client.post(url, json=call, headers=headers)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {
                "content": [{"type": "text", "text": "counted down from 3"}],
                "isError": False,
            },
        }


async def test_event_ids_resume_a_stream_without_gap_or_duplicate(
    served: tuple[DwexApp, str],
) -> None:
    app, url = served
    call = rpc("tools/call", 9, name="countdown", arguments={"n": 6}, _meta={"progressToken": "t"})
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await initialize(client, url)
        async with open_stream(client, url, method="POST", json=call, headers=headers) as stream:
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            priming, first, second = await stream.events(3)
        # The client left after two progress notifications; the call goes on without it.
        assert (priming.data, priming.id, priming.retry) == ("", "1-0", 20)
        assert [json.loads(e.data)["params"]["progress"] for e in (first, second)] == [1, 2]
        assert (first.id, second.id) == ("1-1", "1-2")

        resume = {**headers, "Last-Event-ID": second.id}
        rest = messages_of(await read_all_events(client, url, headers=resume))
        assert [m["params"]["progress"] for m in rest[:-1]] == [3, 4, 5, 6]
        assert rest[-1]["result"]["content"][0]["text"] == "counted down from 6"
        assert rest[-1]["id"] == 9

        # Once read to its end, the stream is over; an id of no stream is not found.
        for last_event_id in ("1-7", "1-2x", "42-1", "nonsense"):
            gone = await client.get(url, headers={**headers, "Last-Event-ID": last_event_id})
            assert gone.status_code == 404, last_event_id
        again = await client.get(url, headers={**headers, "Last-Event-ID": "1-5"})
        assert messages_of(SseDecoder().feed(again.content))[-1]["id"] == 9
    assert server_of(app).stats.resumed == 2


async def test_the_get_stream_is_one_per_session_and_carries_log_messages(
    served: tuple[DwexApp, str],
) -> None:
    _, url = served
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await initialize(client, url)
        async with open_stream(client, url, headers=headers) as stream:
            priming = await stream.next_event()
            assert priming.id == "0-0"
            second = await client.get(url, headers=headers)
            assert second.status_code == 409
            add = rpc("tools/call", 2, name="add", arguments={"a": 1, "b": 2})
            await client.post(url, json=add, headers={**headers, "Accept": "application/json"})
            logged = await stream.next_event()
            assert logged.id == "0-1"
            assert json.loads(logged.data)["params"] == {
                "level": "info",
                "logger": "tools",
                "data": "add answered: 3",
            }
            quiet = rpc("logging/setLevel", 3, level="warning")
            assert (await client.post(url, json=quiet, headers=headers)).json()["result"] == {}
        # Closed, it can be opened again; and resumed from its last id.
        add = rpc("tools/call", 4, name="add", arguments={"a": 1, "b": "x"})
        await client.post(url, json=add, headers={**headers, "Accept": "application/json"})
        with trio.fail_after(5):
            async with open_stream(
                client, url, headers={**headers, "Last-Event-ID": "0-0"}
            ) as stream:
                replayed = await stream.events(2)
        assert [e.id for e in replayed] == ["0-0", "0-1"]  # priming, then the one kept message


async def test_cancelling_a_call_stops_it(served: tuple[DwexApp, str]) -> None:
    app, url = served
    server = server_of(app)
    call = rpc("tools/call", 5, name="countdown", arguments={"n": 1000}, _meta={"progressToken": 1})
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await initialize(client, url)
        async with open_stream(client, url, method="POST", json=call, headers=headers) as stream:
            await stream.events(3)
            cancel = rpc("notifications/cancelled", None, requestId=5, reason="enough")
            assert (await client.post(url, json=cancel, headers=headers)).status_code == 202
            await stream.rest()  # the stream ends, without an answer
        assert server.stats.calls_cancelled == 1
        session = next(iter(server.sessions.values()))
        assert not session.running

        # Ending the session stops its calls too.
        async with open_stream(client, url, method="POST", json=call, headers=headers) as stream:
            await stream.events(2)
            assert (await client.delete(url, headers=headers)).status_code == 204
            await stream.rest()
        assert server.stats.calls_cancelled == 2


async def test_idle_sessions_end_and_sessions_are_capped() -> None:
    app = make_app(session_idle_timeout=0.1, max_sessions=2)
    async with serve_app(app) as base, httpx.AsyncClient(timeout=10) as client:
        url = base + "/mcp"
        first = await initialize(client, url)
        await initialize(client, url)
        full = await client.post(url, json=INITIALIZE, headers=ACCEPT_BOTH)
        assert full.status_code == 503
        assert full.json()["error"]["message"] == "too many sessions; try again later"
        await wait_until(lambda: not server_of(app).sessions, seconds=5)
        assert (await client.post(url, json=rpc("ping"), headers=first)).status_code == 404
        await initialize(client, url)  # room again


def test_config_is_checked() -> None:
    bad: dict[str, Any]
    for bad in ({"step_delay": -1}, {"stream_window": 0}, {"retry_ms": 0}, {"max_sessions": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            mcp_server.McpConfig(**bad)
    config = mcp_server.McpConfig.from_env({"MCP_STEP_DELAY": "0", "MCP_STREAM_WINDOW": "2.5"})
    assert (config.step_delay, config.stream_window) == (0.0, 2.5)
    with pytest.raises(ValueError, match="MCP_STEP_DELAY must be seconds"):
        mcp_server.McpConfig.from_env({"MCP_STEP_DELAY": "soon"})
