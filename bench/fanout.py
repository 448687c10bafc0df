"""The fan-out scenario (issue 8): one publisher, many SSE subscribers, one broadcast topic.

For each backend (in memory, and through a ``redis-server`` this module starts on a free
loopback port and stops by PID), a fresh server process (``bench.server fanout-*``, pinned to
core 1 like every row) serves ``hub.stream(topic, Last-Event-ID)`` from an ``@Sse`` route. This
process, the load generator on core 0, then:

1. asks the server to publish one ``prime`` event and takes its id;
2. opens the subscribers over real sockets (the epoll client of `bench.load`), each with that
   id as ``Last-Event-ID``, so no event can slip between subscribing and publishing;
3. asks the server (from a thread, over plain HTTP) to wait until the topic has every
   subscriber and then publish the events, one scheduler pass between publishes: a burst, as
   fast as the hub takes them (the paced and sparse modes publish on a schedule instead, one
   every ``gap``). Each event's data is ``"<i> <time.monotonic() at publish>"``;
4. parses every stream: each subscriber must get every event, in order, exactly once.

It reports deliveries per second (events × subscribers, from the first publish to the last
event parsed), publish-to-receive latency p50/p99 over every delivery (``time.monotonic()`` is
``CLOCK_MONOTONIC``, one clock for both processes), and the server's CPU time per delivery.
Under a burst the latency includes the queueing behind earlier events: it is the time to
drain a burst, not the latency of an idle hub. redis-server itself is not pinned and its CPU
time is not counted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import load

__all__ = [
    "FANOUT_MODES",
    "PACED_MODES",
    "SPARSE_MODES",
    "FanoutMode",
    "FanoutResult",
    "evaluate",
    "render",
    "run_fanout",
]


@dataclass(frozen=True)
class FanoutMode:
    subscribers: int
    events: int
    timeout: float
    #: Seconds between the starts of publishes, kept on a schedule whatever a publish costs;
    #: 0: one scheduler pass between publishes (a burst).
    gap: float = 0.0


FANOUT_MODES = {
    "full": FanoutMode(1_000, 300, 120.0),
    "quick": FanoutMode(100, 200, 60.0),
    "smoke": FanoutMode(10, 20, 20.0),
}

#: The burst's size, paced below what every row (and the load generator) can take, so that its
#: latencies are a delivery's, not the time to drain a backlog: under the burst, a server that
#: writes faster than the load generator parses fills the sockets' buffers, and its p99 is
#: then the load generator's queue (issue 15). 1,000 subscribers every 40 ms: 25,000/s.
PACED_MODES = {
    "full": FanoutMode(1_000, 300, 120.0, gap=0.04),
    "quick": FanoutMode(100, 200, 60.0, gap=0.01),
    "smoke": FanoutMode(10, 20, 20.0, gap=0.01),
}

#: The other common load: many subscribers, mostly idle, one event a second (issue 15).
SPARSE_MODES = {
    "full": FanoutMode(10_000, 30, 180.0, gap=1.0),
    "quick": FanoutMode(1_000, 10, 60.0, gap=0.5),
    "smoke": FanoutMode(20, 3, 20.0, gap=0.05),
}

BACKENDS = ("memory", "redis", "sse-starlette", "sse-starlette-standard")
#: The peers among them: each gets its own ratios.
PEERS = ("sse-starlette", "sse-starlette-standard")
"""Our hub on each backend, and the peers: sse-starlette on uvicorn with an ``asyncio.Queue`` per
subscriber (``bench.apps.make_sse_starlette_fanout_app``), on plain uvicorn (h11, asyncio) and
on uvicorn[standard] (httptools, uvloop)."""


@dataclass
class FanoutResult:
    backend: str
    subscribers: int = 0
    events: int = 0
    deliveries: int = 0
    deliveries_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us: float | None = None  # server CPU per delivery
    rss_mib: float | None = None  # the server's resident memory with every subscriber open
    error: str | None = None


class FanoutConn(load.Conn):
    """A subscriber: events ``"<i> <published at>"`` numbered from 0, ``expected`` of them."""

    __slots__ = ("last_at", "latencies")

    def __init__(self, port: int, path: str, expected: int, last_event_id: str) -> None:
        super().__init__(port, path, expected)
        self.request = self.request[:-2] + f"Last-Event-ID: {last_event_id}\r\n\r\n".encode()
        self.latencies: list[float] = []
        self.last_at = 0.0

    def _events(self, body: bytes) -> None:
        events = self._decoder.feed(body)
        if not events:
            return
        now = time.monotonic()
        for event in events:
            seq, _, published = event.data.partition(" ")
            if seq != str(self.events):
                self._fail(f"event {seq!r}, expected {self.events}: lost or reordered")
                return
            self.latencies.append(now - float(published))
            self.events += 1
        self.last_at = now
        if self.expected is not None and self.events >= self.expected:
            self.done = True  # the stream is endless: done once every event is in


def _get_json(port: int, path: str, timeout: float) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        result: dict[str, object] = json.loads(body)
        return result
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(binary: str) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, no persistence; stopped by PID."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        proc = subprocess.Popen(
            [
                *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", directory, "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}")
                with contextlib.suppress(OSError):
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(64).startswith(b"+PONG"):
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING within 10 s")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)


def _measure(server: object, mode: FanoutMode, result: FanoutResult) -> None:
    from .run import Server, cpu_seconds, percentile, rss_kib, wait_quiet

    assert isinstance(server, Server)
    port = server.port
    deadline = time.perf_counter() + mode.timeout
    # Warm up the routes (imports, first-request paths), then start from a quiet server.
    prime = str(_get_json(port, "/prime", mode.timeout)["id"])
    _get_json(port, "/publish?subs=0&n=1", mode.timeout)
    prime = str(_get_json(port, "/prime", mode.timeout)["id"])
    wait_quiet(server.pid)
    cpu_before = cpu_seconds(server.pid)
    conns: list[FanoutConn] = []
    outcome: dict[str, object] = {}

    def publish() -> None:
        path = f"/publish?subs={mode.subscribers}&n={mode.events}&gap={mode.gap}"
        try:
            outcome.update(_get_json(port, path, mode.timeout))
        except Exception as exc:  # reported below, with the streams' state
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    publisher = threading.Thread(target=publish, daemon=True)
    try:
        conns = [FanoutConn(port, "/fan", mode.events, prime) for _ in range(mode.subscribers)]
        publisher.start()
        load._drive(conns, until_first_event=False, deadline=deadline)
        load._check(conns)
        rss_after = rss_kib(server.pid)  # every stream still open
    finally:
        publisher.join(max(0.0, deadline - time.perf_counter()) + 1)
        for conn in conns:
            conn.close()
    if "error" in outcome:
        raise RuntimeError(f"publisher: {outcome['error']}")
    wait_quiet(server.pid)
    used = cpu_seconds(server.pid) - cpu_before
    result.rss_mib = rss_after / 1024
    latencies = [latency for conn in conns for latency in conn.latencies]
    result.deliveries = len(latencies)
    if result.deliveries != mode.subscribers * mode.events:
        raise load.BrokenServer(
            f"{result.deliveries} deliveries, expected {mode.subscribers * mode.events}"
        )
    start = float(outcome["start"])  # type: ignore[arg-type]
    wall = max(conn.last_at for conn in conns) - start
    result.deliveries_per_s = result.deliveries / wall
    result.p50_ms = percentile(latencies, 0.50) * 1e3
    result.p99_ms = percentile(latencies, 0.99) * 1e3
    result.cpu_us = used / result.deliveries * 1e6


def run_fanout(backend: str, mode: FanoutMode, cpu: int | None) -> FanoutResult:
    """One backend's fan-out measurement; errors are reported in the result, not raised."""
    from .run import Server

    result = FanoutResult(backend, mode.subscribers, mode.events)
    with contextlib.ExitStack() as stack:
        try:
            env = {}
            if backend == "redis":
                try:
                    import coredis  # noqa: F401
                except ImportError:
                    result.error = "not measured: coredis not installed (pip install -e .[redis])"
                    return result
                binary = shutil.which("redis-server")
                if binary is None:
                    result.error = "not measured: redis-server not found"
                    return result
                env["BENCH_REDIS_URL"] = stack.enter_context(redis_server(binary))
            server = Server(f"fanout-{backend}", cpu, env=env)
            stack.callback(server.stop)
            _measure(server, mode, result)
        except (load.BrokenServer, TimeoutError, OSError, RuntimeError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
    return result


def median(results: list[FanoutResult]) -> FanoutResult:
    """The median of each metric over repetitions; any error makes the row not score."""
    import statistics

    first = results[0]
    merged = FanoutResult(first.backend, first.subscribers, first.events)
    merged.deliveries = sum(r.deliveries for r in results)
    errors = [r.error for r in results if r.error]
    if errors:
        merged.error = errors[0]
        return merged
    for name in ("deliveries_per_s", "p50_ms", "p99_ms", "cpu_us", "rss_mib"):
        setattr(merged, name, statistics.median(getattr(r, name) for r in results))
    return merged


LABELS = {
    "memory": "trio-dwex Broadcast, MemoryBackend",
    "redis": "trio-dwex Broadcast, RedisBackend (local redis-server)",
    "sse-starlette": "sse-starlette on uvicorn, an asyncio.Queue per subscriber",
    "sse-starlette-standard": "the same on uvicorn[standard] (uvloop, httptools)",
}


def render(results: list[FanoutResult], mode_name: str, reps: int, gap: float = 0.0) -> str:
    from .run import fmt

    pace = "a burst, one scheduler pass between publishes" if not gap else f"one every {gap:g} s"
    lines = [
        f"fan-out, {mode_name} mode, median of {reps}: one publisher ({pace}), SSE subscribers "
        "over real sockets",
        "",
        "| backend | subscribers × events | deliveries/s | publish→receive p50 / p99 ms "
        "| server CPU-µs/delivery | server RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        size = f"{r.subscribers:,} × {r.events:,}"
        if r.error:
            lines.append(f"| {LABELS[r.backend]} | {size} | BROKEN: {r.error} | | | |")
            continue
        lines.append(
            f"| {LABELS[r.backend]} | {size} | {fmt(r.deliveries_per_s, ',.0f')} "
            f"| {fmt(r.p50_ms, '.1f')} / {fmt(r.p99_ms, '.1f')} | {fmt(r.cpu_us, '.2f')} "
            f"| {fmt(r.rss_mib, ',.0f')} |"
        )
    for name in PEERS:
        peer = next((r for r in results if r.backend == name and not r.error), None)
        if peer is None:
            continue
        lines += ["", f"ratios to {LABELS[name]} (ours ÷ theirs; CPU and p99: lower is better)"]
        for r in results:
            if r.backend in PEERS or r.error or None in (r.cpu_us, r.deliveries_per_s, r.p99_ms):
                continue
            lines.append(
                f"- {LABELS[r.backend]}: CPU/delivery {_ratio(r.cpu_us, peer.cpu_us)}, "
                f"deliveries/s {_ratio(r.deliveries_per_s, peer.deliveries_per_s)}, "
                f"p99 {_ratio(r.p99_ms, peer.p99_ms)}, RSS {_ratio(r.rss_mib, peer.rss_mib)}"
            )
    return "\n".join(lines)


#: Issue 15's limits for the burst (1,000 × 300), each of our backends against this peer:
#: (what, metric, limit, at least).
TARGET_PEER = "sse-starlette"
TARGET_LIMITS = (
    ("CPU/delivery", "cpu_us", 0.5, False),
    ("deliveries/s", "deliveries_per_s", 2.0, True),
    ("publish→receive p99", "p99_ms", 1.0, False),
)


def evaluate(results: list[FanoutResult]) -> list[dict[str, Any]]:
    """Issue 15's fan-out targets, for each of our backends measured beside the peer."""
    from .run import Target

    peer = next((r for r in results if r.backend == TARGET_PEER), None)
    if peer is None:
        return []
    verdicts = []
    for ours in results:
        if ours.backend in PEERS or (ours.error or "").startswith("not measured"):
            continue  # a peer, or a backend this machine cannot run (reported as such)
        for what, metric, limit, at_least in TARGET_LIMITS:
            target = Target(
                f"fan-out burst, {what} / sse-starlette: {ours.backend}",
                (ours.backend, metric),
                (TARGET_PEER, metric),
                limit,
                at_least=at_least,
                issues="15",
            )
            mine = None if ours.error else getattr(ours, metric)
            theirs = None if peer.error else getattr(peer, metric)
            verdicts.append(target.verdict(mine, theirs))
    return verdicts


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "n/a"
    return f"{ours / theirs:.2f}×"
