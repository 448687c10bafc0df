"""``examples/chat.py``, driven by the official ``openai`` package on a real server.

The clients are the SDK's own, unchanged, with ``base_url`` at our server: the sync client (in
a worker thread) and the async one (on Trio, which it supports through anyio). What is checked:
the chunks of a streamed answer (one per word at least, deltas that join to exactly the
prompt, ``finish_reason`` on the last, ``data: [DONE]`` at the end), the one-piece answer,
20 streams at once, the API key (a 401 in OpenAI's shape before any stream), a client that
leaves mid-answer of an answer tied to its connection (the model's ``finally`` runs: its stats
say it stopped), a client that stops reading one (dropped at ``send_timeout`` while the model
waits on a full buffer), and bad input. tests/examples/test_chat_runs.py checks answers that
outlive their connection (the default).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from examples import chat
from tests.clients.tools import free_port, require_binary
from tests.helpers import wait_until
from trio_dwex import DwexApp, Settings, StreamSettings
from trio_dwex.testing import open_stalled_stream, serve_app
from trio_dwex.wire._decoder import SseDecoder

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: A prompt whose words are separated every way: the deltas must give it back exactly.
PROMPT = "  Hello,  world!\nSecond line\ttabbed — ünïcödé 🙂 end.  "
#: Concurrent streams in the load test.
CONCURRENT = 20


def messages(prompt: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": "You echo."},
        {"role": "user", "content": "an earlier message"},
        {"role": "assistant", "content": "an earlier message"},
        {"role": "user", "content": prompt},
    ]


def model_of(app: DwexApp) -> chat.EchoModel:
    """The app's model instance, whose stats tell what the generation did."""
    return app.plan.container.get(chat.EchoModel)


def make_app(token_delay: float = 0.001, **settings: Any) -> DwexApp:
    return chat.build_app(
        chat.ChatConfig(api_key=KEY, token_delay=token_delay), settings=Settings(**settings)
    )


@pytest.fixture
async def served() -> AsyncIterator[tuple[DwexApp, str]]:
    app = make_app()
    async with serve_app(app) as url:
        yield app, url


def check_chunks(chunks: list[ChatCompletionChunk], prompt: str) -> None:
    """What every streamed answer must be, as the SDK parsed it."""
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1  # one answer, one id
    assert len({chunk.created for chunk in chunks}) == 1
    assert all(chunk.model == "echo" for chunk in chunks)
    choices = [chunk.choices[0] for chunk in chunks]
    assert choices[0].delta.role == "assistant"
    assert "".join(choice.delta.content or "" for choice in choices) == prompt
    contents = [choice.delta.content for choice in choices if choice.delta.content]
    assert len(contents) >= len(prompt.split())  # at least one chunk per word
    assert [choice.finish_reason for choice in choices] == [None] * (len(choices) - 1) + ["stop"]


# -- the sync client ---------------------------------------------------------------------------


def sync_session(url: str) -> dict[str, Any]:
    """Everything the sync client does, in a worker thread."""
    with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="echo", messages=messages(PROMPT), stream=True
        )
        with stream:
            chunks = list(stream)
        completion = client.chat.completions.create(model="echo", messages=messages(PROMPT))
        explicit = client.chat.completions.create(
            model="echo", messages=messages("no stream"), stream=False
        )
        with client.chat.completions.create(
            model="echo",
            messages=messages("two words"),
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            with_usage = list(stream)
        models = [model.id for model in client.models.list()]
    return {
        "chunks": chunks,
        "completion": completion,
        "explicit": explicit,
        "with_usage": with_usage,
        "models": models,
    }


async def test_the_sync_client_streams_and_completes(served: tuple[DwexApp, str]) -> None:
    app, url = served
    with trio.fail_after(30):
        seen = await trio.to_thread.run_sync(sync_session, url)
    check_chunks(seen["chunks"], PROMPT)

    completion = seen["completion"]
    assert completion.object == "chat.completion"
    assert completion.model == "echo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == PROMPT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(chat.words_of(PROMPT))
    assert seen["explicit"].choices[0].message.content == "no stream"

    with_usage = seen["with_usage"]
    check_chunks(with_usage[:-1], "two words")
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 2
    assert seen["models"] == ["echo"]
    # Three streams; the one-piece answers and the model list opened none.
    assert app.stats()["opened"] == 2
    assert app.stats()["closed"]["completed"] == 2


async def test_the_stream_ends_with_done_on_the_wire(served: tuple[DwexApp, str]) -> None:
    _, url = served
    body = {"model": "echo", "stream": True, "messages": messages("a b")}
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-run-id"].startswith("run_")  # an answer is a run
    assert response.content.endswith(b"\ndata: [DONE]\n\n")
    events = SseDecoder().feed(response.content)
    assert [event.type for event in events] == ["message"] * len(events)
    assert len({event.id for event in events}) == len(events)  # each its own id, to resume from
    assert [json.loads(e.data)["choices"][0]["delta"] for e in events[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "a "},
        {"content": "b"},
        {},
    ]


# -- the async client, 20 at once --------------------------------------------------------------


async def test_the_async_client_runs_twenty_streams_at_once() -> None:
    app = make_app(token_delay=0.005)
    model = model_of(app)
    first_chunks = 0
    all_started = trio.Event()
    results: dict[int, list[ChatCompletionChunk]] = {}

    async def one(client: openai.AsyncOpenAI, n: int) -> None:
        nonlocal first_chunks
        prompt = f"stream {n} says " + " ".join(f"w{n}.{i}" for i in range(10))
        stream = await client.chat.completions.create(
            model="echo", messages=messages(prompt), stream=True
        )
        async with stream:
            chunks = [await anext(aiter(stream))]
            first_chunks += 1
            if first_chunks == CONCURRENT:
                all_started.set()
            await all_started.wait()  # every stream is open before any reads on
            chunks += [chunk async for chunk in stream]
        check_chunks(chunks, prompt)
        results[n] = chunks

    async with serve_app(app) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        async with client, trio.open_nursery() as nursery:
            for n in range(CONCURRENT):
                nursery.start_soon(one, client, n)
            with trio.fail_after(30):
                await all_started.wait()
            assert app.stats()["open"] == CONCURRENT
        await wait_until(lambda: app.stats()["open"] == 0)
    assert sorted(results) == list(range(CONCURRENT))
    assert app.stats()["closed"]["completed"] == CONCURRENT
    assert model.stats.finished == CONCURRENT
    assert model.stats.active == 0


# -- the API key -------------------------------------------------------------------------------


async def test_a_wrong_or_missing_key_is_a_401_in_openais_shape_before_any_stream(
    served: tuple[DwexApp, str],
) -> None:
    app, url = served
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="sk-wrong", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="echo", messages=messages("x"), stream=True)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"

    body = {"model": "echo", "stream": True, "messages": messages("x")}
    async with httpx.AsyncClient(base_url=url) as client:
        for headers in ({"Authorization": "Bearer sk-wrong"}, {}, {"Authorization": KEY}):
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error"
            assert error["code"] == "invalid_api_key"
            assert "sk-wrong" not in response.text
    assert app.stats()["opened"] == 0
    assert model_of(app).stats.words == 0


# -- clients that leave, clients that stall ------------------------------------------------------


LONG_PROMPT = " ".join(f"word{n}" for n in range(200))
#: What asks for an answer tied to its connection, rather than a run (the default).
TIED: dict[str, Any] = {"stream_options": {"resumable": False}}


async def test_an_async_client_that_leaves_mid_answer_stops_the_model() -> None:
    app = make_app(token_delay=0.01)
    model = model_of(app)
    async with serve_app(app) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="echo", messages=messages(LONG_PROMPT), stream=True, extra_body=TIED
            )
            chunks = aiter(stream)
            for _ in range(5):
                await anext(chunks)
            assert model.stats.active == 1
            await stream.close()  # the client leaves mid-answer
            await wait_until(lambda: model.stats.active == 0)
    assert model.stats.stopped == 1  # the model's finally ran, early
    assert model.stats.finished == 0
    assert model.stats.words < 100
    assert app.stats()["closed"]["client_gone"] == 1


def leave_after(url: str, count: int) -> int:
    """The sync client reads ``count`` chunks and closes the stream; in a worker thread."""
    with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="echo", messages=messages(LONG_PROMPT), stream=True, extra_body=TIED
        )
        with stream:
            read = 0
            for _ in stream:
                read += 1
                if read == count:
                    break
    return read


async def test_a_sync_client_that_leaves_mid_answer_stops_the_model() -> None:
    app = make_app(token_delay=0.01)
    model = model_of(app)
    async with serve_app(app) as url:
        with trio.fail_after(30):
            assert await trio.to_thread.run_sync(leave_after, url, 3) == 3
        await wait_until(lambda: model.stats.active == 0)
    assert (model.stats.stopped, model.stats.finished) == (1, 0)
    assert app.stats()["closed"]["client_gone"] == 1


#: Words in the stalled test's prompt: their chunks, some 150 bytes each, are several times what
#: the kernel's socket buffers can hold, so a client that stops reading blocks the server.
STALLED_WORDS = 60_000
#: The stalled test's send timeout, in seconds.
STALL_TIMEOUT = 0.5


async def test_a_client_that_stops_reading_is_dropped_at_send_timeout() -> None:
    app = make_app(
        token_delay=0,
        streams=StreamSettings(send_timeout=STALL_TIMEOUT, keepalive=None),
        max_body_size=1024 * 1024,
    )
    model = model_of(app)
    prompt = " ".join(["word"] * STALLED_WORDS)
    body = json.dumps(
        {"model": "echo", "stream": True, "messages": messages(prompt), **TIED}
    ).encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    async with serve_app(app) as url:
        with trio.fail_after(20):
            async with open_stalled_stream(
                url + "/v1/chat/completions", method="POST", body=body, headers=headers
            ) as stream:
                assert stream.status == 200
                stalled = trio.current_time()
                await wait_until(lambda: app.stats()["open"] == 0, 15)
                dropped_after = trio.current_time() - stalled
            await wait_until(lambda: model.stats.active == 0)
    # Dropped once it had accepted nothing for send_timeout, not before: by the stream's
    # writer (slow_client) or, at the same deadline, by the server's (the connection is
    # closed, so the stream sees the client gone). Either way the model stopped.
    closed = app.stats()["closed"]
    assert closed["slow_client"] + closed["client_gone"] == 1, closed
    assert dropped_after >= STALL_TIMEOUT
    assert model.stats.stopped == 1
    # Bounded memory: the model waited on the stream's full buffer instead of generating the
    # whole reply into it; it got as far as the socket buffers and the stream's buffer allow
    # (a few hundred words here, of the 60 000).
    assert 100 < model.stats.words < STALLED_WORDS / 10, model.stats.words


# -- bad input -----------------------------------------------------------------------------------


BAD_INPUT: dict[str, tuple[dict[str, Any], int, str | None, str]] = {
    "malformed JSON": (
        {"content": b'{"model": "echo", ', "headers": {"Content-Type": "application/json"}},
        400,
        None,
        "not valid JSON",
    ),
    "not an object": ({"json": ["echo"]}, 400, None, "must be an object"),
    "no messages": ({"json": {"model": "echo", "stream": True}}, 400, "messages", "messages"),
    "a message without a role": (
        {"json": {"model": "echo", "stream": True, "messages": [{"content": "x"}]}},
        400,
        "messages[0]",
        "role",
    ),
    "stream not a bool": (
        {"json": {"model": "echo", "stream": "yes", "messages": messages("x")}},
        400,
        "stream",
        "'stream' must be true or false",
    ),
    "too large": (
        {"json": {"model": "echo", "stream": True, "messages": messages("x" * 5000)}},
        413,
        None,
        "larger than 4096 bytes",
    ),
    "sent as a form": (
        {
            "content": b'{"model": "echo", "stream": true}',
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        415,
        None,
        "Content-Type: application/json",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
async def test_bad_input_is_a_4xx_in_openais_shape_before_any_stream(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    arguments, status, param, fragment = BAD_INPUT[case]
    app = make_app(max_body_size=4096)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        headers = {**AUTH, **arguments.pop("headers", {})}
        response = await client.post("/v1/chat/completions", headers=headers, **arguments)
        assert response.status_code == status
        error = response.json()["error"]
        assert error["param"] == param
        assert fragment in error["message"]
        assert app.stats()["opened"] == 0
        # The server is unaffected.
        body = {"model": "echo", "stream": True, "messages": messages("still here")}
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.content.endswith(b"data: [DONE]\n\n")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_the_sdk_reports_a_bad_request_as_its_error(served: tuple[DwexApp, str]) -> None:
    _, url = served
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="echo", messages=messages("x"), stream=True, n=2
            )
    assert info.value.status_code == 400
    assert info.value.param == "n"


# -- configuration -----------------------------------------------------------------------------


def test_the_config_comes_from_the_environment() -> None:
    assert chat.ChatConfig.from_env({}) == chat.ChatConfig("sk-test", 0.02)
    config = chat.ChatConfig.from_env({"CHAT_API_KEY": "sk-x", "CHAT_TOKEN_DELAY": "0.5"})
    assert config == chat.ChatConfig("sk-x", 0.5)
    with pytest.raises(ValueError, match="CHAT_TOKEN_DELAY must be seconds"):
        chat.ChatConfig.from_env({"CHAT_TOKEN_DELAY": "soon"})
    for delay in ("-1", "nan"):
        with pytest.raises(ValueError, match="token delay"):
            chat.ChatConfig.from_env({"CHAT_TOKEN_DELAY": delay})


def trio_dwex_command() -> str:
    """The ``trio-dwex`` script of this environment (next to its Python), or the one on PATH."""
    beside = Path(sys.executable).with_name("trio-dwex")
    return str(beside) if beside.is_file() else require_binary("trio-dwex")


@contextmanager
def cli_server(app: str, environment: dict[str, str], log: Path) -> Iterator[str]:
    """``trio-dwex run <app>`` on a free port with ``environment``; its URL. Stopped by PID."""
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [trio_dwex_command(), "run", app, "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env={**os.environ, **environment},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, f"the server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"the server never listened: {log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0, f"the server exited with {code}: {log.read_text()}"


def ask_the_cli_server(url: str, key: str) -> str:
    with openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as client:
        with client.chat.completions.create(
            model="echo", messages=messages("from the command line"), stream=True
        ) as stream:
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream)


async def test_the_command_line_serves_the_module_app_with_its_key(tmp_path: Path) -> None:
    environment = {"CHAT_API_KEY": "sk-from-env", "CHAT_TOKEN_DELAY": "0"}
    with cli_server("examples.chat:app", environment, tmp_path / "server.log") as url:
        reply = await trio.to_thread.run_sync(ask_the_cli_server, url, "sk-from-env")
        assert reply == "from the command line"
        with pytest.raises(openai.AuthenticationError):
            await trio.to_thread.run_sync(partial(ask_the_cli_server, url, KEY))
