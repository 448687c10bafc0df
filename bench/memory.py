"""Where an idle stream's memory goes: ``python -m bench.memory [--streams N]``.

The benchmark's idle column is RSS divided by streams: it says how much, not what. This runs
each server *in this process* under ``tracemalloc``, opens ``--streams`` idle SSE connections
from a child process (raw sockets, each reads its first event and then waits), and splits the
Python memory allocated per connection by the package whose code allocated it:

* trio-dwex's ``/idle`` (async generator) and ``/idle-stream`` (`SseStream`) routes on our
  ``serve()`` — Hypercorn's Trio worker with trio-dwex's connection fixes;
* the raw ASGI floor (`bench.apps.make_raw_app`) on plain ``hypercorn.trio.serve``.

tracemalloc counts Python allocations only (not the kernel's socket buffers, nor the
allocator's slack), so its totals are below the RSS figures of ``python -m bench``; the
difference between rows is what matters. Diagnostics only; not part of CI.
"""

from __future__ import annotations

import argparse
import collections
import gc
import socket
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from . import apps

#: Python for the child that holds the connections open: connect, send the request, read
#: until the first event, print one line, then wait for stdin to close.
CLIENT = textwrap.dedent(
    """
    import socket, sys
    port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
        data = b""
        while b"data:" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("server closed an idle stream")
            data += chunk
        held.append(s)
    print("HELD", flush=True)
    sys.stdin.read()
    """
)

PACKAGES = ("trio_dwex", "hypercorn", "h11", "trio", "asyncio")


def package_of(filename: str) -> str:
    """The package a source file belongs to, for grouping (``<other>`` for the rest)."""
    if filename.startswith("<attrs generated methods "):
        # attrs compiles the __init__ of trio's classes (Task, CancelStatus, channels).
        filename = filename.removeprefix("<attrs generated methods ").replace(".", "/")
    parts = Path(filename).parts
    for name in PACKAGES:
        if name in parts:
            return name
    return "<other>"


async def measure(kind: str, streams: int, lines: int = 0) -> dict[str, float]:
    """Bytes allocated per idle connection, by package, for one server ``kind``; with
    ``lines``, also print the ``lines`` source lines that allocated the most per connection."""
    from hypercorn.config import Config

    from trio_dwex.testing import serve_app

    if kind == "raw":
        import hypercorn.trio

        app: Any = apps.make_raw_app(1)
        path = "/idle"
    else:
        app = apps.make_dwex_app()
        path = "/idle" if kind == "dwex-gen" else "/idle-stream"
    async with trio.open_nursery() as nursery:
        if kind == "raw":
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            listener.close()
            config = Config()
            config.bind = [f"127.0.0.1:{port}"]
            config.accesslog = None
            shutdown = trio.Event()
            await nursery.start(
                lambda task_status: hypercorn.trio.serve(
                    app, config, shutdown_trigger=shutdown.wait, task_status=task_status
                )
            )
            stop = shutdown.set
        else:
            served = serve_app(app)
            url = await served.__aenter__()
            port = int(url.rsplit(":", 1)[1])
            stop = None
        # Warm-up: one connection's worth of imports and caches before the baseline.
        await hold(port, path, 1, trio.lowlevel.checkpoint)
        gc.collect()
        tracemalloc.start(1)
        baseline = tracemalloc.take_snapshot()
        result: dict[str, float] = {}

        async def snapshot() -> None:
            await trio.sleep(0.5)
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
            diff = snapshot.compare_to(baseline, "filename")
            totals: collections.Counter[str] = collections.Counter()
            for stat in diff:
                totals[package_of(stat.traceback[0].filename)] += stat.size_diff
            result.update({name: size / streams for name, size in totals.items()})
            if lines:
                print(f"\n{kind}: the {lines} lines that allocate most per connection (bytes)")
                for stat in snapshot.compare_to(baseline, "lineno")[:lines]:
                    frame = stat.traceback[0]
                    where = "/".join(Path(frame.filename).parts[-2:])
                    print(f"{stat.size_diff / streams:8.0f}  {where}:{frame.lineno}")

        await hold(port, path, streams, snapshot)
        tracemalloc.stop()
        if stop is not None:
            stop()
        else:
            await served.__aexit__(None, None, None)
    return result


async def hold(port: int, path: str, count: int, while_held: Callable[[], Awaitable[None]]) -> None:
    """Open ``count`` idle streams from a child process and run ``while_held()`` meanwhile."""
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", CLIENT, str(port), path, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        line = b""
        while not line.endswith(b"\n"):
            chunk = await child.stdout.receive_some()
            if not chunk:
                raise RuntimeError(f"the client process failed before holding {count} streams")
            line += chunk
        await while_held()
    finally:
        await child.stdin.aclose()
        await child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000, help="idle connections per row")
    parser.add_argument(
        "--lines", type=int, default=0, help="also print the N source lines that allocate most"
    )
    args = parser.parse_args(argv)
    rows = {
        "trio-dwex, async generator route": "dwex-gen",
        "trio-dwex, SseStream route": "dwex-stream",
        "raw ASGI on plain Hypercorn-Trio (floor)": "raw",
    }
    results = {
        label: trio.run(measure, kind, args.streams, args.lines) for label, kind in rows.items()
    }
    columns = [*PACKAGES, "<other>"]
    print(f"Python memory per idle stream (tracemalloc, KiB), {args.streams} streams per row\n")
    print("| server | " + " | ".join(columns) + " | total |")
    print("|---|" + "---:|" * (len(columns) + 1))
    for label, sizes in results.items():
        cells = [f"{sizes.get(name, 0.0) / 1024:.2f}" for name in columns]
        total = sum(sizes.values()) / 1024
        print(f"| {label} | " + " | ".join(cells) + f" | {total:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
