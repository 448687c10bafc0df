"""One server under test, in its own process: ``python -m bench.server KIND``.

It binds 127.0.0.1 on a free port, prints ``READY <port>`` on stdout once it accepts
connections, and serves until it is terminated. ``--cpu N`` pins it to core N.

Kinds (see `SERVERS`): our app on our ``serve`` (Hypercorn's Trio worker with trio-dwex's
connection fixes) or on plain ``hypercorn.trio.serve``; sse-starlette on uvicorn (h11, asyncio);
the raw ASGI floor on plain Hypercorn-Trio, one send per event or one per 64, and the same floor
on our ``serve`` (which tells the runner's cost apart from the server's).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import socket
import sys
from functools import partial
from typing import Any

from . import apps

#: kind -> (app factory, server). Servers: "hypercorn" (plain hypercorn.trio.serve),
#: "dwex" (trio-dwex's serve: Hypercorn's Trio worker plus our TCPServer fixes),
#: "hypercorn-asyncio" (hypercorn.asyncio.serve), "uvicorn" (h11 on asyncio, what a plain
#: ``pip install uvicorn`` runs), "uvicorn-standard" (httptools on uvloop: uvicorn[standard]).
SERVERS: dict[str, tuple[Any, str]] = {
    "dwex": (apps.make_dwex_app, "dwex"),
    "dwex-orjson": (partial(apps.make_dwex_app, "orjson"), "dwex"),
    "dwex-on-hypercorn": (apps.make_dwex_app, "hypercorn"),
    "raw1": (partial(apps.make_raw_app, 1), "hypercorn"),
    "raw64": (partial(apps.make_raw_app, 64), "hypercorn"),
    "raw1-on-dwex": (partial(apps.make_raw_app, 1), "dwex"),
    "raw1-hypercorn-asyncio": (
        partial(apps.make_raw_app, 1, flavor="asyncio"),
        "hypercorn-asyncio",
    ),
    "sse-starlette": (apps.make_sse_starlette_app, "uvicorn"),
    # The fan-out scenario (bench/fanout.py): a broadcast hub, in memory or on the Redis server
    # that $BENCH_REDIS_URL names.
    "fanout-memory": (partial(apps.make_fanout_app, "memory://"), "dwex"),
    # The peer: sse-starlette on uvicorn, an asyncio.Queue per subscriber; and the same on
    # uvicorn[standard] (uvloop and httptools), its fastest setup.
    "fanout-sse-starlette": (apps.make_sse_starlette_fanout_app, "uvicorn"),
    "fanout-sse-starlette-standard": (apps.make_sse_starlette_fanout_app, "uvicorn-standard"),
    "fanout-redis": (
        lambda: apps.make_fanout_app(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")),
        "dwex",
    ),
}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        # Fewer cores than asked: run unpinned.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def ready(port: int) -> None:
    print(f"READY {port}", flush=True)


def hypercorn_config() -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.backlog = 4096
    config.graceful_timeout = 1.0
    return config


def dwex_serve() -> Any:
    """trio-dwex's ``serve``: the public one once it exists, else the serving layer's core."""
    try:
        from trio_dwex.serving._fixes import serve_hypercorn
    except ImportError:  # the serving layer is not there: plain Hypercorn is what we have
        return None
    from trio_dwex.serving import ServerLimits

    # BENCH_DIRECT_WRITES=0 turns our fast write path off (serving/_direct.py), to measure it.
    direct = os.environ.get("BENCH_DIRECT_WRITES", "1") != "0"
    # The sparse fan-out holds 10,000 subscribers and needs one more connection to publish:
    # our default cap (10,000 per worker) would hold that one in the backlog for ever, as it
    # should. The peer has no cap; a deployment this size raises ours, so the benchmark does.
    limits = ServerLimits(max_connections=20_000)
    return partial(serve_hypercorn, write_timeout=30.0, direct_writes=direct, limits=limits)


def run_trio(app: Any, server: str) -> None:
    import trio
    from hypercorn.trio import serve as hypercorn_serve

    serve = hypercorn_serve
    if server == "dwex":
        serve = dwex_serve() or hypercorn_serve
        # As `trio-dwex run` and `trio_dwex.run` do: they own the process, so they tune the
        # garbage collector for many open streams (trio_dwex.lowlevel.tune_gc). The other rows keep
        # Python's defaults, as their own commands (hypercorn, uvicorn) do; BENCH_PYTHON_GC=1
        # keeps them for ours too.
        if not os.environ.get("BENCH_PYTHON_GC"):
            from trio_dwex.lowlevel import tune_gc

            tune_gc()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, hypercorn_config()))
            ready(int(binds[0].rsplit(":", 1)[1]))

    trio.run(main)


def run_hypercorn_asyncio(app: Any) -> None:
    import asyncio

    from hypercorn.asyncio import serve

    config = hypercorn_config()

    async def main() -> None:
        # hypercorn.asyncio.serve reports no binds: bind the socket ourselves and pass its fd.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config.bind = [f"fd://{sock.detach()}"]
        asyncio.get_running_loop().call_later(0.5, ready, port)
        await serve(app, config)

    asyncio.run(main())


def run_uvicorn(app: Any, *, standard: bool = False) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="httptools" if standard else "h11",
        loop="uvloop" if standard else "asyncio",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )
    server = uvicorn.Server(config)

    # Ready once the loop runs: the listening socket already queues connections.
    import asyncio

    async def serve() -> None:
        asyncio.get_running_loop().call_soon(ready, port)
        await server.serve(sockets=[sock])

    if standard:
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    args = parser.parse_args(argv)
    pin(args.cpu)
    raise_fd_limit()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    factory, server = SERVERS[args.kind]
    app = factory()
    if server in ("uvicorn", "uvicorn-standard"):
        run_uvicorn(app, standard=server == "uvicorn-standard")
    elif server == "hypercorn-asyncio":
        run_hypercorn_asyncio(app)
    else:
        run_trio(app, server)


if __name__ == "__main__":
    main()
