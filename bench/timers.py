"""What a producer's timer costs on its own: ``python -m bench.timers``.

The sparse row's producers and the token row's sleep before each event: ours and the Trio
floor's on Trio (``trio.sleep``), the peers' on asyncio (sse-starlette's row on the default
loop, the token row's uvicorn on uvloop, which it picks when installed). A loop that does
nothing but those sleeps shows what each event costs before any server or framework runs; the
benchmark measures it beside the rows (`timer_cpu_us`), so that a ratio to an asyncio peer
can be split into the timers' share and the rest (docs/performance.md, "The producers'
timers").

Each measurement runs in a fresh process, pinned to the servers' core where there is one, and
reports its own CPU time (user + system) per wake-up, interpreter start excluded::

    python -m bench.timers --loop trio --gap 0.0002 --wakeups 10000
    python -m bench.timers --loop uvloop --gap 0.005 --tasks 100 --wakeups 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import trio

Loop = Literal["trio", "asyncio", "uvloop"]
LOOPS: tuple[Loop, ...] = ("trio", "asyncio", "uvloop")

ROOT = Path(__file__).resolve().parent.parent


def trio_sleeps(wakeups: int, gap: float, tasks: int = 1) -> float:
    """``wakeups`` sleeps of ``gap`` seconds in all, shared by ``tasks`` concurrent tasks.

    Returns the CPU seconds they took inside the loop (the loop's start and end left out).
    """

    async def sleeper() -> None:
        for _ in range(wakeups // tasks):
            await trio.sleep(gap)

    async def main() -> float:
        start = time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(sleeper)
        return time.process_time() - start

    return trio.run(main)


def asyncio_sleeps(wakeups: int, gap: float, tasks: int = 1, *, uvloop: bool = False) -> float:
    """The same on asyncio: its default loop, or uvloop's."""

    async def sleeper() -> None:
        for _ in range(wakeups // tasks):
            await asyncio.sleep(gap)

    async def main() -> float:
        start = time.process_time()
        await asyncio.gather(*(sleeper() for _ in range(tasks)))
        return time.process_time() - start

    if uvloop:
        import uvloop as uvloop_module

        return uvloop_module.run(main())
    return asyncio.run(main())


def sleeps(loop: Loop, wakeups: int, gap: float, tasks: int = 1) -> float:
    """Run the sleeps on ``loop`` in this process; the CPU seconds they took."""
    if loop == "trio":
        return trio_sleeps(wakeups, gap, tasks)
    return asyncio_sleeps(wakeups, gap, tasks, uvloop=loop == "uvloop")


def timer_cpu_us(
    loop: Loop, wakeups: int, gap: float, tasks: int = 1, cpu: int | None = None
) -> float:
    """CPU-µs per wake-up of ``wakeups`` sleeps on ``loop``, in a fresh process on ``cpu``."""
    command = [sys.executable, "-m", "bench.timers", "--loop", loop, "--gap", repr(gap)]
    command += ["--tasks", str(tasks), "--wakeups", str(wakeups)]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timers", description=__doc__)
    parser.add_argument("--loop", choices=LOOPS, default="trio")
    parser.add_argument("--gap", type=float, default=0.0002, help="seconds per sleep (0.0002)")
    parser.add_argument("--tasks", type=int, default=1, help="tasks sleeping at once (1)")
    parser.add_argument("--wakeups", type=int, default=10_000, help="sleeps in all (10,000)")
    parser.add_argument("--cpu", type=int, help="the core to run on")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    wakeups = args.wakeups // args.tasks * args.tasks
    print(f"{sleeps(args.loop, wakeups, args.gap, args.tasks) / wakeups * 1e6:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
