"""The apps under test. Every app answers the same three routes with the same events:

* ``GET /gen?n=N&sparse=0|1`` — N events ``id: i`` / ``data: <PAYLOAD> i``, then the stream
  ends. ``sparse=1`` sleeps `SPARSE_GAP` between events, so the producer is never ahead of the
  socket and nothing can be coalesced: one event per write.
* ``GET /stream?...`` — the same events from trio-dwex's imperative `SseStream` route (the
  other apps serve ``/stream`` exactly like ``/gen``).
* ``GET /idle`` — one event, then nothing until the client leaves (an idle stream); trio-dwex
  also has ``/idle-stream``, the same from an `SseStream`.

The raw ASGI apps are the floor: what Hypercorn's Trio worker costs with no framework at all,
either one ASGI ``send`` per event or one per ``batch`` events.
"""

# No `from __future__ import annotations`: the handlers' Annotated hints name local imports.
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qs

PAYLOAD = "x" * 48
"""Each event's data is this plus the event number: ~70 bytes on the wire, a typical update."""

SPARSE_GAP = 0.0002
"""Seconds between the events of a sparse source (``sparse=1``). Far longer than any server here
needs to write one event, so every event is written alone: nothing to coalesce, ever. (A bare
``sleep(0)`` is not enough: a producer that runs while the writer is inside ``send`` can queue
a second event, and then the runner rightly coalesces.)"""


def event_data(i: int) -> str:
    return f"{PAYLOAD} {i}"


def raw_event(i: int) -> bytes:
    return f"id: {i}\ndata: {PAYLOAD} {i}\n\n".encode()


def query(scope: dict[str, Any]) -> tuple[int, bool]:
    args = parse_qs(scope.get("query_string", b"").decode())
    n = int(args.get("n", ["1"])[0])
    sparse = args.get("sparse", ["0"])[0] == "1"
    return n, sparse


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


# -- the raw ASGI floor (Trio) ------------------------------------------------------------------


def make_raw_app(batch: int, flavor: str = "trio") -> Any:
    """A bare ASGI app: ``batch`` events per ``http.response.body`` message.

    ``flavor`` is the event loop whose ``sleep`` separates sparse events.
    """
    checkpoint: Callable[[float], Awaitable[None]]
    if flavor == "trio":
        import trio

        checkpoint = trio.sleep
    else:
        import asyncio

        checkpoint = asyncio.sleep

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        if scope["path"] == "/idle":
            await send({"type": "http.response.body", "body": raw_event(0), "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        n, sparse = query(scope)
        for start in range(0, n, batch):
            body = b"".join(raw_event(i) for i in range(start, min(n, start + batch)))
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if sparse:
                await checkpoint(SPARSE_GAP)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


# -- trio-dwex ----------------------------------------------------------------------------------


def make_dwex_app(serializer: str = "json") -> Any:
    import trio

    from trio_dwex import Controller, Module, Query, Settings, Sse, SseEvent, SseStream, create_app
    from trio_dwex.lowlevel import json_serializer

    @Controller("")
    class BenchController:
        @Sse("gen")
        async def gen(
            self,
            n: Annotated[int, Query("n")] = 1,
            sparse: Annotated[int, Query("sparse")] = 0,
        ) -> AsyncIterator[SseEvent]:
            for i in range(n):
                yield SseEvent(data=f"{PAYLOAD} {i}", id=str(i))
                if sparse:
                    await trio.sleep(SPARSE_GAP)

        @Sse("json")
        async def json_events(self, n: Annotated[int, Query("n")] = 1) -> AsyncIterator[SseEvent]:
            # The serializer benchmark: the same size of event, from a dict.
            for i in range(n):
                yield SseEvent(data={"p": PAYLOAD[:36], "n": i, "ok": True}, id=str(i))

        @Sse("stream")
        def stream(
            self,
            n: Annotated[int, Query("n")] = 1,
            sparse: Annotated[int, Query("sparse")] = 0,
        ) -> SseStream:
            stream = SseStream()

            async def produce() -> None:
                for i in range(n):
                    await stream.send(SseEvent(data=f"{PAYLOAD} {i}", id=str(i)))
                    if sparse:
                        await trio.sleep(SPARSE_GAP)
                stream.close()

            stream.start_soon(produce)
            return stream

        @Sse("idle")
        async def idle(self) -> AsyncIterator[SseEvent]:
            yield SseEvent(data=f"{PAYLOAD} 0", id="0")
            await trio.sleep_forever()

        @Sse("idle-stream")
        def idle_stream(self) -> SseStream:
            stream = SseStream()
            stream.send_nowait(SseEvent(data=f"{PAYLOAD} 0", id="0"))
            return stream

    @Module(controllers=[BenchController])
    class BenchModule: ...

    if serializer == "orjson":
        import orjson

        settings = Settings(serializer=orjson.dumps)
    else:
        settings = Settings(serializer=json_serializer)
    return create_app(BenchModule, settings=settings)


# -- sse-starlette (asyncio) ---------------------------------------------------------------------


def make_sse_starlette_app() -> Any:
    import asyncio

    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    async def events(n: int, sparse: bool) -> AsyncIterator[ServerSentEvent]:
        for i in range(n):
            yield ServerSentEvent(data=f"{PAYLOAD} {i}", id=str(i))
            if sparse:
                await asyncio.sleep(SPARSE_GAP)

    async def gen(request: Request) -> EventSourceResponse:
        n = int(request.query_params.get("n", "1"))
        sparse = request.query_params.get("sparse", "0") == "1"
        return EventSourceResponse(events(n, sparse))

    async def idle_events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data=f"{PAYLOAD} 0", id="0")
        await asyncio.Event().wait()

    async def idle(request: Request) -> EventSourceResponse:
        return EventSourceResponse(idle_events())

    return Starlette(routes=[Route("/gen", gen), Route("/stream", gen), Route("/idle", idle)])


# -- trio-dwex broadcast fan-out (bench/fanout.py) -----------------------------------------------

FANOUT_TOPIC = "bench"
FANOUT_BUFFER = 4096
"""Each subscriber's buffer in the fan-out app: more than any burst the benchmark publishes, so
that no subscriber overflows and every event is delivered (the overflow policies are tested in
tests/broadcast, not measured here)."""


def make_sse_starlette_fanout_app() -> Any:
    """The fan-out routes as a user of sse-starlette writes them: an ``asyncio.Queue`` per
    subscriber, filled by the publisher, drained by each subscriber's ``EventSourceResponse``.

    Same routes and answers as `make_fanout_app` (``/fan``, ``/prime``, ``/publish``), so the
    same load generator drives both. There is no replay: ``/publish`` waits until every
    subscriber is registered, so none misses an event; ``/prime``'s id is ignored.
    """
    import asyncio
    import time

    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    subscribers: set[asyncio.Queue[ServerSentEvent]] = set()

    async def events(queue: asyncio.Queue[ServerSentEvent]) -> AsyncIterator[ServerSentEvent]:
        subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            subscribers.discard(queue)

    async def fan(request: Request) -> EventSourceResponse:
        return EventSourceResponse(events(asyncio.Queue(maxsize=FANOUT_BUFFER)))

    async def prime(request: Request) -> JSONResponse:
        return JSONResponse({"id": "0"})

    async def publish(request: Request) -> JSONResponse:
        subs = int(request.query_params.get("subs", "1"))
        n = int(request.query_params.get("n", "1"))
        gap = float(request.query_params.get("gap", "0"))
        async with asyncio.timeout(60):
            while len(subscribers) < subs:  # noqa: ASYNC110 (as our hub, polled)
                await asyncio.sleep(0.005)
        start = time.monotonic()
        for i in range(n):
            event = ServerSentEvent(data=f"{i} {time.monotonic():.6f}", id=str(i + 1))
            for queue in list(subscribers):
                queue.put_nowait(event)
            # 0: one pass of the event loop, as ours; else on a schedule, as ours.
            await asyncio.sleep(max(0.0, start + (i + 1) * gap - time.monotonic()))
        return JSONResponse({"start": start, "end": time.monotonic()})

    routes = [Route("/fan", fan), Route("/prime", prime), Route("/publish", publish)]
    return Starlette(routes=routes)


def make_fanout_app(backend_url: str) -> Any:
    """One ``@Sse`` route streaming a broadcast topic, and the routes that drive its publisher.

    * ``GET /fan`` — ``hub.stream(FANOUT_TOPIC, Last-Event-ID)``;
    * ``GET /prime`` — publishes one event and answers its id: clients then subscribe with it as
      ``Last-Event-ID``, so an event published before a subscriber's backend reader is ready is
      replayed instead of lost;
    * ``GET /publish?subs=S&n=N&gap=G`` — waits until the topic has ``S`` local subscribers, then
      publishes ``N`` events whose data is ``"<i> <time.monotonic() at publish>"``, one
      scheduler pass (or a ``G`` s sleep) between them, and answers when done.

    ``backend_url``: ``memory://`` or ``redis://127.0.0.1:PORT/0``.
    """
    import os
    import time

    import trio
    import trio.lowlevel

    from trio_dwex import (
        Controller,
        Get,
        Headers,
        Module,
        Provider,
        Query,
        Sse,
        SseStream,
        create_app,
    )
    from trio_dwex.broadcast import Broadcast

    def make_hub() -> Broadcast:
        if backend_url.startswith("redis"):
            from trio_dwex.broadcast import RedisBackend

            backend = RedisBackend(backend_url, key_prefix=f"bench{os.getpid()}:")
            return Broadcast(backend, subscriber_buffer=FANOUT_BUFFER)
        return Broadcast.from_url(backend_url, subscriber_buffer=FANOUT_BUFFER)

    @Controller("")
    class FanoutController:
        def __init__(self, hub: Broadcast) -> None:
            self.hub = hub

        @Sse("fan")
        def fan(self, last_id: Annotated[str | None, Headers("last-event-id")] = None) -> SseStream:
            return self.hub.stream(FANOUT_TOPIC, last_id)

        @Get("prime")
        async def prime(self) -> dict[str, str]:
            return {"id": await self.hub.publish(FANOUT_TOPIC, "prime")}

        @Get("publish")
        async def publish(
            self,
            subs: Annotated[int, Query("subs")] = 1,
            n: Annotated[int, Query("n")] = 1,
            gap: Annotated[float, Query("gap")] = 0.0,
        ) -> dict[str, float]:
            with trio.fail_after(60):
                # Polled: the hub has no "subscriber joined" event to wait on.
                while self.hub.subscriber_count(FANOUT_TOPIC) < subs:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            start = time.monotonic()
            scheduled = trio.current_time()
            for i in range(n):
                await self.hub.publish(FANOUT_TOPIC, f"{i} {time.monotonic():.6f}")
                if gap:
                    # On a schedule, whatever a publish costs: "one every gap" for every row.
                    await trio.sleep_until(scheduled + (i + 1) * gap)
                else:
                    await trio.lowlevel.checkpoint()
            return {"start": start, "end": time.monotonic()}

    @Module(
        controllers=[FanoutController],
        providers=[Provider(Broadcast, use_factory=make_hub)],
    )
    class FanoutModule: ...

    return create_app(FanoutModule)
