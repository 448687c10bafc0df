"""Where a server's time per send goes: ``python -m bench.profile KIND [--events N]``.

Starts one server of `bench.server` (pinned like the benchmark), streams ``--events`` events
from ``/gen`` (one per send for the ``raw1`` kinds), and reports:

* the syscalls per event, from ``strace -c -f`` (where strace is installed): on Hypercorn's
  Trio worker every send costs one ``sendto`` and two ``epoll_wait`` — one pass of Trio's
  scheduler per schedule point;
* with ``--py-spy``, a sampling profile (py-spy, ``pip install py-spy``) folded into the
  inclusive share of each function, so the Hypercorn layers can be read top-down, and the
  functions with the most samples of their own (time in a syscall counts as its caller's).

``python -m bench.profile fanout-memory --fanout --py-spy`` profiles the fan-out burst
(1,000 subscribers x 300 events, `bench.fanout`) instead of one stream. py-spy then stops the
server for each sample (``--blocking``): slower, but a torn stack of a busy process would
otherwise blame the wrong functions.

Diagnostics only; the benchmark itself does not need strace or py-spy.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import load
from .run import Server, cpu_seconds, wait_quiet


def _tool(name: str) -> str:
    """``name`` on PATH, or next to this Python (a venv's bin/ that is not activated)."""
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def strace_counts(pid: int, run: Callable[[], None]) -> dict[str, int]:
    out = Path(tempfile.mkdtemp()) / "strace.txt"
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        run()
        time.sleep(0.2)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    counts = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1].isidentifier():
            counts[parts[-1]] = int(parts[3])
    return counts


def py_spy_profile(
    pid: int, run: Callable[[], None], seconds: float, top: int, *, blocking: bool = False
) -> list[tuple[float, str]]:
    """The ``top`` functions by inclusive share of the busy samples, then (after a ``---``
    line) by samples of their own."""
    out = Path(tempfile.mkdtemp()) / "profile.txt"
    spy = start_py_spy(pid, out, seconds, blocking=blocking)
    try:
        time.sleep(1.0)
        run()
    finally:
        spy.wait(seconds + 30)
    return fold_py_spy(out, top)


def start_py_spy(
    pid: int, out: Path, seconds: float | None, *, blocking: bool
) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` into ``out`` (raw folded stacks) for ``seconds``, or until it
    is sent SIGINT (``seconds=None``)."""
    command = [_tool("py-spy"), "record", "-p", str(pid), "-o", str(out), "-f", "raw"]
    command += ["-r", "250" if blocking else "1000"]
    if seconds is not None:
        command += ["-d", str(int(seconds))]
    if not blocking:
        command.append("--nonblocking")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fold_py_spy(out: Path, top: int) -> list[tuple[float, str]]:
    """What `py_spy_profile` returns, from py-spy's raw output in ``out``."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if not any("unrolled_run" in f or "_run_once" in f for f in frames):
            continue  # not inside the event loop: start-up, idle
        busy += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
        own[frames[-1]] += int(count)
    site = re.compile(r"/[^ ]*site-packages/|" + re.escape(str(Path.cwd())) + "/")
    shares = [(100 * n / busy, site.sub("", f)) for f, n in inclusive.most_common(top)]
    shares.append((0.0, "--- samples of their own"))
    shares += [(100 * n / busy, site.sub("", f)) for f, n in own.most_common(top // 2)]
    return shares


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("kind", help="a bench.server kind, e.g. raw1, raw1-hypercorn-asyncio")
    parser.add_argument("--events", type=int, default=20_000, help="events per stream")
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams")
    parser.add_argument("--py-spy", action="store_true", help="also a sampling profile")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--sparse", action="store_true", help="the sparse stream: one event per write, spaced"
    )
    parser.add_argument(
        "--fanout", action="store_true", help="the fan-out burst (a fanout-* kind) instead"
    )
    parser.add_argument(
        "--route", default="/gen", help="the app's route (/stream: trio-dwex's SseStream one)"
    )
    parser.add_argument(
        "--no-strace", action="store_true", help="skip the syscall count (slow with many streams)"
    )
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    if args.fanout:
        profile_fanout(args.kind, args.py_spy, args.top)
        return
    path = f"{args.route}?n={args.events}" + ("&sparse=1" if args.sparse else "")
    total = args.events * args.streams
    server = Server(args.kind, 1 if (os.cpu_count() or 1) >= 2 else None)
    try:
        load.run_streams(server.port, path, args.streams, args.events, 60)  # warm up

        def stream() -> None:
            load.run_streams(server.port, path, args.streams, args.events, 120)

        wait_quiet(server.pid)
        before = cpu_seconds(server.pid)
        stream()
        wait_quiet(server.pid)
        print(
            f"{args.kind}: {(cpu_seconds(server.pid) - before) / total * 1e6:.1f} "
            "server CPU-µs per event"
        )
        if shutil.which("strace") and not args.no_strace:
            counts = strace_counts(server.pid, stream)
            per_event = {
                k: round(v / total, 3) for k, v in counts.items() if v >= 100 and k != "total"
            }
            print(f"syscalls per event: {per_event}")
        if args.py_spy:
            start = time.monotonic()
            stream()
            seconds = max(3.0, 3 * (time.monotonic() - start))

            def repeat() -> None:
                deadline = time.monotonic() + seconds - 2
                while time.monotonic() < deadline:
                    stream()

            for share, frame in py_spy_profile(server.pid, repeat, seconds + 1, args.top):
                print(f"{share:5.1f}%  {frame}")
    finally:
        server.stop()


def profile_fanout(kind: str, spy: bool, top: int) -> None:
    """The fan-out burst of `bench.fanout` against a ``fanout-*`` server: CPU per delivery,
    then where it goes."""
    from .fanout import FANOUT_MODES, FanoutResult, _measure

    mode = FANOUT_MODES["full"]
    server = Server(kind, 1 if (os.cpu_count() or 1) >= 2 else None)

    def burst() -> None:
        result = FanoutResult(kind, mode.subscribers, mode.events)
        _measure(server, mode, result)
        print(f"{kind}: {result.cpu_us:.1f} server CPU-µs per delivery")

    try:
        burst()  # warm up
        burst()
        if spy:

            def repeat() -> None:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    burst()

            for share, frame in py_spy_profile(server.pid, repeat, 12, top, blocking=True):
                print(f"{share:5.1f}%  {frame}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
