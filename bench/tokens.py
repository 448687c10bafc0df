"""POST token streams, ours against FastAPI + sse-starlette on uvicorn (issue 13 item 7).

``python -m bench.tokens`` (``nox -s bench`` runs it after the main benchmark):

``--streams`` clients at once each ``POST /v1/chat/completions`` with a JSON body and read an
OpenAI-style event stream of ``--tokens`` chunks, ``--gap`` seconds apart, then
``data: [DONE]``. Each server runs the same handler logic in its own process, one worker: ours
with ``trio-dwex run bench.tokens:dwex_app``, the peer with ``uvicorn
bench.tokens:fastapi_app``, and the floor on Trio, the same stream as bare ASGI (one ``send``
per token), with ``hypercorn --worker-class trio --workers 0 bench.tokens:raw_app`` (in its
own process, not a worker it spawns, so that ``/proc`` finds its CPU). The peer's uvicorn runs
with its defaults, which pick uvloop and httptools where they are installed (the bench extra
installs both). We report the server process's CPU time per token (user + system, from
``/proc``) and the time to first token (from sending the request to the first chunk) at p50
and p99, medians of ``--reps`` runs with every server once per run, and the ratios of CPU per
token. Each run also times the producers' sleeps alone, the same number on the same loop
(`bench.timers`: Trio for ours and the floor, the peer's loop for the peer), and splits each
server's CPU per token into that sleep and the rest, which is what the servers themselves
add; and prints issue 15's target (ours at most half the peer's CPU per token).

The client is httpx on trio, in this process; loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
import trio

from . import timers
from .run import Target

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import accept_lifespan  # noqa: E402
from tests.reliability.support import (  # noqa: E402
    free_port,
    listening_process,
    server_process,
)

from trio_dwex import Body, Controller, Module, Settings, Sse, StreamSettings, create_app  # noqa: E402

Row = dict[str, Any]

#: The rows besides ours: the asyncio peer, and bare ASGI on Hypercorn's Trio worker.
PEER = "fastapi+sse-starlette"
TRIO_FLOOR = "raw ASGI on Hypercorn-Trio"

#: The stream's shape, read by both servers from the request body.
DEFAULT_TOKENS = 200
DEFAULT_GAP = 0.005
#: Issue 15's limit: our CPU per token at most this times the peer's.
TARGET = 0.5


def chunk(index: int, word: str, last: bool) -> dict[str, Any]:
    """One ``chat.completion.chunk``, as OpenAI's API streams it."""
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "echo",
        "choices": [
            {
                "index": 0,
                "delta": {"content": f"{word}{index} "},
                "finish_reason": "stop" if last else None,
            }
        ],
    }


# -- ours ---------------------------------------------------------------------------------------


@Controller("v1")
class TokenController:
    @Sse("chat/completions", method="POST")
    async def completions(
        self, body: Annotated[dict[str, Any], Body()]
    ) -> AsyncIterator[dict[str, Any] | str]:
        tokens, gap = int(body["tokens"]), float(body["gap"])
        for index in range(tokens):
            yield chunk(index, "token", index == tokens - 1)
            await trio.sleep(gap)
        yield "[DONE]"


@Module(controllers=[TokenController])
class TokenModule:
    pass


dwex_app = create_app(TokenModule)
#: The same, with tokens merged into writes for up to `MERGE_WINDOW` seconds
#: (``StreamSettings.merge_window``): fewer writes, each token at most that much later.
MERGE_WINDOW = 0.025
dwex_merged_app = create_app(
    TokenModule, settings=Settings(streams=StreamSettings(merge_window=MERGE_WINDOW))
)


# -- the Trio floor: the same stream as bare ASGI on Hypercorn's Trio worker -------------------


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """No framework: read the body, then one ``send`` per token and a ``trio.sleep`` between.

    What a token costs on Trio and Hypercorn alone (``hypercorn --worker-class trio``), the
    yardstick for ours that an asyncio peer cannot be (docs/performance.md, "The producers'
    timers").
    """
    if scope["type"] == "lifespan":
        await accept_lifespan(receive, send)
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = json.loads(body)
    tokens, gap = int(request["tokens"]), float(request["gap"])
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for index in range(tokens):
        data = json.dumps(chunk(index, "token", index == tokens - 1), separators=(",", ":"))
        await send(
            {
                "type": "http.response.body",
                "body": b"data: %s\n\n" % data.encode(),
                "more_body": True,
            }
        )
        await trio.sleep(gap)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


# -- the peer: FastAPI + sse-starlette ----------------------------------------------------------


def make_fastapi_app() -> Any:
    import asyncio

    from fastapi import FastAPI
    from sse_starlette import EventSourceResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(body: dict[str, Any]) -> EventSourceResponse:
        tokens, gap = int(body["tokens"]), float(body["gap"])

        async def events() -> AsyncIterator[str]:
            for index in range(tokens):
                yield json.dumps(chunk(index, "token", index == tokens - 1))
                await asyncio.sleep(gap)
            yield "[DONE]"

        return EventSourceResponse(events())

    return app


def __getattr__(name: str) -> Any:
    # Built on demand, so that importing this module for our app needs no FastAPI.
    if name == "fastapi_app":
        return make_fastapi_app()
    raise AttributeError(name)


# -- the run ------------------------------------------------------------------------------------


@contextmanager
def server(kind: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    if kind.startswith("trio-dwex"):
        target = "bench.tokens:dwex_merged_app" if "merge" in kind else "bench.tokens:dwex_app"
        with server_process(target, port, "--log-level", "error") as process:
            yield process
        return
    if kind == TRIO_FLOOR:
        command = [
            sys.executable, "-m", "hypercorn", "--worker-class", "trio", "bench.tokens:raw_app",
            "--bind", f"127.0.0.1:{port}", "--workers", "0", "--log-level", "error",
        ]  # fmt: skip
        with listening_process(command, port) as process:
            yield process
        return
    command = [
        sys.executable, "-m", "uvicorn", "bench.tokens:fastapi_app", "--port", str(port),
        "--log-level", "error", "--no-access-log",
    ]  # fmt: skip
    with listening_process(command, port) as process:
        yield process


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


async def one_stream(client: httpx.AsyncClient, tokens: int, gap: float, first: list[float]) -> int:
    body = {"model": "echo", "stream": True, "tokens": tokens, "gap": gap}
    started = time.perf_counter()
    received = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            if received == 0:
                first.append(time.perf_counter() - started)
            json.loads(line[6:])
            received += 1
    return received


async def measure(kind: str, streams: int, tokens: int, gap: float, spy: bool = False) -> Row:
    """One server's row; with ``spy``, also where its CPU goes while the streams run (py-spy,
    printed)."""
    port = free_port()
    with server(kind, port) as process:
        limits = httpx.Limits(max_connections=streams + 10)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as client:
            await one_stream(client, 5, 0.0, [])  # warm up
            first: list[float] = []
            counts: list[int] = []
            if spy:
                from .profile import fold_py_spy, start_py_spy

                profile = Path(tempfile.mkdtemp()) / "profile.txt"
                recording = start_py_spy(process.pid, profile, None, blocking=True)
                await trio.sleep(1.0)  # py-spy attached
            cpu_before = cpu_seconds(process.pid)
            wall = time.perf_counter()

            async def run_one() -> None:
                counts.append(await one_stream(client, tokens, gap, first))

            async with trio.open_nursery() as nursery:
                for _ in range(streams):
                    nursery.start_soon(run_one)
            wall = time.perf_counter() - wall
            cpu = cpu_seconds(process.pid) - cpu_before
            if spy:
                recording.send_signal(signal.SIGINT)
                recording.wait(30)
                print(f"where {kind}'s CPU goes (py-spy, share of the busy samples):")
                for share, frame in fold_py_spy(profile, 40):
                    print(f"{share:5.1f}%  {frame}")
    delivered = sum(counts)
    assert delivered == streams * tokens, f"{kind}: {delivered} of {streams * tokens} tokens"
    ordered = sorted(first)
    return {
        "server": kind,
        "streams": streams,
        "tokens": delivered,
        "wall_s": round(wall, 2),
        "cpu_us_per_token": round(cpu / delivered * 1e6, 1),
        "ttft_p50_ms": round(statistics.median(ordered) * 1000, 1),
        "ttft_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


def peer_loop() -> timers.Loop:
    """The loop the peer's uvicorn runs on: uvloop where it is installed (``--loop auto``)."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


async def main(options: argparse.Namespace) -> dict[str, Any]:
    """Every server once per repetition, side by side, then the medians and their ratios."""
    merged = f"trio-dwex, merge_window={MERGE_WINDOW * 1000:g} ms"
    kinds = ("trio-dwex", merged, TRIO_FLOOR, PEER)
    loops: dict[str, timers.Loop] = dict.fromkeys(kinds, "trio")
    loops[PEER] = peer_loop()
    runs: dict[str, list[Row]] = {kind: [] for kind in kinds}
    timer_runs: dict[timers.Loop, list[float]] = {loop: [] for loop in set(loops.values())}
    wakeups = options.streams * options.tokens
    for rep in range(options.reps):
        for kind in kinds:
            spy = options.py_spy and kind == "trio-dwex" and rep == 0
            row = await measure(kind, options.streams, options.tokens, options.gap, spy)
            print(f"[rep {rep + 1}/{options.reps}] {kind}: {row}", file=sys.stderr, flush=True)
            runs[kind].append(row)
        for loop in timer_runs:  # the producers' sleeps alone, the same count and shape
            measure_timer = partial(
                timers.timer_cpu_us, loop, wakeups, options.gap, options.streams
            )
            timer_runs[loop].append(await trio.to_thread.run_sync(measure_timer))
    rows = {kind: median_row(runs[kind]) for kind in kinds}
    timer_us = {loop: statistics.median(values) for loop, values in timer_runs.items()}
    print(
        f"POST token streams, {options.streams} at once × {options.tokens} tokens "
        f"{options.gap * 1000:g} ms apart, median of {options.reps}\n"
    )
    print("| server | CPU-µs per token | its sleep alone | the rest | first token p50 / p99 ms |")
    print("|---|---:|---:|---:|---:|")
    rest = {}
    for kind, row in rows.items():
        cpu, timer = row["cpu_us_per_token"], timer_us[loops[kind]]
        rest[kind] = cpu - timer
        print(
            f"| {kind} | {cpu:.1f} | {timer:.1f} ({loops[kind]}) | {rest[kind]:.1f} "
            f"| {row['ttft_p50_ms']:.1f} / {row['ttft_p99_ms']:.1f} |"
        )
    print()
    cpu = {kind: row["cpu_us_per_token"] for kind, row in rows.items()}
    for yardstick, name in ((PEER, "FastAPI + sse-starlette"), (TRIO_FLOOR, "the Trio floor")):
        for kind in ("trio-dwex", merged):
            # /proc counts CPU in clock ticks (10 ms): a small run may measure none at all.
            ratio = ratio_text(cpu[kind], cpu[yardstick])
            rest_ratio = ratio_text(rest[kind], rest[yardstick])
            print(f"- CPU per token, {kind} / {name}: {ratio} (the rest: {rest_ratio})")
    ours, theirs = cpu["trio-dwex"], cpu[PEER]
    target = Target(
        "CPU per token / FastAPI + sse-starlette",
        ("trio-dwex", "cpu_us_per_token"),
        (PEER, "cpu_us_per_token"),
        TARGET,
        issues="15",
    )
    verdict = target.verdict(ours or None, theirs or None)
    print(
        f"- issue 15's target, CPU per token ≤ {TARGET:g}× FastAPI + sse-starlette: "
        f"{verdict['status']}; the limit is {TARGET * theirs:.1f} µs, of which Trio's sleep "
        f"alone costs {timer_us['trio']:.1f}"
    )
    return {"rows": rows, "runs": runs, "timer_cpu_us": timer_us, "targets": [verdict]}


def median_row(runs: list[Row]) -> Row:
    """The median of each figure over the repetitions (the tokens summed)."""
    row = dict(runs[0])
    row["tokens"] = sum(run["tokens"] for run in runs)
    for name in ("wall_s", "cpu_us_per_token", "ttft_p50_ms", "ttft_p99_ms"):
        row[name] = statistics.median(run[name] for run in runs)
    return row


def ratio_text(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}×" if ours and theirs else "too few ticks to compare"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tokens", description=__doc__)
    parser.add_argument("--streams", type=int, default=100, help="concurrent streams (100)")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help="tokens each (200)")
    parser.add_argument("--gap", type=float, default=DEFAULT_GAP, help="seconds between (0.005)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each server (median; 3)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--py-spy", action="store_true", help="also profile our server (py-spy) while it runs"
    )
    options = parser.parse_args(argv)
    report = trio.run(main, options)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
