"""Event streams on any method, against a real server.

``@Sse(path, method=...)`` streams the answer to a POST, PUT, PATCH or DELETE with a body;
guards, interceptors and parameter conversion run before the headers are sent, so a refusal or
a bad body is a plain HTTP error. A stream returned from a plain route (an `SseStream`, an
async iterable, an `EventSourceResponse` built by hand) is served the same way and counted by
the app. One ``@Sse`` route may answer JSON or a stream, decided per request.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
import trio

from tests.helpers import open_stream, read_all_events, wait_until
from trio_dwex import (
    Body,
    CallNext,
    ConfigurationError,
    Controller,
    Delete,
    DwexApp,
    EventSourceResponse,
    ExecutionContext,
    Get,
    Headers,
    Injectable,
    JSONResponse,
    Module,
    NotFoundException,
    Patch,
    Post,
    Provider,
    Put,
    Req,
    Request,
    Response,
    Settings,
    Sse,
    SseEvent,
    SseStream,
    StreamSettings,
    UseGuards,
    UseInterceptors,
    create_app,
    map_events,
)
from trio_dwex.testing import serve_app

Handler = Callable[..., Any]

KEY = {"Authorization": "Bearer key"}


@dataclasses.dataclass
class Prompt:
    text: str
    repeat: int = 1


class Log:
    """What the handlers did, for the tests to read."""

    def __init__(self) -> None:
        self.calls: list[str] = []


@Injectable()
class KeyGuard:
    def __init__(self, log: Log) -> None:
        self.log = log

    def can_activate(self, context: ExecutionContext) -> bool:
        self.log.calls.append("guard")
        allowed: bool = context.request.headers.get("authorization") == KEY["Authorization"]
        return allowed


@Injectable()
class Brackets:
    """Wraps each event's data in brackets, on a stream; leaves anything else as it is."""

    async def intercept(self, context: ExecutionContext, call_next: CallNext) -> Any:
        result = await call_next()
        if isinstance(result, Response):
            return result

        def bracket(event: SseEvent) -> SseEvent:
            return SseEvent(data=f"[{event.data}]", event=event.event)

        return map_events(result, bracket)


@Controller("any")
class AnyController:
    def __init__(self, log: Log) -> None:
        self.log = log

    @Sse("echo", method="POST")
    @UseGuards(KeyGuard)
    async def echo(self, prompt: Annotated[Prompt, Body()]) -> AsyncIterator[SseEvent]:
        self.log.calls.append("handler")
        try:
            if prompt.text == "missing":
                raise NotFoundException("no such prompt")
            for _ in range(prompt.repeat):
                yield SseEvent(data=prompt.text, event="echo")
                await trio.lowlevel.checkpoint()
        finally:
            self.log.calls.append("echo closed")

    @Sse("put", method="PUT")
    @UseInterceptors(Brackets)
    async def put(self, prompt: Annotated[Prompt, Body()]) -> AsyncIterator[SseEvent]:
        yield SseEvent(data=prompt.text, event="put")

    @Sse("patch", method="patch")
    async def patch(self, prompt: Annotated[Prompt, Body()]) -> AsyncIterator[str]:
        yield prompt.text

    @Sse("delete/:name", method="DELETE")
    async def delete(self, name: Annotated[str, Headers("x-name")]) -> AsyncIterator[str]:
        yield f"deleting {name}"
        yield "deleted"


def make_app(log: Log, controller: type = AnyController, **settings: Any) -> DwexApp:
    @Module(controllers=[controller], providers=[KeyGuard, Brackets, Provider(Log, use_value=log)])
    class AppModule: ...

    return create_app(AppModule, settings=Settings(**settings))


@pytest.fixture
async def served() -> AsyncIterator[tuple[DwexApp, Log, httpx.AsyncClient]]:
    log = Log()
    app = make_app(log)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield app, log, client


async def test_a_post_stream_reads_its_body_behind_its_guard(
    served: tuple[DwexApp, Log, httpx.AsyncClient],
) -> None:
    app, log, client = served
    body = {"text": "hi", "repeat": 3}
    events = await read_all_events(client, "/any/echo", method="POST", json=body, headers=KEY)
    assert [(e.type, e.data) for e in events] == [("echo", "hi")] * 3
    assert log.calls == ["guard", "handler", "echo closed"]

    # Refused by the guard: a JSON 403 and no stream; the handler never ran.
    log.calls.clear()
    response = await client.post("/any/echo", json=body)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert log.calls == ["guard"]

    # The route is POST only, and says so.
    response = await client.get("/any/echo", headers=KEY)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert app.stats()["opened"] == 1


async def test_an_error_before_the_first_event_of_a_post_stream_is_an_http_status(
    served: tuple[DwexApp, Log, httpx.AsyncClient],
) -> None:
    _, _, client = served
    response = await client.post("/any/echo", json={"text": "missing"}, headers=KEY)
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "error": "Not Found", "message": "no such prompt"}


@pytest.mark.parametrize(
    ("method", "path", "arguments", "expected"),
    [
        ("PUT", "/any/put", {"json": {"text": "a"}}, [("put", "[a]")]),
        ("PATCH", "/any/patch", {"json": {"text": "b"}}, [("message", "b")]),
        (
            "DELETE",
            "/any/delete/x",
            {"headers": {"x-name": "x"}},
            [("message", "deleting x"), ("message", "deleted")],
        ),
    ],
)
async def test_every_method_with_a_body_streams(
    served: tuple[DwexApp, Log, httpx.AsyncClient],
    method: str,
    path: str,
    arguments: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    _, _, client = served
    async with open_stream(client, path, method=method, **arguments) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = await stream.events(len(expected))
    assert [(e.type, e.data) for e in events] == expected


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "CONNECT", "FETCH", ""])
def test_sse_refuses_a_method_a_stream_cannot_answer(method: str) -> None:
    with pytest.raises(ConfigurationError, match=r"GET, POST, PUT, PATCH, DELETE"):
        Sse("x", method=method)


@pytest.mark.parametrize(
    ("decorator", "spelling"),
    [
        (Post("chat"), "@Sse('chat', method='POST')"),
        (Put("chat"), "@Sse('chat', method='PUT')"),
        (Patch(""), "@Sse('', method='PATCH')"),
        (Delete("chat"), "@Sse('chat', method='DELETE')"),
        (Get("chat"), "@Sse('chat') "),
    ],
)
def test_an_async_generator_on_a_plain_route_names_the_sse_spelling(
    decorator: Callable[[Handler], Handler], spelling: str
) -> None:
    @Controller("c")
    class Chat:
        @decorator
        async def chat(self) -> AsyncIterator[str]:
            yield "token"

    @Module(controllers=[Chat])
    class AppModule: ...

    with pytest.raises(ConfigurationError) as info:
        create_app(AppModule)
    assert "Chat.chat is an async generator function" in str(info.value)
    assert spelling in str(info.value)


# -- streams returned from plain routes --------------------------------------------------------


@Controller("plain")
class PlainStreams:
    def __init__(self, log: Log) -> None:
        self.log = log

    @Post("stream")
    def sse_stream(self, prompt: Annotated[Prompt, Body()]) -> SseStream:
        stream = SseStream()

        async def produce() -> None:
            await stream.send(SseEvent(data=prompt.text, event="task"))
            stream.close()

        stream.start_soon(produce)
        stream.on_close(lambda: self.log.calls.append("stream on_close"))
        return stream

    @Post("response")
    def response(self) -> EventSourceResponse:
        return EventSourceResponse(self._generate("by hand"))

    @Put("generator")
    def generator(self) -> AsyncIterator[str]:
        return self._generate("a generator")

    @Post("forever")
    def forever(self) -> EventSourceResponse:
        async def events() -> AsyncIterator[str]:
            try:
                yield "first"
                await trio.sleep_forever()
            finally:
                self.log.calls.append("forever closed")

        return EventSourceResponse(events())

    @Sse("own-options", method="POST", keepalive=0.05, headers={"X-Route": "route"})
    def own_options(self) -> EventSourceResponse:
        async def quiet() -> AsyncIterator[str]:
            yield "first"
            await trio.sleep_forever()

        return EventSourceResponse(quiet(), keepalive=60, headers={"X-Own": "own"})

    @Sse("route-options", method="POST", keepalive=0.05)
    def route_options(self) -> EventSourceResponse:
        async def quiet() -> AsyncIterator[str]:
            yield "first"
            await trio.sleep_forever()

        return EventSourceResponse(quiet())

    async def _generate(self, text: str) -> AsyncIterator[str]:
        try:
            self.log.calls.append(f"{text} started")
            yield text
        finally:
            self.log.calls.append(f"{text} closed")


async def test_streams_returned_from_plain_routes_are_served_and_counted() -> None:
    log = Log()
    app = make_app(log, PlainStreams)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        events = await read_all_events(client, "/plain/stream", method="POST", json={"text": "t"})
        assert [(e.type, e.data) for e in events] == [("task", "t")]
        events = await read_all_events(client, "/plain/response", method="POST")
        assert [e.data for e in events] == ["by hand"]
        events = await read_all_events(client, "/plain/generator", method="PUT")
        assert [e.data for e in events] == ["a generator"]
        await wait_until(lambda: app.stats()["open"] == 0)
    assert app.stats()["opened"] == 3
    assert app.stats()["closed"]["closed"] == 1  # the SseStream closed itself
    assert app.stats()["closed"]["completed"] == 2
    assert "stream on_close" in log.calls
    assert log.calls[-4:] == [
        "by hand started",
        "by hand closed",
        "a generator started",
        "a generator closed",
    ]


async def test_a_response_built_by_hand_takes_the_app_settings_and_ends_at_shutdown() -> None:
    log = Log()
    app = make_app(log, PlainStreams, streams=StreamSettings(keepalive=0.05))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with open_stream(client, "/plain/forever", method="POST") as stream:
            assert (await stream.next_event()).data == "first"
            with trio.fail_after(2):  # the app's keep-alive, which the response was not given
                while b": keep-alive" not in stream.raw:
                    await stream.next_chunk()
            assert app.stats()["open"] == 1
            app.close_streams()  # what a shutdown does first
            with trio.fail_after(2):
                await stream.rest()  # a clean end of the response, at once
        await wait_until(lambda: "forever closed" in log.calls)
        assert app.stats()["closed"]["shutdown"] == 1
        app.streams.accept_new()


async def test_a_response_built_by_hand_takes_its_routes_options() -> None:
    app = make_app(Log(), PlainStreams, streams=StreamSettings(keepalive=100))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with open_stream(client, "/plain/route-options", method="POST") as stream:
            assert (await stream.next_event()).data == "first"
            with trio.fail_after(2):  # the route's keep-alive, over the app's
                while b": keep-alive" not in stream.raw:
                    await stream.next_chunk()


async def test_a_server_shutdown_ends_a_hand_built_post_stream_at_once_and_cleanly() -> None:
    log = Log()
    app = make_app(log, PlainStreams)
    reading = trio.Event()
    rest: list[bytes] = []

    async def read(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            async with open_stream(client, "/plain/forever", method="POST") as stream:
                await stream.next_event()
                reading.set()
                rest.append(await stream.rest())  # raises if the server cuts the connection

    with trio.fail_after(8):
        async with trio.open_nursery() as nursery:
            async with serve_app(app, graceful_timeout=30) as url:
                nursery.start_soon(read, url)
                await reading.wait()
                stopping = trio.current_time()
            # Not the graceful timeout: the app ended its stream as the server began to stop.
            assert trio.current_time() - stopping < 5
    # Only the farewell: when to come back (farewell_retry, 3 s by default, half to 1.5 times).
    (farewell,) = rest
    assert farewell.startswith(b"retry: ")
    assert farewell.endswith(b"\n\n")
    assert 1500 <= int(farewell[len(b"retry: ") : -2]) <= 4500
    assert "forever closed" in log.calls
    assert app.stats()["closed"]["shutdown"] == 1


async def test_a_response_built_by_hand_keeps_its_own_options_over_the_routes() -> None:
    app = make_app(Log(), PlainStreams)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with open_stream(client, "/plain/own-options", method="POST") as stream:
            assert stream.response.headers["x-own"] == "own"
            assert stream.response.headers["x-route"] == "route"
            assert (await stream.next_event()).data == "first"
            with trio.move_on_after(0.3):  # the route's keep-alive would have come by now
                await stream.next_chunk()
            assert b"keep-alive" not in stream.raw


async def test_the_stream_limit_refuses_a_plain_routes_stream_and_closes_it() -> None:
    log = Log()
    app = make_app(log, PlainStreams, max_streams=1, retry_after=3)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with open_stream(client, "/plain/forever", method="POST") as stream:
            await stream.next_event()
            response = await client.put("/plain/generator")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "3"
            response = await client.post("/plain/stream", json={"text": "t"})
            assert response.status_code == 503
        # The refused generator never ran; the refused SseStream's task never started.
        assert "a generator started" not in log.calls
        await wait_until(lambda: app.stats()["open"] == 0)
        assert app.stats()["opened"] == 1


# -- one route, JSON or a stream ---------------------------------------------------------------


@dataclasses.dataclass
class Question:
    text: str
    stream: bool = False


@Controller("ask")
class AskController:
    @Sse(method="POST")
    async def ask(
        self, question: Annotated[Question, Body()], request: Annotated[Request, Req()]
    ) -> AsyncIterator[SseEvent] | JSONResponse:
        wanted = request.best_match("application/json", "text/event-stream")
        if question.stream or wanted == "text/event-stream":
            return self._words(question.text)
        return JSONResponse({"answer": question.text})

    @Sse("created", method="POST")
    async def created(self) -> JSONResponse:
        return JSONResponse({"id": 7}, 201, headers={"Location": "/ask/7"})

    @Sse("mistake", method="POST")
    async def mistake(self) -> list[int]:
        return [1, 2, 3]  # a list is not a stream, and answering once takes a Response

    async def _words(self, text: str) -> AsyncIterator[SseEvent]:
        for word in text.split():
            yield SseEvent(data=word, event="word")


async def test_one_route_answers_json_or_a_stream_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(Log(), AskController)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post("/ask", json={"text": "two words"})
        assert response.status_code == 200
        assert response.json() == {"answer": "two words"}
        assert response.headers["content-type"] == "application/json"

        for arguments in (
            {"json": {"text": "two words", "stream": True}},
            {"json": {"text": "two words"}, "headers": {"Accept": "text/event-stream"}},
        ):
            events = await read_all_events(client, "/ask", method="POST", **arguments)
            assert [(e.type, e.data) for e in events] == [("word", "two"), ("word", "words")]

        accept_json = {"Accept": "application/json, text/event-stream;q=0.5"}
        response = await client.post("/ask", json={"text": "x"}, headers=accept_json)
        assert response.json() == {"answer": "x"}

        response = await client.post("/ask/created")
        assert response.status_code == 201
        assert response.headers["location"] == "/ask/7"
        assert response.json() == {"id": 7}

        response = await client.post("/ask/mistake")
        assert response.status_code == 500
    assert app.stats()["opened"] == 2  # the JSON answers took no stream
    assert "SSE handler AskController.mistake returned list" in caplog.text


# -- bad input: a clear 4xx before any stream, nothing logged, the server unaffected --------------


BAD_INPUT: dict[str, tuple[dict[str, Any], int, str]] = {
    "malformed JSON": (
        {"content": b'{"text": "hi"', "headers": {"Content-Type": "application/json"}},
        400,
        "request body is not valid JSON",
    ),
    "a field of the wrong type": (
        {"json": {"text": "hi", "repeat": "many"}},
        400,
        "body field 'repeat' must be an integer",
    ),
    "a missing field": ({"json": {"repeat": 2}}, 400, "body field 'text' is required"),
    "an unknown field": ({"json": {"text": "hi", "tone": "x"}}, 400, "body field 'tone'"),
    "no body": ({}, 400, "body"),
    "a body larger than max_body_size": (
        {"json": {"text": "x" * 5000}},
        413,
        "larger than 4096 bytes",
    ),
    "a form's content type": (
        {"content": b'{"text": "hi"}', "headers": {"Content-Type": "text/plain"}},
        415,
        "Content-Type: application/json",
    ),
    "no content type": ({"content": b'{"text": "hi"}'}, 415, "got none"),
}


@pytest.fixture
def error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING)
    yield caplog
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("case", list(BAD_INPUT))
async def test_bad_input_to_a_post_stream_is_a_clear_4xx_before_any_stream(
    case: str, error_logs: pytest.LogCaptureFixture
) -> None:
    arguments, status, fragment = BAD_INPUT[case]
    log = Log()
    app = make_app(log, max_body_size=4096)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(
            "/any/echo", headers=KEY | arguments.pop("headers", {}), **arguments
        )
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert fragment in response.json()["message"]
        assert "handler" not in log.calls
        assert app.stats()["opened"] == 0
        # The server is unaffected: the next request streams.
        events = await read_all_events(
            client, "/any/echo", method="POST", json={"text": "ok"}, headers=KEY
        )
        assert [e.data for e in events] == ["ok"]
