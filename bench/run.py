"""Run the benchmark and print one table: ``python -m bench [--quick | --smoke] [--reps N]``.

Each row's server runs in a fresh process of its own (``bench/server.py``), pinned to one core;
this process is the load generator, pinned to the other. For every row, in this order:

* **idle**: N streams opened (each until its first event parsed) and held; the server's RSS
  delta divided by N is the memory per idle stream;
* **first event**: one connection at a time, connect → first event parsed, p50 and p99;
* **one stream**: one stream of many events, as fast as the source makes them;
* **concurrent**: many streams at once, aggregate events per second;
* **sparse**: one stream whose source sleeps 0.2 ms between events, so that nothing can be
  coalesced: the cost of one event per write (timer wake-ups included, on every row alike).

Server CPU time is read from ``/proc/PID/task/*/schedstat`` (nanoseconds; ``/proc/PID/stat``
ticks where that is missing) before and after each scenario, once the server is quiet, and
divided by the events the load generator parsed and checked. On a shared machine wall-clock
numbers are noisy; CPU per event and the ratios of rows measured side by side are what the
targets are about. Full mode takes the median of three runs.

Under the table, each target of issues 7 and 15 with its ratio and PASS or FAIL; then the
sparse column split at the producers' timer: each repetition also times the sparse source's
``sleep(0.0002)`` alone on each loop a row sleeps on (`bench.timers`, on the servers' core),
and the split shows what each server adds to its sleep.

After the table, the fan-out scenario of ``bench/fanout.py`` (one publisher, many subscribers of
a `trio_dwex.broadcast.Broadcast` topic, in memory and through a redis-server it starts)
prints a second table, with issue 15's fan-out targets under it; ``--fanout`` picks its backends,
``--fanout-only`` skips the main table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import fanout, load, timers
from .apps import SPARSE_GAP

ROOT = Path(__file__).resolve().parent.parent


# -- what to run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    reps: int
    single: int  # events in the one-stream scenario
    streams: int  # concurrent streams ...
    per_stream: int  # ... of this many events each
    sparse: int  # events of the sparse stream
    idle: int  # idle streams held at once
    samples: int  # first-event samples
    timeout: float  # per scenario


MODES = {
    "full": Mode("full", 3, 100_000, 500, 2_000, 10_000, 5_000, 300, 600.0),
    "quick": Mode("quick", 1, 5_000, 20, 200, 2_000, 200, 50, 30.0),
    # The smoke test's slice: every row and scenario, tiny counts.
    "smoke": Mode("smoke", 1, 1_000, 5, 100, 300, 50, 20, 20.0),
}


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    kind: str  # a bench.server kind
    path: str
    idle_path: str = "/idle"
    scenarios: tuple[str, ...] = ("idle", "latency", "single", "concurrent", "sparse")
    #: The loop whose sleep comes before each event of the sparse source (None: not each).
    timer: timers.Loop | None = "trio"


GEN = Row("dwex-gen", "trio-dwex, async generator route", "dwex", "/gen")
STREAM = Row(
    "dwex-stream", "trio-dwex, SseStream route", "dwex", "/stream", idle_path="/idle-stream"
)
STARLETTE = Row(
    "sse-starlette", "sse-starlette on uvicorn (h11)", "sse-starlette", "/gen", timer="asyncio"
)
RAW1 = Row("raw1", "raw ASGI on Hypercorn-Trio, 1 send per event (floor)", "raw1", "/gen")
RAW64 = Row("raw64", "raw ASGI on Hypercorn-Trio, 64 events per send", "raw64", "/gen", timer=None)
MAIN_ROWS = (GEN, STREAM, STARLETTE, RAW1, RAW64)

EXTRA_ROWS = (
    Row(
        "raw1-on-dwex", "raw ASGI, 1 send per event, on trio-dwex's serve()", "raw1-on-dwex", "/gen"
    ),
    Row(
        "dwex-gen-on-hypercorn",
        "trio-dwex generator route on plain hypercorn.trio.serve",
        "dwex-on-hypercorn",
        "/gen",
    ),
    Row("json-stdlib", "trio-dwex, dict data, stdlib json", "dwex", "/json", scenarios=("single",)),
    Row(
        "json-orjson", "trio-dwex, dict data, orjson", "dwex-orjson", "/json", scenarios=("single",)
    ),
    Row(
        "raw1-hypercorn-asyncio",
        "raw ASGI, 1 send per event, on Hypercorn's asyncio worker",
        "raw1-hypercorn-asyncio",
        "/gen",
        timer="asyncio",
    ),
)

# -- measuring a process -------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` (user + system)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        if total:
            return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_quiet(pid: int, limit: float = 5.0) -> None:
    """Wait until the server uses (almost) no CPU: the previous scenario's tail is done."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = cpu_seconds(pid)
        if now - last < 0.001:
            return
        last = now


class Server:
    """A server process: started fresh for one row, always stopped (by PID) in ``stop``."""

    def __init__(self, kind: str, cpu: int | None, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "bench.server", kind]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path, **(env or {}))
        self.kind = kind
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        try:
            self.port = self._wait_ready(30.0)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> int:
        import selectors

        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise RuntimeError(f"server {self.kind} not ready after {timeout}s")
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            exited = self.proc.stderr is not None and self.proc.poll() is not None
            err = self.proc.stderr.read() if exited and self.proc.stderr else ""
            raise RuntimeError(f"server {self.kind} failed to start: {line!r} {err[-2000:]}")
        return int(line.split()[1])

    def stop(self) -> str:
        """Terminate, then kill after 5 s; return the tail of its stderr (for errors)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return err[-4000:]


# -- scenarios -----------------------------------------------------------------------------------


@dataclass
class Result:
    """One row's measurements in one repetition (``None``: not measured)."""

    single_cpu_us: float | None = None
    single_eps: float | None = None
    conc_cpu_us: float | None = None
    conc_eps: float | None = None
    sparse_cpu_us: float | None = None
    idle_kib: float | None = None
    first_p50_ms: float | None = None
    first_p99_ms: float | None = None
    events: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure_events(
    server: Server,
    row_path: str,
    streams: int,
    per_stream: int,
    mode: Mode,
    *,
    sparse: bool = False,
) -> tuple[float, float, int]:
    """(server CPU-µs per event, events per second, events) for ``streams`` × ``per_stream``."""
    path = f"{row_path}?n={per_stream}" + ("&sparse=1" if sparse else "")
    wait_quiet(server.pid)
    before = cpu_seconds(server.pid)
    result = load.run_streams(server.port, path, streams, per_stream, mode.timeout)
    wait_quiet(server.pid)
    used = cpu_seconds(server.pid) - before
    return used / result.events * 1e6, result.events / result.wall, result.events


def run_row(row: Row, mode: Mode, cpu: int | None) -> Result:
    result = Result()
    server = Server(row.kind, cpu)
    try:
        # Warm up: imports, first-request paths, the allocator's arenas.
        load.run_streams(server.port, f"{row.path}?n=100", 2, 100, mode.timeout)
        load.close_all(load.open_idle(server.port, row.idle_path, 20, mode.timeout))
        if "idle" in row.scenarios:
            wait_quiet(server.pid)
            before = rss_kib(server.pid)
            conns = load.open_idle(server.port, row.idle_path, mode.idle, mode.timeout)
            try:
                wait_quiet(server.pid)
                result.idle_kib = (rss_kib(server.pid) - before) / mode.idle
            finally:
                load.close_all(conns)
        if "latency" in row.scenarios:
            wait_quiet(server.pid)
            latencies = load.first_event(server.port, f"{row.path}?n=1", mode.samples, mode.timeout)
            result.first_p50_ms = percentile(latencies, 0.50) * 1e3
            result.first_p99_ms = percentile(latencies, 0.99) * 1e3
        if "single" in row.scenarios:
            result.single_cpu_us, result.single_eps, n = measure_events(
                server, row.path, 1, mode.single, mode
            )
            result.events += n
        if "concurrent" in row.scenarios:
            result.conc_cpu_us, result.conc_eps, n = measure_events(
                server, row.path, mode.streams, mode.per_stream, mode
            )
            result.events += n
        if "sparse" in row.scenarios:
            result.sparse_cpu_us, _, n = measure_events(
                server, row.path, 1, mode.sparse, mode, sparse=True
            )
            result.events += n
    except (load.BrokenServer, TimeoutError, OSError, RuntimeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        stderr = server.stop()
    if result.error and stderr.strip():
        result.notes.append(stderr.strip().splitlines()[-1][:300])
    return result


# -- the report ----------------------------------------------------------------------------------

METRICS = (
    "single_cpu_us",
    "single_eps",
    "conc_cpu_us",
    "conc_eps",
    "sparse_cpu_us",
    "idle_kib",
    "first_p50_ms",
    "first_p99_ms",
)


def median_result(results: list[Result]) -> Result:
    """The median of each metric over the repetitions; any error makes the row not score."""
    merged = Result(events=sum(r.events for r in results))
    errors = [r.error for r in results if r.error]
    if errors:
        merged.error = errors[0]
        merged.notes = [n for r in results for n in r.notes]
        return merged
    for name in METRICS:
        values = [getattr(r, name) for r in results if getattr(r, name) is not None]
        setattr(merged, name, statistics.median(values) if values else None)
    return merged


@dataclass(frozen=True)
class Target:
    name: str
    ours: tuple[str, str]  # (row key, metric)
    theirs: tuple[str, str]
    limit: float
    at_least: bool = False  # True: the ratio must be >= limit
    issues: str = "7"  # the issues that set this limit

    def verdict(self, ours: float | None, theirs: float | None) -> dict[str, Any]:
        """This target's line of the report, from the two measured values."""
        ratio = ours / theirs if ours is not None and theirs else None
        if ratio is None:
            status = "FAIL (not measured)"
        else:
            ok = ratio >= self.limit if self.at_least else ratio <= self.limit
            status = "PASS" if ok else "FAIL"
        limit = f"{'≥' if self.at_least else '≤'} {self.limit:g}"
        return {
            "target": self.name,
            "issues": self.issues,
            "ratio": ratio,
            "limit": limit,
            "status": status,
        }


def _per_route(
    what: str, metric: str, yardstick: str, limit: float, **options: Any
) -> tuple[Target, Target]:
    """The same target for both of our routes: ``metric`` of each over ``yardstick``'s row."""
    theirs = (yardstick, metric)
    return (
        Target(f"{what}: generator route", ("dwex-gen", metric), theirs, limit, **options),
        Target(f"{what}: SseStream route", ("dwex-stream", metric), theirs, limit, **options),
    )


TARGETS = (
    # Issue 15 keeps issue 7's limits for bursts ("keep today's lead").
    *_per_route(
        "CPU/event, 1 stream / sse-starlette",
        "single_cpu_us",
        "sse-starlette",
        0.15,
        issues="7, 15",
    ),
    *_per_route(
        "CPU/event, concurrent / sse-starlette",
        "conc_cpu_us",
        "sse-starlette",
        0.15,
        issues="7, 15",
    ),
    *_per_route(
        "events/s, concurrent / sse-starlette", "conc_eps", "sse-starlette", 5.0, at_least=True
    ),
    *_per_route("sparse CPU/event / raw floor", "sparse_cpu_us", "raw1", 1.15),
    *_per_route(
        "sparse CPU/event / sse-starlette", "sparse_cpu_us", "sse-starlette", 0.6, issues="15"
    ),
    *_per_route(
        "KiB per idle stream / raw floor", "idle_kib", "raw1", 1.3, issues="7, 15 (stretch)"
    ),
    *_per_route(
        "KiB per idle stream / sse-starlette", "idle_kib", "sse-starlette", 0.7, issues="15"
    ),
    *_per_route("first event p99 / raw floor", "first_p99_ms", "raw1", 1.3),
)


def evaluate(results: dict[str, Result]) -> list[dict[str, Any]]:
    def value(key: tuple[str, str]) -> float | None:
        row = results.get(key[0])
        return None if row is None or row.error else getattr(row, key[1])

    return [target.verdict(value(target.ours), value(target.theirs)) for target in TARGETS]


def render_verdicts(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | issues | ratio | limit | status |", "|---|---|---:|---:|---|"]
    for v in verdicts:
        lines.append(
            f"| {v['target']} | {v['issues']} | {fmt(v['ratio'], '.3f')} | {v['limit']} "
            f"| {v['status']} |"
        )
    return lines


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render(
    rows: list[Row],
    results: dict[str, Result],
    mode: Mode,
    verdicts: list[dict[str, Any]],
    server_note: str,
) -> str:
    lines = [
        f"trio-dwex benchmark, {mode.name} mode, median of {mode.reps}; server: {server_note}",
        "",
        f"| server | CPU-µs/event, 1 stream × {mode.single:,} | events/s, 1 stream "
        f"| CPU-µs/event, {mode.streams} × {mode.per_stream:,} | events/s, {mode.streams} streams "
        f"| CPU-µs/event, sparse | KiB per idle stream at {mode.idle:,} "
        "| first event p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = results[row.key]
        if r.error:
            lines.append(f"| {row.label} | BROKEN: {r.error} | | | | | | |")
            continue
        first = "—" if r.first_p50_ms is None else f"{r.first_p50_ms:.2f} / {r.first_p99_ms:.2f}"
        lines.append(
            f"| {row.label} | {fmt(r.single_cpu_us, '.2f')} | {fmt(r.single_eps, ',.0f')} "
            f"| {fmt(r.conc_cpu_us, '.2f')} | {fmt(r.conc_eps, ',.0f')} "
            f"| {fmt(r.sparse_cpu_us, '.2f')} | {fmt(r.idle_kib, '.1f')} | {first} |"
        )
    return "\n".join([*lines, "", *render_verdicts(verdicts)])


def measure_timers(rows: list[Row], mode: Mode, cpu: int | None) -> dict[str, float]:
    """CPU-µs per wake-up of the sparse source's sleep alone, on each loop a sparse row uses."""
    loops = sorted({row.timer for row in rows if row.timer and "sparse" in row.scenarios})
    return {loop: timers.timer_cpu_us(loop, mode.sparse, SPARSE_GAP, cpu=cpu) for loop in loops}


def render_sparse_split(
    rows: list[Row], results: dict[str, Result], timer_us: dict[str, float]
) -> str:
    """The sparse column split at the producer's timer: what issue 15's sparse limit leaves."""
    lines = [
        f"sparse, split at the producer's sleep({SPARSE_GAP:g}) (CPU-µs per event; the sleep "
        "measured alone in a fresh process on the servers' core, python -m bench.timers)",
        "",
        "| server | per event | its sleep alone | the rest |",
        "|---|---:|---:|---:|",
    ]
    rest: dict[str, float] = {}
    for row in rows:
        per_event = results[row.key].sparse_cpu_us
        timer = None if row.timer is None else timer_us.get(row.timer)
        if per_event is None or timer is None or results[row.key].error:
            continue
        rest[row.key] = per_event - timer
        lines.append(
            f"| {row.label} | {per_event:.1f} | {timer:.1f} ({row.timer}) | {rest[row.key]:.1f} |"
        )
    peer = results.get("sse-starlette")
    if peer is None or peer.sparse_cpu_us is None or "sse-starlette" not in rest:
        return "\n".join(lines)
    limit = 0.6 * peer.sparse_cpu_us
    lines.append("")
    for key in ("dwex-gen", "dwex-stream"):
        if key in rest:
            lines.append(
                f"- {key}: the rest is {rest[key] / rest['sse-starlette']:.2f}× of "
                "sse-starlette's rest"
            )
    trio_timer = timer_us.get("trio")
    if trio_timer is not None:
        lines.append(
            f"- issue 15's limit, 0.6× of sse-starlette's event, is {limit:.1f} µs; Trio's "
            f"sleep alone costs {trio_timer:.1f} of it, leaving {limit - trio_timer:.1f} µs for "
            "the framework, the server and the write"
        )
    return "\n".join(lines)


def server_note() -> str:
    from .server import dwex_serve

    if dwex_serve() is None:
        return "trio-dwex rows on plain hypercorn.trio.serve (trio-dwex's serve() not found)"
    return "trio-dwex rows on trio-dwex's serve() (Hypercorn Trio worker + connection fixes)"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in (
        "trio",
        "hypercorn",
        "h11",
        "uvicorn",
        "uvloop",
        "httptools",
        "sse-starlette",
        "starlette",
        "trio-dwex",
        "orjson",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model}


def _fanout_runs(
    backends: list[str], mode: fanout.FanoutMode, reps: int, cpu: int | None, label: str
) -> dict[str, list[fanout.FanoutResult]]:
    """``reps`` runs of each fan-out backend, side by side, each reported as it ends."""
    runs: dict[str, list[fanout.FanoutResult]] = {backend: [] for backend in backends}
    for rep in range(reps):
        for backend in backends:
            t0 = time.monotonic()
            one = fanout.run_fanout(backend, mode, cpu)
            runs[backend].append(one)
            status = one.error or f"{one.deliveries:,} deliveries"
            print(
                f"[rep {rep + 1}/{reps}] {label}fanout-{backend}: {status} "
                f"({time.monotonic() - t0:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="tiny counts, one run (< 60 s)")
    group.add_argument("--smoke", action="store_true", help="the smallest slice (the smoke test)")
    parser.add_argument("--reps", type=int, help="runs per row (default: 3 full, 1 quick)")
    parser.add_argument(
        "--extra",
        action="store_true",
        help="also the diagnostic rows: the floor on our serve(), our app on "
        "plain Hypercorn, and stdlib json vs orjson",
    )
    parser.add_argument("--only", help="comma-separated row keys to run")
    parser.add_argument(
        "--scenarios",
        help="comma-separated scenarios to measure in each row (idle, latency, single, "
        "concurrent, sparse; default: each row's own)",
    )
    parser.add_argument(
        "--fanout",
        default="memory,redis,sse-starlette,sse-starlette-standard",
        help="fan-out backends measured after the main table (bench/fanout.py): "
        "comma-separated among memory,redis,sse-starlette (the peer), or 'none' "
        "(default: all three)",
    )
    parser.add_argument(
        "--fanout-only", action="store_true", help="only the fan-out table, not the main one"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.reps:
        mode = Mode(**{**asdict(mode), "reps": args.reps})
    rows = list(MAIN_ROWS) + (list(EXTRA_ROWS) if args.extra else [])
    if args.only:
        keys = set(args.only.split(","))
        rows = [row for row in rows if row.key in keys]
    if args.scenarios:
        wanted = args.scenarios.split(",")
        unknown_scenarios = set(wanted) - set(Row.scenarios)
        if unknown_scenarios:
            parser.error(f"--scenarios: unknown scenario(s) {', '.join(sorted(unknown_scenarios))}")
        rows = [
            replace(row, scenarios=tuple(s for s in row.scenarios if s in wanted)) for row in rows
        ]
    if args.fanout_only:
        rows = []
    backends = [] if args.fanout == "none" else [b for b in args.fanout.split(",") if b]
    unknown = set(backends) - set(fanout.BACKENDS)
    if unknown:
        parser.error(f"--fanout: unknown backend(s) {', '.join(sorted(unknown))}")

    # The load generator on core 0, every server on core 1 (where there are two).
    server_cpu = None
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
        server_cpu = 1
    from .server import raise_fd_limit

    raise_fd_limit()

    runs: dict[str, list[Result]] = {row.key: [] for row in rows}
    timer_runs: dict[str, list[float]] = {}
    started = time.monotonic()
    for rep in range(mode.reps):
        for row in rows:  # side by side: every row once per repetition
            t0 = time.monotonic()
            result = run_row(row, mode, server_cpu)
            runs[row.key].append(result)
            status = result.error or f"{result.events:,} events"
            print(
                f"[rep {rep + 1}/{mode.reps}] {row.key}: {status} ({time.monotonic() - t0:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
        for loop, cpu_us in measure_timers(rows, mode, server_cpu).items():
            timer_runs.setdefault(loop, []).append(cpu_us)
    results = {key: median_result(value) for key, value in runs.items()}
    timer_us = {loop: statistics.median(values) for loop, values in timer_runs.items()}
    verdicts = evaluate(results)
    note = server_note()
    if rows:
        print(render(rows, results, mode, verdicts, note))
    if timer_us:
        print("\n" + render_sparse_split(rows, results, timer_us))

    fanout_runs = _fanout_runs(backends, fanout.FANOUT_MODES[mode.name], mode.reps, server_cpu, "")
    fanout_results = [fanout.median(fanout_runs[b]) for b in backends]
    fanout_verdicts = fanout.evaluate(fanout_results)
    if fanout_results:
        print(("\n" if rows else "") + fanout.render(fanout_results, mode.name, mode.reps))
    if fanout_verdicts:
        print("\n" + "\n".join(render_verdicts(fanout_verdicts)))
    # The burst again, paced (its latencies without a backlog), and many mostly idle
    # subscribers getting one event a second.
    others: dict[str, list[fanout.FanoutResult]] = {}
    for label, modes in (("paced", fanout.PACED_MODES), ("sparse", fanout.SPARSE_MODES)):
        other = modes[mode.name]
        other_runs = _fanout_runs(backends, other, mode.reps, server_cpu, f"{label} ")
        others[label] = [fanout.median(other_runs[b]) for b in backends]
        if others[label]:
            print("\n" + fanout.render(others[label], mode.name, mode.reps, other.gap))
    print(f"\n{machine()}  {versions()}  total {time.monotonic() - started:.0f}s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "mode": asdict(mode),
                    "server": note,
                    "machine": machine(),
                    "versions": versions(),
                    "rows": {
                        row.key: {"label": row.label, **asdict(results[row.key])} for row in rows
                    },
                    "runs": {key: [asdict(r) for r in value] for key, value in runs.items()},
                    "targets": verdicts + fanout_verdicts,
                    "sparse_timer_cpu_us": timer_us,
                    "sparse_timer_runs": timer_runs,
                    "fanout": {r.backend: asdict(r) for r in fanout_results},
                    "fanout_paced": {r.backend: asdict(r) for r in others["paced"]},
                    "fanout_sparse": {r.backend: asdict(r) for r in others["sparse"]},
                    "fanout_runs": {b: [asdict(r) for r in v] for b, v in fanout_runs.items()},
                },
                indent=2,
            )
        )
    # A backend that could not run here (no coredis, no redis-server) is reported, not failed.
    broken_fanout = any(r.error and not r.error.startswith("not measured") for r in fanout_results)
    return 1 if any(r.error for r in results.values()) or broken_fanout else 0


if __name__ == "__main__":
    sys.exit(main())
