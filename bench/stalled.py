"""Memory with thousands of stalled clients: what a stream's byte bound buys (issue 18 item 2).

``python -m bench.stalled`` (``nox -s reliability`` runs it with the defaults):

``--clients`` raw HTTP/1.1 clients (a 4 KiB receive buffer each) ask for ``/feed`` and never
read. Each stream's generator yields new 16 KiB events as fast as it may, so every buffer
between it and the client fills with bytes that no other stream shares: the worst case for
memory. We sample the server's RSS until every stream is full, wait until the server drops the
clients (the route's ``send_timeout``), and watch the RSS until the server has given the
freed memory back (``ServerLimits.memory_trim_interval``).

Rows: our defaults (``buffer_bytes`` 256 KiB a stream), and, with a tenth of the clients so
that it fits in memory, the bound in events alone (``buffer_bytes`` of 1 GiB, as before the
byte bound), extrapolated per client.

The server runs in its own process with ``trio-dwex run``; loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.lowlevel

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability.support import free_port, rss_kib, server_process  # noqa: E402

from trio_dwex import (  # noqa: E402
    Controller,
    Get,
    Module,
    Settings,
    Sse,
    SseEvent,
    StreamSettings,
    create_app,
)

Row = dict[str, Any]

#: Seconds a client may accept nothing before the server drops it.
SEND_TIMEOUT = 10.0
EVENT_BYTES = 16 * 1024
#: Seconds we watch the RSS after the drop: past the server's memory_trim_interval (30 s).
TRIM_WAIT = 32
#: The stream's byte bound for this run of the app (the environment, so the server process
#: can be told): the default, or huge to see the bound in events alone.
BUFFER_BYTES = int(os.environ.get("BENCH_BUFFER_BYTES", StreamSettings().buffer_bytes))


@Controller()
class StalledController:
    @Sse("feed", send_timeout=SEND_TIMEOUT, buffer_bytes=BUFFER_BYTES)
    async def feed(self) -> AsyncIterator[SseEvent]:
        n = 0
        while True:
            n += 1
            # A new string each time: its bytes are this stream's alone.
            yield SseEvent(data=f"{n:08d}" + "x" * (EVENT_BYTES - 8))

    @Get("stats")
    async def stats(self) -> dict[str, object]:
        return dict(app.stats())


@Module(controllers=[StalledController])
class StalledModule:
    pass


app = create_app(StalledModule, settings=Settings(max_streams=100_000))


async def stalled_clients(clients: int, buffer_bytes: int | None) -> Row:
    port = free_port()
    env = {} if buffer_bytes is None else {"BENCH_BUFFER_BYTES": str(buffer_bytes)}
    with server_process(
        "bench.stalled:app", port, "--log-level", "error", "--max-connections", str(clients + 10),
        env=env,
    ) as process:  # fmt: skip
        await trio.sleep(0.5)
        before = rss_kib(process.pid)
        sockets: list[socket.socket] = []
        try:
            for _ in range(clients):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /feed HTTP/1.1\r\nHost: bench\r\n\r\n")
                sockets.append(sock)
                if len(sockets) % 500 == 0:
                    await trio.lowlevel.checkpoint()
            # Until the RSS stops growing: every stream's buffers are full.
            peak, still = rss_kib(process.pid), 0
            while still < 4:
                await trio.sleep(0.5)
                now = rss_kib(process.pid)
                still = still + 1 if now <= peak + 1024 else 0
                peak = max(peak, now)
            # The server drops every client once it has accepted nothing for SEND_TIMEOUT.
            await trio.sleep(SEND_TIMEOUT + 3)
            dropped = rss_kib(process.pid)
            async with httpx.AsyncClient() as client:
                stats = (await client.get(f"http://127.0.0.1:{port}/stats")).json()
        finally:
            for sock in sockets:
                sock.close()
        # The server gives free memory back every memory_trim_interval (30 s).
        trimmed = rss_kib(process.pid)
        for _ in range(TRIM_WAIT):
            await trio.sleep(1)
            trimmed = min(trimmed, rss_kib(process.pid))
    per_client = (peak - before) / clients
    return {
        "experiment": f"{clients} stalled clients, buffer_bytes={buffer_bytes or BUFFER_BYTES}",
        "clients": clients,
        "event_bytes": EVENT_BYTES,
        "rss_kib_before": before,
        "rss_kib_peak": peak,
        "kib_per_client": round(per_client, 1),
        "mib_for_10000_clients": round(per_client * 10_000 / 1024),
        "rss_kib_after_drop": dropped,
        "open_streams_after_drop": stats["open"],
        "rss_kib_after_trim": trimmed,
    }


def print_row(row: Row) -> None:
    details = ", ".join(f"{k}={v}" for k, v in row.items() if k != "experiment")
    print(f"| {row['experiment']:<44} | {details} |", flush=True)


async def main(options: argparse.Namespace) -> list[Row]:
    rows = [await stalled_clients(options.clients, None)]
    print_row(rows[-1])
    rows.append(await stalled_clients(max(1, options.clients // 10), 1024**3))
    print_row(rows[-1])
    return rows


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stalled", description=__doc__)
    parser.add_argument("--clients", type=int, default=2000, help="stalled clients (2,000)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    options = parser.parse_args(argv)
    rows = trio.run(main, options)
    if options.json:
        options.json.write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
