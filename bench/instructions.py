"""Instructions per event, counted by valgrind: ``python -m bench.instructions``.

CPU time on a shared machine moves by 10-20% from one run to the next, more than most changes
to the per-event path are worth; the number of instructions the interpreter executes for the
same work barely does (cachegrind's ``I refs``: within 0.1% between runs, the hash seed
fixed). This counts them for `bench.costs`' in-process scenarios, so that a change can be
judged by one deterministic A/B instead of many alternated timings, and for a served stream:

* ``event``: building ``SseEvent(data=str, id=str)``;
* ``gen`` / ``stream``: an event from a generator / ``SseStream.send`` to the sink's write;
* ``many``: the same with 500 generator streams at once;
* ``served-gen``, ``served-stream``, ``served-many``: the whole server process (`bench.server`'s
  ``dwex`` kind under valgrind) serving the benchmark's ``/gen`` or ``/stream`` route over
  loopback sockets to `bench.load`, one stream or 500: Hypercorn, h11, our server and the app,
  user space only. These see what the in-process scenarios cannot (the direct write path, a
  producer writing its own events), but they are not deterministic: how events batch into
  writes depends on how fast the client reads, and the same tree moved by up to 8% between
  runs. Compare several alternated runs, not one.

Each scenario runs twice in a fresh interpreter under ``valgrind --tool=cachegrind``, with
``--events`` and three times as many; the difference, divided by the difference in events,
is one event's cost with the start-up left out. ``--against REV`` counts git revision REV too
(its ``src/`` checked out in a temporary worktree, run by this tree's scenarios) and prints
the ratio.

What it does not see: cache misses, branch mispredictions, system calls, the scheduler's
waits. It complements the CPU-time benchmark (``nox -s bench``); it does not replace it.
Needs ``valgrind`` (Debian package ``valgrind``). Diagnostics only; not part of CI's timing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Streams of the ``many`` scenarios (the benchmark's concurrent one has 500).
MANY_STREAMS = 500
#: The in-process scenarios, run by default.
IN_PROCESS = ("event", "gen", "stream", "many")
#: The served scenarios: their route, and how many streams at once.
SERVED = {
    "served-gen": ("/gen", 1),
    "served-stream": ("/stream", 1),
    "served-many": ("/gen", MANY_STREAMS),
}
SCENARIOS = (*IN_PROCESS, *SERVED)

_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
# The total line of a cachegrind output file (its first count is the instructions).
_SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def run_scenario(scenario: str, events: int) -> None:
    """Run ``scenario`` for ``events`` events in this process (the child's side)."""
    from trio_dwex.lowlevel import tune_gc

    from . import costs

    tune_gc()
    if scenario == "event":
        costs.build_events(events)
    elif scenario == "gen":
        costs.stream_from_generator(events, False)
    elif scenario == "stream":
        costs.stream_from_sse_stream(events, False)
    elif scenario == "many":
        costs.many_streams_from_generators(events, MANY_STREAMS)
    else:
        raise ValueError(f"unknown scenario {scenario!r}; the scenarios are {SCENARIOS}")
    # Every event is about 70 bytes: a run that failed quietly must not count as a fast one.
    if scenario != "event" and costs.CountingSink.total_bytes < 60 * events:
        raise SystemExit(
            f"{scenario} wrote {costs.CountingSink.total_bytes} bytes for {events} events"
        )


def count_instructions(src: Path, scenario: str, events: int) -> int:
    """Instructions executed by a fresh interpreter running ``scenario`` with trio_dwex from
    ``src``."""
    command = [
        _valgrind(),
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        scenario,
        str(events),
        str(src),
    ]
    # A fixed hash seed: string hashes decide dict and set layouts, and so some instructions.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(ROOT)]), PYTHONHASHSEED="0")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    found = _I_REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{scenario} under valgrind failed:\n{done.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def count_served(src: Path, scenario: str, events: int) -> int:
    """Instructions executed by a server with trio_dwex from ``src`` that serves ``events``
    events of the ``scenario``'s route, from its start to its end."""
    from . import load

    route, streams = SERVED[scenario]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "cachegrind.out"
        command = [
            _valgrind(),
            "--tool=cachegrind",
            "--cache-sim=no",
            f"--cachegrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.server",
            "dwex",
        ]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(src), str(ROOT)]), PYTHONHASHSEED="0"
        )
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            ready = server.stdout.readline()
            if not ready.startswith("READY "):
                raise RuntimeError(f"{scenario}: the server did not start: {ready!r}")
            each = events // streams
            load.run_streams(int(ready.split()[1]), f"{route}?n={each}", streams, each, 600)
        finally:
            server.send_signal(signal.SIGINT)  # a graceful stop: valgrind writes its counts
            _, errors = server.communicate(timeout=120)
        found = _SUMMARY.search(out.read_text()) if out.exists() else None
        if found is None:
            raise RuntimeError(f"{scenario} under valgrind failed:\n{errors[-3000:]}")
        return int(found.group(1))


def _valgrind() -> str:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("bench.instructions needs valgrind (Debian package 'valgrind')")
    return valgrind


def per_event(src: Path, scenario: str, events: int) -> float:
    """Instructions per event of ``scenario``, start-up excluded."""
    count = count_served if scenario in SERVED else count_instructions
    small = count(src, scenario, events)
    large = count(src, scenario, 3 * events)
    return (large - small) / (2 * events)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("--events", type=int, default=10_000, help="events of the small run")
    parser.add_argument(
        "--scenarios",
        default=",".join(IN_PROCESS),
        help=f"comma-separated, of {SCENARIOS} (default: the in-process ones)",
    )
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument(
        "--child", nargs=3, metavar=("SCENARIO", "EVENTS", "SRC"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        scenario, events, src = args.child
        import trio_dwex

        # The revision counted must be the one imported, not an installed copy.
        if not Path(trio_dwex.__file__).resolve().is_relative_to(Path(src).resolve()):
            raise SystemExit(f"trio_dwex came from {trio_dwex.__file__}, not from {src}")
        run_scenario(scenario, int(events))
        return
    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; the scenarios are {SCENARIOS}")
    if args.events < MANY_STREAMS and {"many", "served-many"} & set(scenarios):
        parser.error(f"--events must be at least {MANY_STREAMS} for the 'many' scenarios")
    with tempfile.TemporaryDirectory() as scratch:
        other = None
        if args.against:
            other = Path(scratch) / "against"
            subprocess.run(
                ["git", "worktree", "add", "--detach", "--quiet", str(other), args.against],
                cwd=ROOT,
                check=True,
            )
        try:
            print_table(scenarios, args.events, args.against, other)
        finally:
            if other is not None:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=True
                )


def print_table(scenarios: list[str], events: int, rev: str | None, other: Path | None) -> None:
    counts = f"{events:,} and {3 * events:,} events"
    print(f"Instructions per event (valgrind cachegrind, I refs), {counts}")
    print()
    if other is None:
        print("| scenario | instructions per event |\n|---|---:|")
    else:
        print(f"| scenario | this tree | {rev} | ratio |\n|---|---:|---:|---:|")
    for scenario in scenarios:
        ours = per_event(ROOT / "src", scenario, events)
        if other is None:
            print(f"| {scenario} | {ours:,.0f} |", flush=True)
        else:
            theirs = per_event(other / "src", scenario, events)
            print(f"| {scenario} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.3f} |", flush=True)


if __name__ == "__main__":
    main()
