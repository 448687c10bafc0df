"""Reliability measurements of issue 6, full size: ``python -m bench.reliability``.

Three experiments, each printed as rows of one table (and, with ``--json FILE``, saved):

1. **Disconnect storm.** 10,000 connect-then-vanish cycles, 200 at a time, half a clean close
   (FIN) and half a reset (RST), first against the guide's streaming routes, then against the
   counting app of ``tests/reliability/apps.py`` (whose generators, ``on_close`` callbacks and
   tasks count their own cleanup). The server runs in this process, so that its open-stream
   count, file descriptors, Trio tasks and RSS are ours to read before and after.
2. **Slow and stalled clients.** 200 clients read a fan-out route (one 2 KiB event every 50 ms
   to every client, stamped with the time it was published) from a server in a subprocess;
   we measure each event's latency, publish to receipt, p50/p99/max, first alone, then with one
   more client that asks for the stream and never reads. The staller must be dropped (by the
   overflow policy or the send timeout; if the measuring window ends first, we keep measuring
   until ``send_timeout`` plus a margin), every normal client must get every event, their p99
   latency with the staller must stay within ``P99_FACTOR`` times the one without it plus
   ``P99_SLACK_MS``, and the server's peak RSS may grow by at most ``RSS_GROWTH_BAR_KIB``.
3. **Shutdown.** 2,000 open streams on ``trio-dwex run`` in a subprocess, then SIGTERM (and, in
   a second run, SIGINT): time from the signal to the process's exit, exit code, cleanups run
   and writes the server dropped because a connection was gone (the app writes its counts at
   exit; both must be 0), and any traceback in its output.

Heavy by design (a few minutes on two cores): CI runs the same checks at a smaller size in
``tests/reliability/``. Run it with nothing else running; ``nox -s reliability`` does.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/reliability.py` as well as `-m bench.reliability`
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GUIDE_TICK", "0.05")

from tests.reliability.apps import Counters, make_app  # noqa: E402
from tests.reliability.support import (  # noqa: E402
    disconnect_storm,
    free_port,
    get,
    open_fd_count,
    open_streams,
    read_to_end,
    rss_kib,
    running_server,
    server_process,
    task_count,
)

from trio_dwex import (  # noqa: E402
    Controller,
    Get,
    Injectable,
    Module,
    Settings,
    Sse,
    SseEvent,
    SseStream,
    StreamSettings,
    create_app,
)

Row = dict[str, Any]

#: Idle streams (one event a minute): what a server holds most of the time, and clients that
#: stop reading after the first event are then no slow clients.
SHUTDOWN_PATHS = ["/t/gen?every=60", "/t/stream?every=60"]

# -- 1. disconnect storm --------------------------------------------------------------------

GUIDE_STREAM_PATHS = [
    "/events/updates",
    "/events/countdown",
    "/events/resumable",
    "/events/notifications",
    "/jobs/progress/storm",
    "/activity/stream",
    "/notifications/stream?userId=user-1",
]
#: Sent with every guide request of the storm: the notification feed is user-1's, behind a
#: bearer token (the other routes ignore it).
GUIDE_STORM_HEADERS = [f"Authorization: Bearer {os.environ.get('GUIDE_TOKEN', 'secret-token')}"]
COUNTED_PATHS = SHUTDOWN_PATHS


async def _settle(app: Any, tasks: int | None) -> None:
    with trio.fail_after(30):
        while app.streams.open_count:  # noqa: ASYNC110 (server-side state, no event to wait on)
            await trio.sleep(0.01)
        while tasks is not None and task_count() > tasks:  # noqa: ASYNC110
            await trio.sleep(0.01)
    gc.collect()


#: The storm server's ``keep_alive_timeout``. A client that resets an idle keep-alive
#: connection (its response complete, as for ``/events/notifications``) is noticed by
#: Hypercorn only when this timer fires, so the connection's socket and tasks outlive the
#: client by up to this long: bounded, not leaked, but the baseline must wait it out.
STORM_KEEP_ALIVE = 1.0


async def storm(
    name: str,
    app: Any,
    paths: list[str],
    cycles: int,
    concurrency: int,
    check: Callable[[], str],
    headers: list[str] | None = None,
) -> Row:
    """One storm against ``app``; ``check`` returns "" when its own cleanup counts are right.

    A cycle leaves once the response headers are in: some guide routes (``/activity/stream``)
    stay silent until something happens, and an open stream is what we want to abandon.
    The warm-up is a fifth of the storm: the heap's high-water mark of the first thousands of
    cycles is not a leak (a second storm after it grows RSS by well under 1 MiB).
    """
    marker = b"\r\n\r\n"
    async with running_server(app, keep_alive_timeout=STORM_KEEP_ALIVE) as port:
        with trio.fail_after(600):
            warm_up = max(concurrency, cycles // 5)
            await disconnect_storm(
                port,
                paths,
                cycles=warm_up,
                concurrency=concurrency,
                marker=marker,
                headers=headers or (),
            )
        await _settle(app, None)
        await trio.sleep(STORM_KEEP_ALIVE + 0.5)
        gc.collect()
        fds, tasks, rss = open_fd_count(), task_count(), rss_kib()
        opened = app.streams.opened
        started = time.perf_counter()
        with trio.fail_after(1200):
            done = await disconnect_storm(
                port,
                paths,
                cycles=cycles,
                concurrency=concurrency,
                marker=marker,
                headers=headers or (),
            )
        elapsed = time.perf_counter() - started
        await _settle(app, tasks)
        await trio.sleep(STORM_KEEP_ALIVE + 0.5)
        gc.collect()
        fds_after, tasks_after = open_fd_count(), task_count()
        row = {
            "experiment": f"disconnect storm: {name}",
            "cycles": cycles,
            "fin": done["fin"],
            "rst": done["rst"],
            "concurrency": concurrency,
            "warm_up_cycles": warm_up,
            "seconds": round(elapsed, 2),
            "cycles_per_s": round(cycles / elapsed),
            "opened": app.streams.opened - opened,
            "open_after": app.streams.open_count,
            "closed_total_equals_opened": sum(app.streams.closed.values()) == app.streams.opened,
            "fds": f"{fds} -> {fds_after}",
            "tasks": f"{tasks} -> {tasks_after}",
            "rss_growth_kib": rss_kib() - rss,
            "cleanup_problem": check(),
        }
    row["ok"] = (
        row["open_after"] == 0
        and row["opened"] == cycles
        and row["closed_total_equals_opened"]
        and fds_after == fds
        and tasks_after == tasks
        and row["rss_growth_kib"] < 10 * 1024
        and not row["cleanup_problem"]
    )
    return row


async def storms(cycles: int, concurrency: int) -> list[Row]:
    from examples import guide

    def guide_check() -> str:
        activity = guide.app.plan.container.get(guide.ActivityService)
        notes = guide.app.plan.container.get(guide.NotificationService)
        problems = []
        if activity.listener_count:
            problems.append(f"{activity.listener_count} activity listeners left (on_close)")
        if notes.subscriber_count("user-1"):
            problems.append("notification subscriptions left (generator finally)")
        return "; ".join(problems)

    counters = Counters()

    def counted_check() -> str:
        c = counters
        if c.generators_finally != c.generators_started:
            return f"finally ran {c.generators_finally} of {c.generators_started}"
        if c.streams_on_close != c.streams_started or c.tasks_cancelled != c.streams_started:
            return (
                f"on_close {c.streams_on_close}, cancelled {c.tasks_cancelled} "
                f"of {c.streams_started}"
            )
        return ""

    guide_row = await storm(
        "guide routes",
        guide.app,
        GUIDE_STREAM_PATHS,
        cycles,
        concurrency,
        guide_check,
        GUIDE_STORM_HEADERS,
    )
    counted_row = await storm(
        "counting app", make_app(counters), COUNTED_PATHS, cycles, concurrency, counted_check
    )
    counted_row["finally_and_on_close_ran"] = counters.cleanups
    return [guide_row, counted_row]


# -- 2. slow and stalled clients ------------------------------------------------------------

FANOUT_INTERVAL = 0.05
FANOUT_PAYLOAD = "x" * 2048
FANOUT_SETTINGS = StreamSettings(keepalive=5.0, send_timeout=3.0, buffer_size=32)
#: Seconds past ``send_timeout`` that we keep waiting for the staller to be dropped when the
#: measuring window (``--seconds``) ends before that: a short window is no failure.
STALLER_DROP_MARGIN = 2.0
#: The bars of the slow-client rows: p99 latency with the staller at most this many times
#: the p99 without it, plus this many milliseconds (scheduling noise on a small machine) ...
P99_FACTOR = 2.0
P99_SLACK_MS = 5.0
#: ... and the server's RSS, from the start of the window to its peak, grows by at most this.
RSS_GROWTH_BAR_KIB = 4 * 1024


@Injectable()
class Hub:
    """Publishes one stamped event to every subscriber every ``FANOUT_INTERVAL`` seconds.

    An async context manager, so its publisher task lives in the app's lifespan nursery.
    """

    def __init__(self) -> None:
        self.subscribers: set[SseStream] = set()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Hub:
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(self._publish)
        self._nursery = nursery
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._nursery.cancel_scope.cancel()
        return await self._stack.__aexit__(kind, exc, tb)

    async def _publish(self) -> None:
        seq = 0
        while True:
            await trio.sleep(FANOUT_INTERVAL)
            seq += 1
            data = f'{{"t":{time.time():.6f},"seq":{seq},"pad":"{FANOUT_PAYLOAD}"}}'
            event = SseEvent(data=data, id=str(seq))
            for stream in list(self.subscribers):
                stream.send_nowait(event)  # a full buffer closes that stream (policy CLOSE)


@Controller("fanout")
class FanoutController:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @Sse()
    def subscribe(self) -> SseStream:
        stream = SseStream(buffer_size=FANOUT_SETTINGS.buffer_size)
        self.hub.subscribers.add(stream)
        stream.on_close(lambda: self.hub.subscribers.discard(stream))
        stream.send_nowait(SseEvent(comment="subscribed"))
        return stream

    @Get("stats")
    def stats(self) -> dict[str, Any]:
        return {**fanout_app.stats(), "subscribers": len(self.hub.subscribers)}


@Module(controllers=[FanoutController], providers=[Hub])
class FanoutModule:
    pass


fanout_app = create_app(FanoutModule, settings=Settings(streams=FANOUT_SETTINGS))

_STAMP = re.compile(rb'data: \{"t":([0-9.]+),"seq":([0-9]+),')


async def _fanout_client(
    port: int, latencies: list[float], seqs: list[int], ready: trio.Event, stop: trio.Event
) -> None:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(get("/fanout"))
        pending = b""
        first = True
        while not stop.is_set():
            data = await sock.recv(262144)
            now = time.time()
            if not data:
                raise RuntimeError("a normal client was disconnected")
            if first:
                first = False
                ready.set()
            pending += data
            end = pending.rfind(b"\n")
            for match in _STAMP.finditer(pending, 0, end + 1):
                latencies.append(now - float(match[1]))
                seqs.append(int(match[2]))
            pending = pending[end + 1 :]


def _proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


async def _stats(port: int) -> dict[str, Any]:
    with trio.socket.socket() as sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(get("/fanout/stats", "Connection: close"))
        raw = b""
        while data := await sock.recv(65536):
            raw += data
    return json.loads(raw.partition(b"\r\n\r\n")[2])  # type: ignore[no-any-return]


async def fanout_run(clients: int, seconds: float, *, staller: bool) -> Row:
    port = free_port()
    with server_process("bench.reliability:fanout_app", port, "--log-level", "warning") as process:
        latencies: list[list[float]] = [[] for _ in range(clients)]
        seqs: list[list[int]] = [[] for _ in range(clients)]
        stop = trio.Event()
        stall_sock = None
        dropped_after = None
        async with trio.open_nursery() as nursery:
            readies = [trio.Event() for _ in range(clients)]
            for index in range(clients):
                nursery.start_soon(
                    _fanout_client, port, latencies[index], seqs[index], readies[index], stop
                )
            for ready in readies:
                await ready.wait()
            await trio.sleep(1.0)  # let every client settle in before measuring
            for samples in latencies:
                samples.clear()
            for seen in seqs:
                seen.clear()
            rss_before = _proc_rss_kib(process.pid)
            started = time.monotonic()
            if staller:
                stall_sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                stall_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                await stall_sock.connect(("127.0.0.1", port))
                await stall_sock.send(get("/fanout"))
            rss_peak = rss_before
            # The window, then (with a staller not dropped yet) until the send timeout plus a
            # margin: the staller's drop is part of the result, whatever ``seconds`` is.
            drop_deadline = FANOUT_SETTINGS.send_timeout + STALLER_DROP_MARGIN
            while (elapsed := time.monotonic() - started) < seconds or (
                staller and dropped_after is None and elapsed < drop_deadline
            ):
                await trio.sleep(0.25)
                rss_peak = max(rss_peak, _proc_rss_kib(process.pid))
                if staller and dropped_after is None:
                    stats = await _stats(port)
                    closed = stats["closed"]
                    if closed["overflow"] + closed["slow_client"] >= 1:
                        dropped_after = round(time.monotonic() - started, 2)
            measured = time.monotonic() - started
            stats = await _stats(port)
            stop.set()
            nursery.cancel_scope.cancel()
        if stall_sock is not None:
            stall_sock.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    every = sorted(value for samples in latencies for value in samples)
    gaps = 0
    for seen in seqs:
        if seen:
            gaps += (seen[-1] - seen[0] + 1) - len(set(seen))
    rss_growth = rss_peak - rss_before
    return {
        "experiment": "fan-out with a staller" if staller else "fan-out, no staller",
        "clients": clients,
        "measured_s": round(measured, 2),
        "events_per_s_per_client": round(1 / FANOUT_INTERVAL),
        "event_bytes": len(FANOUT_PAYLOAD) + 40,
        "samples": len(every),
        "p50_ms": round(statistics.median(every) * 1000, 2),
        "p99_ms": round(every[int(len(every) * 0.99)] * 1000, 2),
        "max_ms": round(every[-1] * 1000, 2),
        "events_lost_by_normal_clients": gaps,
        "staller_dropped_after_s": dropped_after,
        "closed": {k: v for k, v in stats["closed"].items() if v},
        "server_rss_kib": f"{rss_before} -> peak {rss_peak}",
        "server_rss_growth_kib": rss_growth,
        "ok": (
            gaps == 0
            and rss_growth <= RSS_GROWTH_BAR_KIB
            and (not staller or dropped_after is not None)
        ),
    }


def judge_staller(alone: Row, with_staller: Row) -> None:
    """The staller's row fails if the others' p99 latency got much worse than without it."""
    bar = round(alone["p99_ms"] * P99_FACTOR + P99_SLACK_MS, 2)
    with_staller["p99_bar_ms"] = bar
    with_staller["ok"] = with_staller["ok"] and with_staller["p99_ms"] <= bar


# -- 3. shutdown ----------------------------------------------------------------------------


async def shutdown_run(signum: signal.Signals, streams: int, graceful: float) -> Row:
    import tempfile

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        with server_process(
            "tests.reliability.shutdown_app:app",
            port,
            "--graceful-timeout",
            str(graceful),
            env={"RELIABILITY_REPORT": str(report)},
        ) as process:
            socks = await open_streams(port, SHUTDOWN_PATHS, streams, concurrency=200)
            signalled = time.monotonic()
            process.send_signal(signum)
            tails: list[bytes] = []
            async with trio.open_nursery() as nursery:

                async def read(sock: trio.socket.SocketType) -> None:
                    try:
                        tails.append(await read_to_end(sock, graceful))
                    except (trio.TooSlowError, OSError):
                        tails.append(b"<not ended>")

                for sock in socks:
                    nursery.start_soon(read, sock)
            clients_done = time.monotonic() - signalled
            code = await trio.to_thread.run_sync(process.wait, graceful + 10)
            exited = time.monotonic() - signalled
            output = process.stdout.read().decode() if process.stdout else ""
        counts = json.loads(report.read_text()) if report.exists() else {}
    ended = sum(1 for t in tails if t == b"0\r\n\r\n" or t.endswith(b"\n\n\r\n0\r\n\r\n"))
    stats = counts.get("stats", {})
    dropped = counts.get("dropped_writes")
    cleanups = counts.get("generators_finally", 0) + counts.get("streams_on_close", 0)
    row = {
        "experiment": f"shutdown on {signum.name}",
        "open_streams": streams,
        "graceful_timeout_s": graceful,
        "all_clients_ended_s": round(clients_done, 3),
        "process_exited_s": round(exited, 3),
        "exit_code": code,
        "responses_ended_cleanly": ended,
        "closed_by_shutdown": stats.get("closed", {}).get("shutdown"),
        "cleanups_run": cleanups,
        "writes_dropped_closed_socket": dropped["closed"] if dropped else None,
        "writes_dropped_client_gone": dropped["broken"] if dropped else None,
        "traceback_in_output": "Traceback" in output,
    }
    row["ok"] = (
        code == 0
        and exited < graceful / 2
        and ended == streams
        and row["closed_by_shutdown"] == streams
        and cleanups == streams
        and dropped == {"closed": 0, "broken": 0}
        and not row["traceback_in_output"]
    )
    return row


# -- main -----------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}, trio {trio.__version__}, "
        f"Hypercorn {importlib.metadata.version('hypercorn')}"
    )


def print_row(row: Row) -> None:
    mark = "ok  " if row.get("ok") else "FAIL"
    details = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("experiment", "ok"))
    print(f"| {mark} | {row['experiment']:<28} | {details} |", flush=True)


async def main(options: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    print(f"machine: {machine()}", flush=True)
    if "storm" in options.only:
        for row in await storms(options.cycles, options.concurrency):
            print_row(row)
            rows.append(row)
    if "slow" in options.only:
        alone = await fanout_run(options.clients, options.seconds, staller=False)
        print_row(alone)
        with_staller = await fanout_run(options.clients, options.seconds, staller=True)
        judge_staller(alone, with_staller)
        print_row(with_staller)
        rows += [alone, with_staller]
    if "shutdown" in options.only:
        for signum in (signal.SIGTERM, signal.SIGINT):
            row = await shutdown_run(signum, options.streams, options.graceful_timeout)
            print_row(row)
            rows.append(row)
    return rows


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--cycles", type=int, default=10_000, help="storm cycles (10000)")
    parser.add_argument("--concurrency", type=int, default=200, help="storm concurrency (200)")
    parser.add_argument("--clients", type=int, default=200, help="fan-out clients (200)")
    parser.add_argument("--seconds", type=float, default=8.0, help="fan-out measuring time (8)")
    parser.add_argument("--streams", type=int, default=2000, help="streams at shutdown (2000)")
    parser.add_argument("--graceful-timeout", type=float, default=10.0, help="(10 s)")
    parser.add_argument(
        "--only", nargs="+", default=["storm", "slow", "shutdown"], help="storm slow shutdown"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    options = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = trio.run(main, options)
    if options.json:
        options.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    return 0 if all(row.get("ok") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(cli())
