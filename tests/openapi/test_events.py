"""Typed events: ``@Sse(events=...)``, its compiled contract, and the check on a live stream."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import httpx
import msgspec
import pydantic
import pytest
import trio

from tests.helpers import open_stream, read_all_events, wait_until
from trio_dwex import (
    ConfigurationError,
    Controller,
    EventContractError,
    Module,
    Settings,
    Sse,
    SseEvent,
    SseStream,
    create_app,
)
from trio_dwex.framework._events import EventContract, compile_events
from trio_dwex.testing._server import serve_app


@dataclasses.dataclass
class Hello:
    message: str


class Update(TypedDict):
    count: int
    text: str


class Done(msgspec.Struct):
    total: int


class Report(pydantic.BaseModel):
    ok: bool


ROUTE = "Feed.updates (GET /feed/updates)"


def contract() -> EventContract:
    return compile_events(
        {"hello": Hello, "update": Update, "done": Done, "report": Report, "message": str},
        ROUTE,
    )


# -- declaring ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "events",
    [{}, [("update", Update)], {"": Update}, {"two\nlines": Update}, {3: Update}],
    ids=["empty", "not-a-mapping", "empty-name", "newline", "not-a-string"],
)
def test_a_bad_declaration_fails_at_the_decorator(events: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"@Sse\('feed', events=\.\.\.\)"):
        Sse("feed", events=events)


def test_a_type_that_cannot_be_described_fails_at_create_app_naming_route_and_event() -> None:
    class Opaque:
        pass

    @Controller("feed")
    class Feed:
        @Sse("updates", events={"update": Update, "odd": Opaque})
        async def updates(self) -> AsyncIterator[SseEvent]:
            yield SseEvent(data={"count": 1, "text": "a"}, event="update")

    @Module(controllers=[Feed])
    class App:
        pass

    with pytest.raises(
        ConfigurationError, match=r"Feed\.updates \(GET /feed/updates\): event 'odd'"
    ):
        create_app(App)


# -- the check ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        SseEvent(data={"message": "hi"}, event="hello"),
        SseEvent(data=Hello("hi"), event="hello"),
        SseEvent(data={"count": 1, "text": "a"}, event="update", id="1", retry=10),
        SseEvent(data='{"count": 1, "text": "a"}', event="update"),  # JSON text, sent as is
        SseEvent(data={"total": 3}, event="done"),
        SseEvent(data={"ok": True}, event="report"),
        SseEvent(data="plain text"),  # unnamed: "message", declared as str
        SseEvent(data="plain text", event=""),  # an empty name is "message" too
        SseEvent(comment="keep-alive"),  # comments are never checked
        SseEvent(id="5", event="anything"),  # no data: a client dispatches nothing
    ],
)
def test_declared_events_pass(event: SseEvent) -> None:
    contract().check(event)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            SseEvent(data={"count": 1}, event="oops"),
            f"{ROUTE} sent 'oops', which its @Sse(events=...) does not declare (declared: "
            "'hello', 'update', 'done', 'report', 'message'); declare it in "
            "@Sse(events={'oops': ...})",
        ),
        (
            SseEvent(data={"count": "1", "text": "a"}, event="update"),
            f"{ROUTE}: event 'update' data field 'count' must be an integer, got \"1\"",
        ),
        (
            SseEvent(data={"count": 1}, event="update"),
            f"{ROUTE}: event 'update' data field 'text' is required",
        ),
        (
            SseEvent(data={"message": "hi", "extra": 1}, event="hello"),
            f"{ROUTE}: event 'hello' data field 'extra' is not a field of Hello "
            "(expected: message)",
        ),
        (
            SseEvent(data=Hello(3), event="hello"),  # type: ignore[arg-type]
            f"{ROUTE}: event 'hello' data field 'message' must be a string, got 3",
        ),
        (
            SseEvent(data="not json", event="update"),
            f"{ROUTE}: event 'update' data is text that is not JSON, but the event is "
            "declared as Update",
        ),
        (
            SseEvent(data={"total": "3"}, event="done"),
            f"{ROUTE}: event 'done' data field 'total' must be `int`, got `str`",
        ),
        (
            SseEvent(data={"ok": "yes"}, event="report"),
            f"{ROUTE}: event 'report' data field 'ok' Input should be a valid boolean",
        ),
        (
            SseEvent(data={"n": 1}),
            f"{ROUTE}: event 'message' data must be a string, got {{\"n\": 1}}",
        ),
    ],
)
def test_an_event_that_breaks_the_contract_names_route_event_and_field(
    event: SseEvent, message: str
) -> None:
    with pytest.raises(EventContractError) as caught:
        contract().check(event)
    assert str(caught.value) == message


def test_an_unnamed_event_that_is_not_declared_says_how_to_fix_it() -> None:
    only_named = compile_events({"update": Update}, ROUTE)
    with pytest.raises(
        EventContractError, match=r"an unnamed event \('message'\).*declare 'message'"
    ):
        only_named.check(SseEvent(data={"count": 1, "text": "a"}))


def test_an_event_checked_once_is_not_checked_again() -> None:
    """A broadcast event reaches every stream of the route; it is checked once."""
    calls = []

    def counting(value: object, field: str) -> None:
        calls.append(value)

    counted = EventContract(ROUTE, {"update": Update}, {"update": counting})
    event = SseEvent(data={"count": 1, "text": "a"}, event="update")
    for _ in range(3):
        counted.check(event)
    counted.check(SseEvent(data={"count": 2, "text": "b"}, event="update"))
    assert len(calls) == 2


# -- on a live stream ----------------------------------------------------------------------------


@dataclasses.dataclass
class Trace:
    """What the handlers did, for the tests to read."""

    finally_ran: list[str] = dataclasses.field(default_factory=list)


def feed_app(trace: Trace, *, check_events: bool = True) -> Any:
    @Controller("feed")
    class Feed:
        @Sse("good", events={"hello": Hello, "update": Update})
        async def good(self) -> AsyncIterator[SseEvent]:
            yield SseEvent(data=Hello("hi"), event="hello")
            for n in range(3):
                yield SseEvent(data={"count": n, "text": "x"}, event="update", id=str(n))

        @Sse("bad-first", events={"update": Update})
        async def bad_first(self) -> AsyncIterator[SseEvent]:
            try:
                yield SseEvent(data={"count": "zero", "text": "x"}, event="update")
            finally:
                trace.finally_ran.append("bad-first")

        @Sse("bad-later", events={"update": Update})
        async def bad_later(self) -> AsyncIterator[SseEvent]:
            try:
                yield SseEvent(data={"count": 0, "text": "x"}, event="update", id="0")
                await trio.sleep(0.05)  # the first event is out: the response has started
                yield SseEvent(data={"count": 1, "text": "x"}, event="updated")
                yield SseEvent(data={"count": 2, "text": "x"}, event="update")
            finally:
                trace.finally_ran.append("bad-later")

        @Sse("stream", events={"update": Update})
        def stream(self) -> SseStream:
            stream = SseStream()

            async def produce() -> None:
                await stream.send(SseEvent(data={"count": 0, "text": "x"}, event="update"))
                await trio.sleep(0.05)
                await stream.send(SseEvent(data={"count": 1}, event="update"))
                await trio.sleep_forever()

            stream.start_soon(produce)
            stream.on_close(lambda: trace.finally_ran.append("stream"))
            return stream

    @Module(controllers=[Feed])
    class App:
        pass

    return create_app(App, settings=Settings(check_events=check_events))


async def test_a_stream_that_keeps_its_contract_is_untouched() -> None:
    async with serve_app(feed_app(Trace())) as url, httpx.AsyncClient(base_url=url) as client:
        events = await read_all_events(client, "/feed/good")
    assert [(e.type, e.data) for e in events] == [
        ("hello", '{"message":"hi"}'),
        ("update", '{"count":0,"text":"x"}'),
        ("update", '{"count":1,"text":"x"}'),
        ("update", '{"count":2,"text":"x"}'),
    ]


async def test_a_bad_first_event_is_a_500_and_the_generator_is_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = Trace()
    async with serve_app(feed_app(trace)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/feed/bad-first")
    assert response.status_code == 500
    assert response.json()["message"] == "Internal Server Error"  # the details are logged
    assert trace.finally_ran == ["bad-first"]
    logged = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert any(
        "Feed.bad_first (GET /feed/bad-first): event 'update' data field 'count' must be an "
        'integer, got "zero"' in str(_leaf(record.exc_info[1]))  # type: ignore[index,arg-type]
        for record in logged
    ), [r.getMessage() for r in caplog.records]


async def test_a_bad_later_event_ends_the_stream_there_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = Trace()
    async with serve_app(feed_app(trace)) as url, httpx.AsyncClient(base_url=url) as client:
        events = await read_all_events(client, "/feed/bad-later")
    assert [e.id for e in events] == ["0"]  # nothing after the undeclared "updated"
    assert trace.finally_ran == ["bad-later"]
    assert _logged(caplog, "Feed.bad_later (GET /feed/bad-later) sent 'updated', which")


async def test_an_sse_stream_source_is_checked_and_its_cleanup_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = Trace()
    async with serve_app(feed_app(trace)) as url, httpx.AsyncClient(base_url=url) as client:
        with trio.fail_after(5):
            events = await read_all_events(client, "/feed/stream")
    assert [e.data for e in events] == ['{"count":0,"text":"x"}']
    assert trace.finally_ran == ["stream"]
    assert _logged(caplog, "Feed.stream (GET /feed/stream): event 'update' data field 'text'")


async def test_without_checks_the_events_go_out_as_produced() -> None:
    trace = Trace()
    app = feed_app(trace, check_events=False)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        events = await read_all_events(client, "/feed/bad-later")
    assert [e.type for e in events] == ["update", "updated", "update"]


async def test_a_client_that_leaves_closes_the_checked_generator() -> None:
    trace = Trace()
    async with serve_app(feed_app(trace)) as url, httpx.AsyncClient(base_url=url) as client:
        async with open_stream(client, "/feed/bad-later") as stream:
            assert (await stream.next_event()).id == "0"
        await wait_until(lambda: bool(trace.finally_ran))
    assert trace.finally_ran == ["bad-later"]


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    for record in caplog.records:
        if record.exc_info is None:
            continue
        stack: list[BaseException] = [record.exc_info[1]]  # type: ignore[list-item]
        while stack:
            error = stack.pop()
            if isinstance(error, EventContractError) and text in str(error):
                return True
            if isinstance(error, BaseExceptionGroup):
                stack.extend(error.exceptions)
    return False
