"""create_app end to end: routes, parameters, errors, guards, interceptors, limits, lifespan."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import httpx
import pytest
import trio

from tests.helpers import open_stream, read_all_events
from trio_dwex import (
    Body,
    CallNext,
    ConfigurationError,
    ConflictException,
    Controller,
    CorsSettings,
    Delete,
    EventSourceResponse,
    ExecutionContext,
    Get,
    Headers,
    Injectable,
    Module,
    Param,
    Post,
    ProviderNotFound,
    Query,
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
from trio_dwex.testing._server import serve_app


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Item:
    name: str
    count: int = 1


@Controller("plain")
class PlainController:
    @Get("dict")
    def as_dict(self) -> dict[str, int]:
        return {"a": 1}

    @Get("list")
    async def as_list(self) -> list[int]:
        return [1, 2]

    @Get("text")
    def as_text(self) -> str:
        return "héllo"

    @Get("bytes")
    def as_bytes(self) -> bytes:
        return b"\x00\x01"

    @Delete("nothing")
    def nothing(self) -> None:
        return None

    @Get("custom")
    def custom(self) -> Response:
        return Response("made", status=201, headers={"X-Made": "yes"})

    @Get("conflict")
    def conflict(self) -> None:
        raise ConflictException("already there")

    @Get("crash")
    def crash(self) -> None:
        raise RuntimeError("secret detail")

    @Get("params/:id")
    def params(
        self,
        id: Annotated[int, Param()],
        color: Annotated[Color, Query()] = Color.RED,
        ratio: Annotated[float | None, Query()] = None,
        flag: Annotated[bool, Query()] = False,
        tags: Annotated[list[str], Query("tag")] = [],  # noqa: B006 (never mutated)
        agent: Annotated[str | None, Headers("user-agent")] = None,
    ) -> dict[str, Any]:
        return {"id": id, "color": color.value, "ratio": ratio, "flag": flag, "tags": tags}

    @Post("items")
    def create(self, item: Annotated[Item, Body()]) -> Item:
        return item


async def test_plain_routes_and_their_return_types() -> None:
    app = create_app(Module(controllers=[PlainController])(type("M", (), {})))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/plain/dict")).json() == {"a": 1}
        assert (await client.get("/plain/list")).json() == [1, 2]
        response = await client.get("/plain/text")
        assert response.text == "héllo"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        response = await client.get("/plain/bytes")
        assert response.content == b"\x00\x01"
        assert response.headers["content-type"] == "application/octet-stream"
        assert (await client.delete("/plain/nothing")).status_code == 204
        response = await client.get("/plain/custom")
        assert (response.status_code, response.text, response.headers["x-made"]) == (
            201,
            "made",
            "yes",
        )
        response = await client.get("/plain/conflict")
        assert response.status_code == 409
        assert response.json() == {
            "statusCode": 409,
            "error": "Conflict",
            "message": "already there",
        }
        response = await client.get("/plain/crash")
        assert response.status_code == 500
        assert "secret" not in response.text
        response = await client.post("/plain/items", json={"name": "pen", "count": 3})
        assert response.json() == {"name": "pen", "count": 3}


async def test_parameter_conversion_and_its_errors() -> None:
    app = create_app(Module(controllers=[PlainController])(type("M", (), {})))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/plain/params/7?color=blue&ratio=0.5&flag=yes&tag=a&tag=b")
        assert response.json() == {
            "id": 7,
            "color": "blue",
            "ratio": 0.5,
            "flag": True,
            "tags": ["a", "b"],
        }
        for query, name in [
            ("/plain/params/x", "'id'"),
            ("/plain/params/7?color=green", "'color'"),
            ("/plain/params/7?ratio=abc", "'ratio'"),
            ("/plain/params/7?flag=maybe", "'flag'"),
        ]:
            response = await client.get(query)
            assert response.status_code == 400, query
            assert name in response.json()["message"], (query, response.json())
        for body in (b"{", b"[1]", b'{"count": 2}', b'{"name": "x", "count": "two"}'):
            response = await client.post(
                "/plain/items", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, body
        deep = b"[" * 10_000 + b"]" * 10_000
        response = await client.post(
            "/plain/items", content=deep, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400


class Clock:
    pass


@Injectable()
class Service:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock


@Controller("x")
class NeedsService:
    def __init__(self, service: Service) -> None:
        self.service = service

    @Get()
    def get(self) -> None: ...


@Injectable()
class Egg:
    def __init__(self, chicken: Chicken) -> None: ...


@Injectable()
class Chicken:
    def __init__(self, egg: Egg) -> None: ...


@Controller("eggs")
class EggController:
    def __init__(self, egg: Egg) -> None: ...

    @Get()
    def get(self) -> None: ...


def test_dependency_errors_fail_at_create_app_with_the_chain() -> None:
    @Module(controllers=[NeedsService], providers=[Service])
    class AppModule: ...

    # The chain starts at the controller that needs the missing provider.
    with pytest.raises(
        ProviderNotFound, match=r"^cannot resolve NeedsService -> Service -> Clock: no provider"
    ):
        create_app(AppModule)

    # A cycle, whichever of its providers is listed first, names the controller that needs it.
    for providers in ([Egg, Chicken], [Chicken, Egg]):

        @Module(controllers=[EggController], providers=providers)
        class Cyclic: ...

        with pytest.raises(ConfigurationError) as info:
            create_app(Cyclic)
        assert not isinstance(info.value, ProviderNotFound)
        assert str(info.value).startswith(
            "cannot resolve EggController -> Egg -> Chicken -> Egg: dependency cycle "
            "(Egg -> Chicken -> Egg)"
        ), info.value

    @Controller("y")
    class Unmarked:
        @Get()
        def get(self, value: int) -> None: ...

    @Module(controllers=[Unmarked])
    class BadParams: ...

    with pytest.raises(ConfigurationError, match="Annotated"):
        create_app(BadParams)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []


@Injectable()
class SlowGuard:
    """An async guard that takes its time and then refuses."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def can_activate(self, context: ExecutionContext) -> bool:
        await trio.sleep(0.2)
        self.recorder.calls.append("guard")
        headers: Mapping[str, str] = context.request.headers  # request: Any
        return headers.get("x-allow") == "yes"


@Injectable()
class Upper:
    """Wraps the event iterator of an SSE route: every event's data, upper-cased."""

    async def intercept(self, context: ExecutionContext, call_next: CallNext) -> Any:
        source = await call_next()

        def upper(event: SseEvent) -> SseEvent:
            return SseEvent(data=str(event.data).upper(), event=event.event)

        return map_events(source, upper)


@Injectable()
class UpperByHand:
    """`Upper` without `map_events`: an async generator of the interceptor's own."""

    async def intercept(self, context: ExecutionContext, call_next: CallNext) -> Any:
        source = await call_next()

        async def upper() -> AsyncIterator[SseEvent]:
            async for event in source:
                yield SseEvent(data=str(event.data).upper(), event=event.event)

        return upper()


@Controller("guarded")
class GuardedController:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    @Sse("events")
    @UseGuards(SlowGuard)
    async def events(self) -> AsyncIterator[SseEvent]:
        self.recorder.calls.append("handler")
        yield SseEvent(data="secret")

    @Sse("shout")
    @UseInterceptors(Upper)
    async def shout(self) -> AsyncIterator[SseEvent]:
        try:
            yield SseEvent(data="hello", event="greeting")
            yield SseEvent(data="bye")
        finally:
            self.recorder.calls.append("generator closed")

    @Sse("shout-stream")
    @UseInterceptors(Upper)
    def shout_stream(self) -> SseStream:
        stream = SseStream()

        async def produce() -> None:
            await stream.send(SseEvent(data="from a task"))
            stream.close()

        stream.start_soon(produce)
        stream.on_close(lambda: self.recorder.calls.append("stream closed"))
        return stream

    @Sse("shout-stream-by-hand")
    @UseInterceptors(UpperByHand)
    def shout_stream_by_hand(self) -> SseStream:
        return self.shout_stream()


def guarded_app(recorder: Recorder, **settings: Any) -> Any:
    @Module(
        controllers=[GuardedController],
        providers=[SlowGuard, Upper, UpperByHand, Provider(Recorder, use_value=recorder)],
    )
    class AppModule: ...

    return create_app(AppModule, settings=Settings(**settings))


from trio_dwex import Provider  # noqa: E402


async def test_a_rejected_sse_request_never_sees_200_or_an_event_byte() -> None:
    recorder = Recorder()
    async with serve_app(guarded_app(recorder)) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream("GET", "/guarded/events") as response:
            body = await response.aread()
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/json"
        assert b"secret" not in body
        assert recorder.calls == ["guard"]  # the handler never ran
        events = await read_all_events(client, "/guarded/events?x=1")
        assert events == []
        response = await client.get("/guarded/events", headers={"x-allow": "yes"})
        assert response.status_code == 200
        assert "data: secret" in response.text
        assert recorder.calls[-2:] == ["guard", "handler"]


async def test_interceptors_wrap_the_event_iterator_of_both_kinds_of_sse_route() -> None:
    recorder = Recorder()
    async with serve_app(guarded_app(recorder)) as url, httpx.AsyncClient(base_url=url) as client:
        events = await read_all_events(client, "/guarded/shout")
        assert [(e.type, e.data) for e in events] == [("greeting", "HELLO"), ("message", "BYE")]
        assert "generator closed" in recorder.calls
        events = await read_all_events(client, "/guarded/shout-stream")
        assert [e.data for e in events] == ["FROM A TASK"]
        assert "stream closed" in recorder.calls


async def test_an_interceptors_own_generator_over_an_sse_stream_keeps_its_task_and_callback() -> (
    None
):
    recorder = Recorder()
    async with serve_app(guarded_app(recorder)) as url, httpx.AsyncClient(base_url=url) as client:
        events = await read_all_events(client, "/guarded/shout-stream-by-hand")
        assert [e.data for e in events] == ["FROM A TASK"]
        assert recorder.calls == ["stream closed"]


async def test_max_streams_answers_503_with_retry_after() -> None:
    @Controller("s")
    class Streams:
        @Sse()
        async def forever(self) -> AsyncIterator[SseEvent]:
            yield SseEvent(data="hi")
            await trio.sleep_forever()

    @Module(controllers=[Streams])
    class AppModule: ...

    app = create_app(AppModule, settings=Settings(max_streams=2, retry_after=7))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with open_stream(client, "/s") as one, open_stream(client, "/s") as two:
            await one.next_event()
            await two.next_event()
            response = await client.get("/s")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "7"
            assert "max_streams=2" in response.json()["message"]
        with trio.fail_after(2):
            while app.streams.open_count:  # noqa: ASYNC110 (server-side state)
                await trio.sleep(0.01)
        async with open_stream(client, "/s") as three:
            assert (await three.next_event()).data == "hi"


async def test_per_route_stream_options_override_the_app_settings() -> None:
    @Controller("k")
    class Quiet:
        @Sse(keepalive=0.05, headers={"X-Route": "quiet"})
        async def quiet(self) -> AsyncIterator[SseEvent]:
            yield SseEvent(data="x")
            await trio.sleep_forever()

    @Module(controllers=[Quiet])
    class AppModule: ...

    app = create_app(AppModule, settings=Settings(streams=StreamSettings(keepalive=100)))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with open_stream(client, "/k") as stream:
            assert stream.response.headers["x-route"] == "quiet"
            await stream.next_event()
            with trio.fail_after(2):
                while b": keep-alive" not in stream.raw:
                    await stream.next_chunk()


async def test_async_context_manager_providers_live_from_startup_to_shutdown() -> None:
    log: list[str] = []

    @Injectable()
    class Feed:
        async def __aenter__(self) -> Feed:
            log.append("enter")
            return self

        async def __aexit__(self, *exc: object) -> None:
            log.append("exit")

    @Controller("f")
    class Reader:
        def __init__(self, feed: Feed) -> None:
            self.feed = feed

        @Get()
        def get(self) -> list[str]:
            return list(log)

    @Module(controllers=[Reader], providers=[Feed])
    class AppModule: ...

    app = create_app(AppModule)
    assert log == []
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/f")).json() == ["enter"]
    assert log == ["enter", "exit"]


async def test_cors_with_credentials_echoes_the_origin_and_refuses_others() -> None:
    app = create_app(
        Module(controllers=[PlainController])(type("M", (), {})),
        settings=Settings(
            cors=CorsSettings(allow_origins=("http://ok.example",), allow_credentials=True)
        ),
    )
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        response = await client.options(
            "/plain/items", headers={"Origin": "http://ok.example", **preflight}
        )
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "http://ok.example"
        assert response.headers["access-control-allow-credentials"] == "true"
        response = await client.options(
            "/plain/items", headers={"Origin": "http://evil.example", **preflight}
        )
        assert response.status_code == 403
        response = await client.get("/plain/dict", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in response.headers


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="max_streams"):
        Settings(max_streams=0)
    with pytest.raises(ValueError, match="allow_origins"):
        CorsSettings(allow_origins="*")  # a str is a Sequence[str]: only the check catches it
    with pytest.raises(ValueError, match="header"):
        Response("x", headers={"X-Bad": "a\r\nSet-Cookie: x=1"})


async def test_the_serializer_setting_applies_to_events_and_json_responses() -> None:
    calls: list[object] = []

    def sorted_bytes(value: object) -> bytes:
        """Stands in for orjson.dumps: returns bytes, with sorted keys so the test can tell."""
        import json

        calls.append(value)
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    @Controller("ser")
    class Serialized:
        @Get()
        def plain(self) -> dict[str, int]:
            return {"b": 2, "a": 1}

        @Sse("events")
        async def events(self) -> AsyncIterator[object]:
            yield {"b": 2, "a": 1}  # plain data, converted in the stream
            yield SseEvent(data={"d": 4, "c": 3})  # built in handler code

    @Module(controllers=[Serialized])
    class AppModule: ...

    app = create_app(AppModule, settings=Settings(serializer=sorted_bytes))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/ser")).text == '{"a":1,"b":2}'
        events = await read_all_events(client, "/ser/events")
    assert [e.data for e in events] == ['{"a":1,"b":2}', '{"c":3,"d":4}']
    assert len(calls) == 3


def spaced_json(value: object) -> str:
    """A serializer the tests can tell from the default: a space after each separator."""
    import json

    return json.dumps(value, sort_keys=True)


async def test_each_app_and_response_streams_with_its_own_serializer() -> None:
    # The default serializer is set per request only when another is in force, and a
    # response's own serializer only when it has one: each stream must still use its own.
    @Controller("")
    class Streams:
        @Sse("app")
        async def app_default(self) -> AsyncIterator[object]:
            yield {"b": 2, "a": 1}

        @Get("own")
        def own(self) -> EventSourceResponse:
            async def events() -> AsyncIterator[object]:
                yield {"b": 2, "a": 1}

            return EventSourceResponse(events(), serializer=spaced_json)

    @Module(controllers=[Streams])
    class StreamsModule: ...

    data = {}
    for name, settings in (("default", Settings()), ("spaced", Settings(serializer=spaced_json))):
        app = create_app(StreamsModule, settings=settings)
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
            for path in ("/app", "/own"):
                data[name + path] = [event.data for event in await read_all_events(client, path)]
    # An app with the default serializer, mounted in one with another, sets its own again.
    inner = create_app(StreamsModule)
    outer = create_app(
        StreamsModule, settings=Settings(serializer=spaced_json), mounts={"/inner": inner}
    )
    async with serve_app(outer) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("/app", "/inner/app", "/inner/own"):
            data["mounted" + path] = [event.data for event in await read_all_events(client, path)]
    spaced, compact = '{"a": 1, "b": 2}', '{"b":2,"a":1}'
    assert data == {
        "default/app": [compact],
        "default/own": [spaced],
        "spaced/app": [spaced],
        "spaced/own": [spaced],
        "mounted/app": [spaced],
        "mounted/inner/app": [compact],
        "mounted/inner/own": [spaced],
    }
