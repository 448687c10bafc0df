"""`serve`: run an app on Hypercorn's Trio worker, with our fixes and a prompt, clean shutdown."""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config, Sockets

from ..asgi._app import DwexApp
from ._fixes import ASGIApp, serve_hypercorn
from ._limits import ServerLimits

__all__ = [
    "DEFAULT_GC_THRESHOLD",
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "run",
    "serve",
    "tune_gc",
]

logger = logging.getLogger("trio_dwex.serving")

#: The port of the guide's examples.
DEFAULT_PORT = 9929
DEFAULT_HOST = "127.0.0.1"
#: Seconds that requests still running at shutdown get to finish. Streams do not need it:
#: `serve` closes them (running their cleanup) the moment shutdown starts.
DEFAULT_GRACEFUL_TIMEOUT = 5.0
#: Used for the write timeout when the app is not a trio-dwex app and none is given.
DEFAULT_WRITE_TIMEOUT = 30.0
#: Connections the kernel queues until we accept them. Hypercorn's default, 100, is too few
#: for SSE: after a restart every EventSource reconnects at once, the queue overflows, and
#: the overflowing clients' requests wait for TCP retransmits (seconds, backing off) until
#: ``keep_alive_timeout`` closes them unanswered. The kernel caps it at ``net.core.somaxconn``.
DEFAULT_BACKLOG = 2048
#: The cyclic garbage collector's thresholds that `run` and ``trio-dwex run`` set (see
#: `gc.set_threshold`); Python's default is ``(700, 10, 10)``. A server with many open streams
#: holds a few hundred tracked objects per connection, and with the default a full collection,
#: which walks all of them and frees almost nothing, comes every ~3,000 writes: measured at 1,000
#: subscribers of a broadcast, half the server's CPU (docs/performance.md). A young generation
#: of 2,000 lets the objects of a scheduler pass die young, and 50 middle collections per full
#: one make full collections rare (every ~1,000,000 allocations, as with ``(10000, 10, 10)``)
#: while each middle collection stays small: with ``(10000, 10, 10)`` one of them walked up to
#: 100,000 objects, and those pauses doubled the p99 time to first event.
DEFAULT_GC_THRESHOLD = (2_000, 10, 50)


def tune_gc(threshold: tuple[int, int, int] | None = DEFAULT_GC_THRESHOLD) -> None:
    """Set the garbage collector's thresholds for a process that serves streams.

    Process-wide, so only what owns the process calls it: `run` and the ``trio-dwex`` command
    do; `serve`, which runs inside your program, does not (call this yourself if you want it).
    ``None`` leaves the interpreter's setting alone.
    """
    if threshold is None:
        return
    if (
        not isinstance(threshold, tuple)
        or len(threshold) != 3
        or not all(type(value) is int and value >= 0 for value in threshold)
    ):
        raise ValueError(
            f"gc_threshold must be a tuple of three non-negative ints, such as "
            f"{DEFAULT_GC_THRESHOLD}, or None to keep Python's; got {threshold!r}"
        )
    gc.set_threshold(*threshold)


def make_config(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    certfile: str | None = None,
    keyfile: str | None = None,
    **options: Any,
) -> Config:
    """A Hypercorn `Config` for our server; ``options`` set any other of its attributes."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int from 0 to 65535, got {port!r}")
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.worker_class = "trio"
    config.accesslog = None
    config.backlog = DEFAULT_BACKLOG
    # Hypercorn's own handler would print every line twice next to the app's logging setup:
    # hand it a plain logger, which propagates to whatever the application configured.
    config.errorlog = logging.getLogger("hypercorn.error")
    if certfile is not None:
        config.certfile = certfile
        config.keyfile = keyfile
    for name, value in options.items():
        if not hasattr(config, name):
            raise TypeError(f"unknown Hypercorn setting {name!r}; see hypercorn.config.Config")
        setattr(config, name, value)
    return config


async def serve(
    app: ASGIApp,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: Config | None = None,
    write_timeout: float | None = None,
    fast_send_lock: bool = True,
    direct_writes: bool = True,
    limits: ServerLimits | None = None,
    drain_window: float | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    sockets: Sockets | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on Hypercorn's Trio worker until SIGINT or SIGTERM (or ``shutdown_trigger``).

    A coroutine function, for Trio code: ``await serve(app)``, or ``await nursery.start(serve,
    app)`` (it reports the bound addresses, so port 0 works). From synchronous code (a script's
    ``if __name__ == "__main__":``), call :func:`run` instead: ``serve(app)`` alone only makes
    a coroutine that never runs.

    Compared with plain ``hypercorn --worker-class trio``, it notices every client that leaves
    (even after pipelined bytes) and drops a client that accepts no bytes for
    ``write_timeout`` seconds (default: the app's ``send_timeout``), and at shutdown it closes
    every open stream at once, running its cleanup, instead of waiting for the graceful timeout.

    Args:
        config: a full Hypercorn `Config` (binds, TLS, timeouts); ``host`` and ``port`` are
            ignored when it is given.
        fast_send_lock: take a connection's free send lock without a scheduler pass, which
            saves CPU on every write (docs/performance.md); ``False`` is upstream's behaviour.
        direct_writes: write a stream's body chunks straight to the socket when it takes
            them at once, which halves the CPU of a sparse stream's write
            (docs/performance.md); ``False`` sends every chunk through Hypercorn.
        limits: connections served at once, and what one HTTP/2 client may ask
            (`ServerLimits`; its defaults when ``None``).
        drain_window: seconds over which the open streams are ended at shutdown; by default
            the app's ``Settings.drain_window`` (``0``: at once, as tests want).
        shutdown_trigger: returns when the server should stop; by default, SIGINT or SIGTERM.
    """
    if config is None:
        config = make_config(host=host, port=port)
    if write_timeout is None:
        write_timeout = (
            app.settings.streams.send_timeout if isinstance(app, DwexApp) else DEFAULT_WRITE_TIMEOUT
        )
    trigger = shutdown_trigger or _wait_for_signal

    async def shut_down() -> None:
        await trigger()
        if isinstance(app, DwexApp):
            window = app.settings.drain_window if drain_window is None else drain_window
            logger.info("shutting down: ending every open stream within %g s", window)
            app.drain(window)
            # Still listening while the streams drain: the readiness path says 503 and new
            # streams are refused, so a load balancer moves clients on; other requests are
            # served. Then Hypercorn stops listening and gives the rest the graceful timeout.
            await trio.sleep(window)
        else:
            logger.info("shutting down")

    await serve_hypercorn(
        app,
        config,
        write_timeout=write_timeout,
        fast_send_lock=fast_send_lock,
        direct_writes=direct_writes,
        limits=limits or ServerLimits(),
        shutdown_trigger=shut_down,
        sockets=sockets,
        task_status=task_status,
    )


def run(
    app: ASGIApp,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: Config | None = None,
    write_timeout: float | None = None,
    fast_send_lock: bool = True,
    direct_writes: bool = True,
    limits: ServerLimits | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    gc_threshold: tuple[int, int, int] | None = DEFAULT_GC_THRESHOLD,
) -> None:
    """Serve ``app`` from synchronous code, blocking until SIGINT or SIGTERM: the script entry.

    ::

        if __name__ == "__main__":
            trio_dwex.run(app, port=9929)

    It is ``trio.run(serve, app, ...)``: it starts Trio, runs :func:`serve` with the same
    arguments, and returns once the server has shut down (streams closed, their cleanup run,
    the app's lifespan shutdown done). Inside Trio code, ``await serve(app)`` instead.

    Owning the process, it also sets the garbage collector's thresholds to ``gc_threshold``
    (`tune_gc`; ``None`` keeps Python's): with many open streams, Python's defaults spend up to
    half the CPU in full collections that free almost nothing.

    Raises:
        RuntimeError: called from inside a running Trio program.
    """
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "trio_dwex.run() starts Trio itself; inside a Trio program use "
            "`await trio_dwex.serve(app, ...)` or `await nursery.start(trio_dwex.serve, app)`"
        )
    tune_gc(gc_threshold)
    trio.run(
        partial(
            serve,
            app,
            host=host,
            port=port,
            config=config,
            write_timeout=write_timeout,
            fast_send_lock=fast_send_lock,
            direct_writes=direct_writes,
            limits=limits,
            shutdown_trigger=shutdown_trigger,
        )
    )


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s", signal.Signals(signum).name)
            return
