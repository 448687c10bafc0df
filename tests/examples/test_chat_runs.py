"""``examples/chat.py``: an answer outlives its connection (issue 17, item 3).

Two servers share one real redis-server, as two workers do: each is a whole app with its own
`Runs` and hub, and the only thing they share is Redis. A client that drops mid-answer on one
reattaches on the other with ``Last-Event-ID`` and gets the rest exactly once; a cancel sent to
one stops the model on the other (its words are counted); an answer nobody comes back for
finishes, then expires. The last test runs ``trio-dwex run --workers 2`` itself. The browser's
reload is in tests/clients/test_chromium_chat.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import httpx
import openai
import pytest
import trio
from openai.types.chat import ChatCompletionChunk

from examples import chat
from tests.broadcast.conftest import RedisServer
from tests.helpers import wait_until
from tests.serving.test_serve import free_port, running
from trio_dwex import DwexApp
from trio_dwex.testing import serve_app
from trio_dwex.wire._decoder import MessageEvent, SseDecoder

KEY = "sk-runs"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = " ".join(f"word{n}" for n in range(40))


def make_app(runs_url: str = "memory://", **config: Any) -> DwexApp:
    settings = {"api_key": KEY, "token_delay": 0.01, "runs_url": runs_url, **config}
    return chat.build_app(chat.ChatConfig(**settings))


def model_of(app: DwexApp) -> chat.EchoModel:
    return app.plan.container.get(chat.EchoModel)


def ask(prompt: str = PROMPT) -> dict[str, Any]:
    return {"model": "echo", "stream": True, "messages": [{"role": "user", "content": prompt}]}


def text_of(events: list[MessageEvent]) -> str:
    """The answer the chunks spell, each chunk's content once."""
    return "".join(
        json.loads(event.data)["choices"][0]["delta"].get("content", "")
        for event in events
        if event.data != "[DONE]" and json.loads(event.data)["choices"]
    )


async def collect(stream: openai.AsyncStream[ChatCompletionChunk], into: list[Any]) -> None:
    async for chunk in stream:
        into.append(chunk)


async def settled(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """A run's status once it is no longer running (within 5 s)."""
    with trio.fail_after(5):
        while True:
            status: dict[str, Any] = (await client.get(url, headers=AUTH)).json()
            if status["status"] != "running":
                return status
            await trio.sleep(0.01)


class Reader:
    """A response's events, read a few at a time, then to the end."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_raw()
        self._decoder = SseDecoder()
        self._ready: list[MessageEvent] = []

    async def take(self, count: int) -> list[MessageEvent]:
        while len(self._ready) < count:
            self._ready.extend(self._decoder.feed(await anext(self._chunks)))
        taken, self._ready = self._ready[:count], self._ready[count:]
        return taken

    async def rest(self) -> list[MessageEvent]:
        async for chunk in self._chunks:
            self._ready.extend(self._decoder.feed(chunk))
        rest, self._ready = self._ready, []
        return rest


async def test_a_client_that_drops_mid_answer_gets_the_rest_from_another_server_exactly_once(
    redis_server: RedisServer,
) -> None:
    first, second = make_app(redis_server.url), make_app(redis_server.url)
    async with (
        serve_app(first) as first_url,
        serve_app(second) as second_url,
        httpx.AsyncClient(timeout=10) as client,
    ):
        async with client.stream(
            "POST", first_url + "/v1/chat/completions", json=ask(), headers=AUTH
        ) as response:
            run_id = response.headers["x-run-id"]
            before = await Reader(response).take(8)  # then the connection drops
        assert model_of(first).stats.active == 1  # the answer goes on without its client
        last_id = before[-1].id
        again = await client.get(
            f"{second_url}/v1/runs/{run_id}/events", headers={**AUTH, "Last-Event-ID": last_id}
        )
        assert again.status_code == 200
        assert again.headers["x-run-id"] == run_id
        after = SseDecoder().feed(again.content)
        # The run's status follows its last event by one write to Redis: wait for it.
        status = await settled(client, f"{second_url}/v1/runs/{run_id}")
    ids = [event.id for event in before + after]
    assert len(set(ids)) == len(ids)  # no duplicate
    assert text_of(before + after) == PROMPT  # no gap: every word once, in order
    assert after[-1].data == "[DONE]"
    assert status == {"id": run_id, "status": "completed", "error": None}
    assert model_of(first).stats.finished == 1
    assert model_of(second).stats.words == 0  # the other server only read it


async def test_a_cancel_sent_to_one_server_stops_the_model_on_the_other(
    redis_server: RedisServer,
) -> None:
    first, second = make_app(redis_server.url), make_app(redis_server.url)
    model = model_of(first)
    long = " ".join(["w"] * 5000)
    async with (
        serve_app(first) as first_url,
        serve_app(second) as second_url,
        httpx.AsyncClient(timeout=10) as client,
    ):
        async with client.stream(
            "POST", first_url + "/v1/chat/completions", json=ask(long), headers=AUTH
        ) as response:
            run_id = response.headers["x-run-id"]
            reader = Reader(response)
            await reader.take(5)
            cancelled = await client.post(f"{second_url}/v1/runs/{run_id}/cancel", headers=AUTH)
            rest = await reader.rest()  # the reader on the first server ends too
        assert cancelled.json() == {"id": run_id, "status": "cancelled", "error": "cancelled"}
        words = model.stats.words
        await trio.sleep(0.2)
        assert model.stats.words == words  # not one more token
        assert (model.stats.stopped, model.stats.active) == (1, 0)  # its finally ran
        error = json.loads(rest[-1].data)["error"]
        assert error["message"] == "the answer was cancelled: cancelled"
        # The official client, reading the cancelled run again, raises that error.
        async with openai.AsyncOpenAI(
            base_url=second_url + "/v1", api_key=KEY, max_retries=0
        ) as sdk:
            stream = await sdk.get(
                f"/runs/{run_id}/events",
                cast_to=ChatCompletionChunk,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            chunks: list[ChatCompletionChunk] = []
            with pytest.raises(openai.APIError, match="the answer was cancelled: cancelled"):
                await collect(stream, chunks)
            assert len(chunks) == len(rest) + 5 - 1  # every chunk, then the error


async def test_an_answer_nobody_comes_back_for_finishes_then_expires() -> None:
    app = make_app(keep_answers=0.5, max_answer_seconds=1.0)
    model = model_of(app)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=ask("a few words only"), headers=AUTH
        ) as response:
            run_id = response.headers["x-run-id"]
            await Reader(response).take(1)  # and the owner never comes back
        await wait_until(lambda: model.stats.finished == 1)
        # The run's end is written just after the model's.
        assert (await settled(client, f"/v1/runs/{run_id}"))["status"] == "completed"
        replay = await client.get(f"/v1/runs/{run_id}/events", headers=AUTH)
        assert text_of(SseDecoder().feed(replay.content)) == "a few words only"
        # Kept for keep_answers at least, and gone once its events aged out (the retention
        # is max_answer_seconds + keep_answers: 1.5 s here).
        await trio.sleep(1.6)
        gone = await client.get(f"/v1/runs/{run_id}/events", headers=AUTH)
        status = await client.get(f"/v1/runs/{run_id}", headers=AUTH)
    assert (gone.status_code, status.status_code) == (410, 410)
    assert gone.json()["error"]["message"] == "this run has expired: its events are no longer kept"


async def test_bad_run_ids_and_last_event_ids_are_4xx_in_openais_shape() -> None:
    app = make_app()
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=ask("two words"), headers=AUTH
        ) as response:
            run_id = response.headers["x-run-id"]
        fresh = f"run_{int(time.time() * 1000):011x}{'0' * 24}"
        cases = {
            f"/v1/runs/{fresh}/events": (404, {}),
            "/v1/runs/not-a-run/events": (400, {}),
            f"/v1/runs/{run_id}/events": (400, {"Last-Event-ID": "nope"}),
            f"/v1/runs/{fresh}": (404, {}),
        }
        for path, (status, headers) in cases.items():
            answer = await client.get(path, headers={**AUTH, **headers})
            assert answer.status_code == status, (path, answer.text)
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
        refused = await client.get(f"/v1/runs/{run_id}/events")  # no key: the guard first
        assert refused.status_code == 401


async def test_an_answer_tied_to_its_connection_is_no_run() -> None:
    app = make_app()
    body = {**ask("tied"), "stream_options": {"resumable": False}}
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        bad = await client.post(
            "/v1/chat/completions",
            json={**ask("x"), "stream_options": {"resumable": "no"}},
            headers=AUTH,
        )
    assert "x-run-id" not in response.headers
    assert "id:" not in response.text
    assert response.text.endswith("data: [DONE]\n\n")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "stream_options"


def test_two_workers_on_redis_resume_each_others_answers(redis_server: RedisServer) -> None:
    port = free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "examples.chat:app"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    os.environ["CHAT_RUNS"] = redis_server.url
    os.environ["CHAT_API_KEY"] = KEY
    try:
        with running(command, port) as process:
            base = f"http://127.0.0.1:{port}"
            close = {**AUTH, "connection": "close"}  # each request may land on either worker
            for _ in range(6):
                with httpx.stream(
                    "POST", base + "/v1/chat/completions", json=ask(), headers=close, timeout=10
                ) as response:
                    run_id = response.headers["x-run-id"]
                    decoder = SseDecoder()
                    before: list[MessageEvent] = []
                    for chunk in response.iter_raw():
                        before.extend(decoder.feed(chunk))
                        if len(before) >= 5:
                            break
                again = httpx.get(
                    f"{base}/v1/runs/{run_id}/events",
                    headers={**close, "Last-Event-ID": before[-1].id},
                    timeout=10,
                )
                after = SseDecoder().feed(again.content)
                assert text_of(before + after) == PROMPT
                assert len({event.id for event in before + after}) == len(before + after)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
        assert process.returncode == 0
    finally:
        del os.environ["CHAT_RUNS"], os.environ["CHAT_API_KEY"]
