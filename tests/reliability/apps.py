"""Small trio-dwex apps for the reliability tests, each recording what ran.

`Counters` is what a test asserts on: every stream that opened must reach its ``finally`` and
its ``on_close`` exactly once, whatever ended it (a FIN, an RST, shutdown).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import trio

from trio_dwex import (
    Body,
    Controller,
    ExecutionContext,
    Get,
    Headers,
    Injectable,
    Module,
    Param,
    Post,
    Provider,
    Query,
    Settings,
    Sse,
    SseEvent,
    SseStream,
    StreamSettings,
    UseGuards,
    create_app,
)
from trio_dwex.asgi._app import DwexApp

__all__ = ["Counters", "make_app"]


@dataclass
class Counters:
    """What the app's streams lived through."""

    generators_started: int = 0
    generators_finally: int = 0
    streams_started: int = 0
    streams_on_close: int = 0
    tasks_cancelled: int = 0
    handler_calls: list[str] = field(default_factory=list)

    @property
    def cleanups(self) -> int:
        return self.generators_finally + self.streams_on_close

    @property
    def started(self) -> int:
        return self.generators_started + self.streams_started


#: Seconds the async guard of ``/guarded`` takes before it answers.
GUARD_DELAY = float(os.environ.get("RELIABILITY_GUARD_DELAY", "0.3"))


@Injectable()
class SlowRefusingGuard:
    """An async guard that takes its time, then refuses unless ``x-allow: yes``."""

    async def can_activate(self, context: ExecutionContext) -> bool:
        await trio.sleep(GUARD_DELAY)
        headers: Mapping[str, str] = context.request.headers  # request: Any
        return headers.get("x-allow") == "yes"


@dataclass
class Payload:
    name: str
    count: int = 1


@Controller("t")
class TestController:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    @Sse("gen")
    async def gen(self, every: Annotated[float, Query("every")] = 0.05) -> AsyncIterator[SseEvent]:
        """An endless generator stream: one event, then one every ``every`` seconds."""
        self.counters.generators_started += 1
        try:
            for n in range(1_000_000):
                yield SseEvent(data={"n": n}, id=str(n))
                await trio.sleep(every)
        finally:
            self.counters.generators_finally += 1

    @Sse("stream")
    def stream(self, every: Annotated[float, Query("every")] = 0.05) -> SseStream:
        """An endless SseStream fed by a task of its own, one event every ``every`` seconds."""
        self.counters.streams_started += 1
        stream = SseStream()

        async def feed() -> None:
            try:
                for n in range(1_000_000):
                    await stream.send(SseEvent(data={"n": n}, id=str(n)))
                    await trio.sleep(every)
            except trio.Cancelled:
                self.counters.tasks_cancelled += 1
                raise

        def closed() -> None:
            self.counters.streams_on_close += 1

        stream.start_soon(feed)
        stream.on_close(closed)
        return stream

    @Sse("numbered", max_lifetime=0.3)
    async def numbered(
        self, last_id: Annotated[int | None, Headers("last-event-id")] = None
    ) -> AsyncIterator[SseEvent]:
        """Resumable numbered events on a stream that lives 0.3 s at most."""
        start = 0 if last_id is None else last_id + 1
        for n in range(start, start + 1000):
            yield SseEvent(data=str(n), id=str(n), retry=10)
            await trio.sleep(0.05)

    @Sse("fails-after-first")
    async def fails_after_first(self) -> AsyncIterator[SseEvent]:
        """A source that raises right after its first event, before the headers are out."""
        yield SseEvent(data="first")
        raise RuntimeError("the source broke")

    @Sse("guarded")
    @UseGuards(SlowRefusingGuard)
    async def guarded(self) -> AsyncIterator[SseEvent]:
        self.counters.handler_calls.append("guarded")
        yield SseEvent(data="secret")

    @Get("num/:n")
    def num(
        self,
        n: Annotated[int, Param("n")],
        q: Annotated[int | None, Query("q")] = None,
        h: Annotated[int | None, Headers("x-n")] = None,
    ) -> dict[str, Any]:
        return {"n": n, "q": q, "h": h}

    @Get("text/:s")
    def text(
        self,
        s: Annotated[str, Param("s")],
        q: Annotated[str | None, Query("q")] = None,
        h: Annotated[str | None, Headers("x-s")] = None,
    ) -> dict[str, Any]:
        return {"s": s, "q": q, "h": h}

    @Post("body")
    def body(self, payload: Annotated[Payload, Body()]) -> dict[str, Any]:
        return {"name": payload.name, "count": payload.count}

    @Get("ping")
    def ping(self) -> str:
        return "pong"


def make_app(counters: Counters, *, controllers: Sequence[type] = (), **settings: Any) -> DwexApp:
    """A fresh app (its own `StreamTracker`) whose streams record into ``counters``.

    ``controllers`` are added to the test controller; ``settings`` go to `Settings`.
    """

    @Module(
        controllers=[TestController, *controllers],
        providers=[SlowRefusingGuard, Provider(Counters, use_value=counters)],
    )
    class AppModule: ...

    settings.setdefault("streams", StreamSettings(keepalive=1.0, send_timeout=2.0))
    return create_app(AppModule, settings=Settings(**settings))
