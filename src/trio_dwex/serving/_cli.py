"""The ``trio-dwex`` command: ``trio-dwex run examples.guide:app [--host] [--port] [--workers]``."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import trio
from hypercorn.config import Sockets
from prometheus_client.multiprocess import mark_process_dead

from ..asgi._metrics import MULTIPROCESS_DIR_VARIABLE
from ._fixes import ASGIApp
from ._limits import DEFAULT_MAX_CONNECTIONS, ServerLimits
from ._load import AppLoadError, load_app
from ._serve import (
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    _wait_for_signal,
    make_config,
    serve,
    tune_gc,
)

__all__ = ["main"]

#: Seconds between two checks, in a worker process, of the supervisor's stop event.
logger = logging.getLogger("trio_dwex.serving")

WORKER_STOP_POLL = 0.1
#: Seconds before a dead worker is replaced; doubled for each exit within `CRASH_LOOP_WINDOW`.
RESTART_DELAY = 0.2
#: The longest wait before a replacement.
RESTART_DELAY_MAX = 5.0
#: Worker exits within `CRASH_LOOP_WINDOW` seconds that make a crash loop: the server stops.
CRASH_LOOP_EXITS = 5
CRASH_LOOP_WINDOW = 30.0
#: The format of log lines, in the supervisor and in every worker (the process id tells
#: workers apart).
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def _load_app(target: str) -> ASGIApp:
    """The app ``target`` names (see `load_app`); a bad one ends the command with the reason."""
    # Like `python -m`, look in the current directory first, so `examples.guide` just works.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return load_app(target)
    except AppLoadError as error:
        raise SystemExit(f"error: {error}") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``trio-dwex`` command."""
    parser = argparse.ArgumentParser(prog="trio-dwex", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve an app on Hypercorn's Trio worker")
    run.add_argument("app", help="the app to serve, as MODULE:ATTRIBUTE (examples.guide:app)")
    run.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    run.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    run.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    run.add_argument(
        "--graceful-timeout",
        type=float,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        help="seconds running requests get at shutdown",
    )
    run.add_argument("--certfile", help="TLS certificate (enables HTTPS and HTTP/2)")
    run.add_argument("--keyfile", help="TLS private key")
    run.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"connections served at once, per worker (default {DEFAULT_MAX_CONNECTIONS}); "
        "more wait in the listen backlog",
    )
    run.add_argument("--log-level", default="info", help="debug, info, warning or error")
    options = parser.parse_args(argv)
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    if options.max_connections < 1:
        parser.error("--max-connections must be at least 1")
    limits = ServerLimits(max_connections=options.max_connections)
    log_level = options.log_level.upper()
    if not isinstance(logging.getLevelName(log_level), int):
        parser.error(f"--log-level must be debug, info, warning or error, got {options.log_level}")
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    settings = {
        "host": options.host,
        "port": options.port,
        "graceful_timeout": options.graceful_timeout,
        "certfile": options.certfile,
        "keyfile": options.keyfile,
    }
    tune_gc()
    if options.workers == 1:
        app = _load_app(options.app)
        trio.run(partial(serve, app, config=make_config(**settings), limits=limits))
    else:
        _supervise(options.app, options.workers, settings, log_level, limits)


def _supervise(
    target: str, workers: int, settings: dict[str, Any], log_level: str, limits: ServerLimits
) -> None:
    """Run ``workers`` processes that share the listening sockets, until SIGINT or SIGTERM.

    The signal may reach the supervisor alone (``kill PID``) or the whole process group
    (Ctrl+C in a terminal, ``kill -TERM -- -PGID``, systemd's default ``KillMode``): either
    way every worker shuts down gracefully, closing its streams and running their cleanup, and
    the command exits 0.
    """
    _load_app(target)  # fail here, once, rather than in every worker
    with _shared_metrics_dir():
        _run_workers(target, workers, settings, log_level, limits)


@contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """Give the workers a directory for their metrics, so that any of them can answer a scrape
    with the sum of all (prometheus-client's multiprocess mode): a fresh one, removed at the
    end, unless ``PROMETHEUS_MULTIPROC_DIR`` is set already (then it is the operator's, to
    empty between runs)."""
    if MULTIPROCESS_DIR_VARIABLE in os.environ:
        yield
        return
    path = tempfile.mkdtemp(prefix="trio-dwex-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = path  # the workers inherit it
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR_VARIABLE]
        shutil.rmtree(path, ignore_errors=True)


def _forget_worker(pid: int | None) -> None:
    """A worker is gone: its open-stream gauge goes with it (its totals stay)."""
    path = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if path is not None and pid is not None:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # untyped upstream


def _run_workers(
    target: str, workers: int, settings: dict[str, Any], log_level: str, limits: ServerLimits
) -> None:
    config = make_config(**settings)
    sockets = config.create_sockets()
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.listen(config.backlog)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    # Children inherit "ignore SIGINT and SIGTERM", so that a signal to the whole process
    # group cannot kill a worker that is still starting (its default action would). Once
    # serving, a worker listens for both itself and shuts down gracefully; the supervisor
    # also sets `stop`, which reaches workers that were signalled before they listened.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def start_worker() -> BaseProcess:
        process = context.Process(
            target=_worker,
            args=(target, settings, sockets, stop, log_level, limits),
            daemon=False,
        )
        process.start()
        return process

    processes = [start_worker() for _ in range(workers)]
    supervision = _Supervision(stop)
    signal.signal(signal.SIGINT, supervision.request_stop)
    signal.signal(signal.SIGTERM, supervision.request_stop)
    crash_loop = supervision.watch(processes, start_worker)
    for process in processes:
        process.join()
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()
    if crash_loop is not None:
        raise SystemExit(f"error: {crash_loop}")
    failed = [
        p.exitcode
        for p in processes
        if p.exitcode not in (0, None) and p.pid not in supervision.reported
    ]
    if failed:
        raise SystemExit(f"error: {len(failed)} worker(s) failed with exit codes {failed}")


class _Supervision:
    """Replaces workers that die, with a growing delay; gives up on a crash loop.

    A worker that exits while the server is not stopping (a crash, ``kill -9``, the kernel's
    OOM killer) is logged and replaced after `RESTART_DELAY` seconds, doubled for each exit
    in the last `CRASH_LOOP_WINDOW` seconds, up to `RESTART_DELAY_MAX`. `CRASH_LOOP_EXITS`
    exits within that window is a crash loop (an app that cannot start, a port taken away):
    the server stops, and the command exits with an error that says so.
    """

    def __init__(self, stop: ProcessEvent) -> None:
        self._stop = stop
        self._exits: list[float] = []
        # Set by the signal handler, which must not touch ``stop`` itself: setting a process
        # Event takes its lock, and a signal that lands while this thread holds that lock
        # (in ``stop.is_set()`` or ``stop.wait()``) would deadlock the supervisor for good.
        self._stop_requested = False
        #: Workers whose death was logged (and that were, or were to be, replaced): not
        #: failures of the shutdown.
        self.reported: set[int | None] = set()

    def request_stop(self, signum: int, frame: object) -> None:
        """The SIGINT and SIGTERM handler: the watch loop sets ``stop`` within a poll."""
        self._stop_requested = True

    def _stopping(self) -> bool:
        if self._stop_requested and not self._stop.is_set():
            self._stop.set()
        return self._stop_requested or self._stop.is_set()

    def watch(self, processes: list[BaseProcess], start: Callable[[], BaseProcess]) -> str | None:
        """Keep ``processes`` alive until told to stop; the crash loop's description, if one."""
        stop = self._stop
        while not self._stopping():
            multiprocessing.connection.wait(
                [p.sentinel for p in processes], timeout=WORKER_STOP_POLL
            )
            for index, process in enumerate(processes):
                if process.exitcode is None or self._stopping():
                    continue
                now = time.monotonic()
                self._exits = [t for t in self._exits if now - t < CRASH_LOOP_WINDOW] + [now]
                if len(self._exits) >= CRASH_LOOP_EXITS:
                    stop.set()
                    return (
                        f"workers keep failing: {len(self._exits)} exits within "
                        f"{CRASH_LOOP_WINDOW:g} s (the last with exit code {process.exitcode}); "
                        "stopping. The log above says why they failed."
                    )
                _forget_worker(process.pid)
                self.reported.add(process.pid)
                delay = min(RESTART_DELAY * 2 ** (len(self._exits) - 1), RESTART_DELAY_MAX)
                logger.error(
                    "worker %d exited with code %s; starting another in %.1f s",
                    process.pid,
                    process.exitcode,
                    delay,
                )
                if self._sleep_unless_stopping(delay):
                    break
                processes[index] = start()
        return None

    def _sleep_unless_stopping(self, seconds: float) -> bool:
        """Wait ``seconds``, in polls; ``True`` if told to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping():
                return True
            time.sleep(min(left, WORKER_STOP_POLL))
        return self._stopping()


def _worker(
    target: str,
    settings: dict[str, Any],
    sockets: Sockets,
    stop: ProcessEvent,
    log_level: str,
    limits: ServerLimits,
) -> None:
    """One worker process: serve the shared sockets until told to stop.

    It stops gracefully on whichever comes first: SIGINT or SIGTERM to the worker itself (a
    signal to the process group), the supervisor's ``stop`` event, or the supervisor's death
    (the worker is re-parented), so a worker never outlives its supervisor.
    """
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    tune_gc()
    supervisor = os.getppid()
    app = _load_app(target)

    async def supervisor_says_stop() -> None:
        while not stop.is_set() and os.getppid() == supervisor:  # noqa: ASYNC110 (a process Event has no async wait)
            await trio.sleep(WORKER_STOP_POLL)

    async def stopped() -> None:
        async with trio.open_nursery() as nursery:

            async def first(trigger: Any) -> None:
                await trigger()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first, _wait_for_signal)
            nursery.start_soon(first, supervisor_says_stop)

    trio.run(
        partial(
            serve,
            app,
            config=make_config(**settings),
            sockets=sockets,
            shutdown_trigger=stopped,
            limits=limits,
        )
    )
