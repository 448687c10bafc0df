"""What one event costs inside trio-dwex, with no sockets: ``python -m bench.costs``.

The benchmark's CPU-per-event column is the whole server: Hypercorn, h11, the kernel and us.
This splits off our part. Each line is process CPU time divided by events, median of
``--reps`` runs, in this one process:

* ``SseEvent(data=str, id=str)``: building (validating and encoding) the event a route yields;
* ``bytes by hand``: the same bytes from an f-string, what the raw floor app does per event;
* ``run_stream, generator source`` / ``SseStream source``: an event from the handler's hands
  to the sink's ``write`` (construction included), through the pump or ``SseStream.send``,
  the bounded buffer, and the writer's coalescing, into a sink that only counts bytes;
* ``500 generator streams of 2,000 events at once``: the same, with 500 full buffers alive
  at once (the benchmark's concurrent scenario without sockets; fewer events per stream
  when ``--events`` is below 100,000);
* ``... awaiting between events``: the same with a checkpoint after each event, so nothing is
  coalesced and every event pays a write, the timers and the task switches (the sparse case);
* ``typed events``: a generator of named events with dict data (`Update`), run as is and
  through the check that ``@Sse(events=...)`` adds (``Settings.check_events``), and the same
  for an `SseStream` source, whose events the check reads through the pump;
* ``a timer wake-up``: a sleep of 0.2 ms in a loop on Trio, asyncio's default loop and uvloop,
  what the sparse row's producer pays per event before any framework runs (the peer's
  producer sleeps on asyncio); then 100 tasks each sleeping 5 ms, the token row's producers
  (the token row's peer runs on uvloop); `bench.timers` has the sleeps;
* ``a whole SSE request``: the benchmark app (`bench.apps.make_dwex_app`) called as ASGI for
  ``/gen?n=1`` — routing, parameters, the per-stream nursery, one event, the end — per
  request rather than per event.

The collector runs with trio-dwex's thresholds (`trio_dwex.lowlevel.tune_gc`), as under ``trio-dwex
run`` and in the benchmark's trio-dwex rows; ``--python-gc`` keeps Python's.

Diagnostics only; not part of CI.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import ClassVar, TypedDict

import trio
import trio.lowlevel

from trio_dwex import SseEvent, SseStream
from trio_dwex.framework._events import compile_events
from trio_dwex.lowlevel import run_stream, tune_gc

from .apps import PAYLOAD, SPARSE_GAP, make_dwex_app
from .timers import LOOPS, sleeps


class CountingSink:
    """An `EventSink` that keeps nothing: the cost of a write is one checkpoint."""

    #: Bytes written to every sink of this process (`bench.instructions` checks that a
    #: scenario delivered its events).
    total_bytes: ClassVar[int] = 0

    def __init__(self) -> None:
        self.bytes = 0
        self.writes = 0

    # ``first`` has a default so that `bench.instructions --against` can run these scenarios
    # on revisions whose runner still called ``start()`` alone.
    async def start(self, first: bytes = b"") -> None:
        if first:
            await self.write(first)

    async def write(self, data: bytes) -> None:
        self.bytes += len(data)
        self.writes += 1
        CountingSink.total_bytes += len(data)
        await trio.lowlevel.checkpoint()

    def notify_disconnect(
        self, callback: object, start_soon: Callable[[Callable[[], Awaitable[object]]], None]
    ) -> None:
        # A client that never leaves, watched by a task as over an ASGI server that cannot
        # call back: what the runner paid per stream when these figures were first taken.
        start_soon(trio.sleep_forever)


def build_events(n: int) -> None:
    for i in range(n):
        SseEvent(data=f"{PAYLOAD} {i}", id=str(i))


def build_bytes(n: int) -> None:
    for i in range(n):
        f"id: {i}\ndata: {PAYLOAD} {i}\n\n".encode()


def stream_from_generator(n: int, sparse: bool) -> None:
    async def events() -> AsyncIterator[SseEvent]:
        for i in range(n):
            yield SseEvent(data=f"{PAYLOAD} {i}", id=str(i))
            if sparse:
                await trio.lowlevel.checkpoint()

    trio.run(run_stream, events(), CountingSink())


def many_streams_from_generators(n: int, streams: int) -> None:
    """``streams`` generator streams at once, ``n`` events in all: many buffers alive at once."""

    async def events(count: int) -> AsyncIterator[SseEvent]:
        for i in range(count):
            yield SseEvent(data=f"{PAYLOAD} {i}", id=str(i))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(streams):
                nursery.start_soon(run_stream, events(n // streams), CountingSink())

    trio.run(main)


def stream_from_sse_stream(n: int, sparse: bool) -> None:
    async def main() -> None:
        stream = SseStream()

        async def produce() -> None:
            for i in range(n):
                await stream.send(SseEvent(data=f"{PAYLOAD} {i}", id=str(i)))
                if sparse:
                    await trio.lowlevel.checkpoint()
            stream.close()

        stream.start_soon(produce)
        await run_stream(stream, CountingSink())

    trio.run(main)


class Update(TypedDict):
    count: int
    text: str


_CONTRACT = compile_events({"update": Update}, "bench")


def typed_events(n: int, checked: bool, sse_stream: bool) -> None:
    """Named events with dict data, checked against their declared type or not."""

    def event(i: int) -> SseEvent:
        return SseEvent(data={"count": i, "text": PAYLOAD}, event="update", id=str(i))

    async def events() -> AsyncIterator[SseEvent]:
        for i in range(n):
            yield event(i)

    async def main() -> None:
        source: SseStream | AsyncIterable[object]
        if sse_stream:
            stream = SseStream()

            async def produce() -> None:
                for i in range(n):
                    await stream.send(event(i))
                stream.close()

            stream.start_soon(produce)
            source = stream
        else:
            source = events()
        if checked:
            source = _CONTRACT.checked(source)
        await run_stream(source, CountingSink())

    trio.run(main)


def sse_requests(n: int) -> None:
    app = make_dwex_app()

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/gen",
            "raw_path": b"/gen",
            "query_string": b"n=1",
            "root_path": "",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        done = trio.Event()

        async def receive() -> dict[str, object]:
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await app(scope, receive, send)

    async def main() -> None:
        to_app, app_receive = trio.open_memory_channel[dict[str, object]](1)
        app_send, from_app = trio.open_memory_channel[dict[str, object]](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, {"type": "lifespan"}, app_receive.receive, app_send.send)
            await to_app.send({"type": "lifespan.startup"})
            await from_app.receive()
            for _ in range(n):
                await one()
            await to_app.send({"type": "lifespan.shutdown"})
            await from_app.receive()

    trio.run(main)


SLEEP_GAP = SPARSE_GAP  # the sparse row's gap between events
TOKEN_GAP = 0.005  # the token row's gap between tokens (bench.tokens), with 100 producers


def cpu_us_per_event(run: Callable[[int], object], n: int, reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.process_time()
        run(n)
        samples.append((time.process_time() - start) / n * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run")
    parser.add_argument("--reps", type=int, default=5, help="runs per line (median)")
    parser.add_argument(
        "--python-gc", action="store_true", help="keep Python's collector thresholds"
    )
    args = parser.parse_args(argv)
    if not args.python_gc:
        tune_gc()
    n, reps = args.events, args.reps
    lines: list[tuple[str, Callable[[int], object], int]] = [
        ("SseEvent(data=str, id=str)", build_events, n),
        ("bytes by hand (the raw floor's per-event work)", build_bytes, n),
        ("run_stream, generator source", lambda k: stream_from_generator(k, False), n),
        ("run_stream, SseStream source", lambda k: stream_from_sse_stream(k, False), n),
        (
            "run_stream, 500 generator streams of 2,000 events at once",
            lambda k: many_streams_from_generators(k, 500),
            min(10 * n, 500 * 2_000),  # the full size by default; smaller for a smoke run
        ),
        (
            "run_stream, generator source, awaiting between events",
            lambda k: stream_from_generator(k, True),
            n // 5,
        ),
        (
            "run_stream, SseStream source, awaiting between events",
            lambda k: stream_from_sse_stream(k, True),
            n // 5,
        ),
    ]
    for source in ("generator", "SseStream"):
        for checked in (False, True):
            label = f"typed events, {source} source, {'checked' if checked else 'unchecked'}"
            typed = partial(typed_events, checked=checked, sse_stream=source == "SseStream")
            lines.append((label, typed, n))
    for loop in LOOPS:
        sparse = partial(sleeps, loop, gap=SLEEP_GAP)
        lines.append((f"a timer wake-up: {loop}, sleep({SLEEP_GAP:g})", sparse, n // 10))
    for loop in LOOPS:
        tokens = partial(sleeps, loop, gap=TOKEN_GAP, tasks=100)
        label = f"a timer wake-up: {loop}, sleep({TOKEN_GAP:g}) in each of 100 tasks"
        lines.append((label, tokens, 2 * n // 10))
    lines.append(("a whole SSE request (per request, not per event)", sse_requests, n // 50))
    print(f"CPU-µs per event, in process, no sockets; median of {reps}\n")
    print("| what | CPU-µs per event |")
    print("|---|---:|")
    for label, run, count in lines:
        print(f"| {label} | {cpu_us_per_event(run, count, reps):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
