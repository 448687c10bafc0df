"""A shutdown under load without a reconnect storm: ``python -m bench.drain [--streams N]``.

Starts ``trio-dwex run bench.drain:app`` (its own process, the command users run), opens
``--streams`` streams over raw sockets, and sends the server SIGTERM. Then, for every stream:
when it ended (after the signal), and the ``retry`` its farewell asked for, hence when its
client would reconnect. Prints how those spread over time, and how long the server took to
exit, against its graceful timeout. Diagnostics for docs/reliability.md; not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator

import trio

from trio_dwex import Controller, Module, Settings, Sse, SseEvent, create_app

#: The app's drain window, and the server's graceful timeout (the command's default).
DRAIN_WINDOW = 3.0
GRACEFUL_TIMEOUT = 5.0


@Controller()
class FeedController:
    @Sse("feed")
    async def feed(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="hello")
        await trio.sleep_forever()


@Module(controllers=[FeedController])
class FeedModule:
    pass


app = create_app(FeedModule, settings=Settings(drain_window=DRAIN_WINDOW, max_streams=None))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=10)
    low, high = min(values), max(values)
    return f"min {low:.2f}  p10 {cuts[0]:.2f}  p50 {cuts[4]:.2f}  p90 {cuts[8]:.2f}  max {high:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drain")
    parser.add_argument("--streams", type=int, default=2_000)
    args = parser.parse_args(argv)
    from tests.reliability.support import listening_process

    port = _free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "bench.drain:app", "--port", str(port)]
    command += ["--graceful-timeout", str(GRACEFUL_TIMEOUT), "--log-level", "warning"]
    with listening_process(command, port) as server:
        selector = selectors.DefaultSelector()
        data: dict[socket.socket, bytearray] = {}
        for _ in range(args.streams):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /feed HTTP/1.1\r\nHost: bench\r\n\r\n")
            data[sock] = bytearray()
        # Every stream open: its first event in.
        deadline = time.monotonic() + 60
        for sock in data:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            while b"data: hello" not in data[sock]:
                data[sock] += sock.recv(65536)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        signalled = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        ended: dict[socket.socket, float] = {}
        while len(ended) < len(data) and time.monotonic() < signalled + 30:
            for key, _ in selector.select(timeout=1):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    chunk = ready.recv(65536)
                except ConnectionError:
                    chunk = b""
                data[ready] += chunk
                if not chunk or data[ready].endswith(b"0\r\n\r\n"):
                    ended[ready] = time.monotonic() - signalled
                    selector.unregister(ready)
        server.wait(timeout=60)
        exited = time.monotonic() - signalled
    retries = []
    reconnects = []
    for sock, at in ended.items():
        found = re.search(rb"retry: (\d+)", data[sock])
        if found:
            retries.append(int(found[1]) / 1000)
            reconnects.append(at + int(found[1]) / 1000)
        sock.close()
    window, graceful = DRAIN_WINDOW, GRACEFUL_TIMEOUT
    print(f"{args.streams:,} streams; drain window {window:g} s, graceful timeout {graceful:g} s")
    print(f"streams ended (s after SIGTERM): {_quantiles(list(ended.values()))}")
    print(f"farewells with a retry: {len(retries):,} of {len(ended):,}")
    if reconnects:
        print(f"clients would reconnect at (s):  {_quantiles(reconnects)}")
        busiest = max(
            sum(1 for t in reconnects if second <= t < second + 1) for second in range(0, 12)
        )
        print(f"most reconnections in one second: {busiest:,} ({busiest / len(reconnects):.0%})")
    print(f"server exited after {exited:.2f} s with code {server.returncode}")


if __name__ == "__main__":
    main()
