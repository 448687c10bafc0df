"""`serve()`, the ``trio-dwex`` command and plain ``hypercorn``, as a user runs them."""

from __future__ import annotations

import gc
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.helpers import accept_lifespan, open_stream, read_all_events
from trio_dwex import EventSourceResponse, SseStream
from trio_dwex.asgi._app import DwexApp
from trio_dwex.lowlevel import CloseReason
from trio_dwex.serving import DEFAULT_GC_THRESHOLD, serve, tune_gc
from trio_dwex.serving._serve import make_config

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    command: list[str], port: int, *, new_session: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process and wait until it accepts connections; kill it at the end.

    With ``new_session``, the process leads a new session and process group (as under
    systemd), whose id is its pid; what is left of the group at the end is killed.
    """
    env = {**os.environ, "GUIDE_TICK": "0.05", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if process.poll() is not None:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"the server exited with {process.returncode}:\n{output}")
                time.sleep(0.05)
        else:
            pytest.fail("the server did not start listening within 10 s")
        yield process
    finally:
        if new_session:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.wait()


async def test_serve_closes_streams_at_shutdown_and_runs_their_cleanup() -> None:
    cleaned = trio.Event()
    responses: list[EventSourceResponse] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await accept_lifespan(receive, send)
            return
        stream = SseStream()
        stream.send_nowait({"hello": 1})
        stream.on_close(cleaned.set)
        response = EventSourceResponse(stream)
        responses.append(response)
        await response(scope, receive, send)

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        config = make_config(port=0, graceful_timeout=1)
        binds = await nursery.start(partial(serve, app, config=config, shutdown_trigger=stop.wait))
        async with httpx.AsyncClient() as client:
            async with open_stream(client, binds[0]) as stream:
                await stream.next_event()
                started = trio.current_time()
                stop.set()
                with trio.fail_after(3):
                    await cleaned.wait()
    # A plain ASGI app has no streams for serve() to close: they end when the graceful
    # timeout cancels them, and their cleanup still runs.
    assert 1 <= trio.current_time() - started < 3
    assert responses[0].close_reason is None  # cancelled, not returned


async def test_serve_closes_a_dwex_apps_streams_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUIDE_TICK", "0.05")
    from examples import guide

    app: DwexApp = guide.app
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        config = make_config(port=0, graceful_timeout=30)
        serving = partial(serve, app, config=config, shutdown_trigger=stop.wait, drain_window=0.5)
        binds = await nursery.start(serving)
        async with httpx.AsyncClient(timeout=10) as client:
            async with open_stream(client, binds[0] + "/events/resumable") as stream:
                await stream.next_event()
                assert app.streams.open_count == 1
                shutdown_at = trio.current_time()
                stop.set()
                with trio.fail_after(1.5):  # within the drain window, not the graceful timeout
                    rest = await stream.rest()
                assert not rest or rest.endswith(b"\n\n")
    # Well within the 30 s graceful timeout: the drain window, then the server is done.
    assert trio.current_time() - shutdown_at < 3
    assert app.streams.open_count == 0
    assert app.streams.closed[CloseReason.SHUTDOWN] >= 1


def _countdown(base_url: str) -> list[int]:
    async def read() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            events = await read_all_events(client, base_url + "/events/countdown")
        return [e.json()["count"] for e in events if e.type == "countdown"]

    return trio.run(read)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_the_guide_and_stops_cleanly_on_a_signal(signum: int) -> None:
    port = free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "examples.guide:app", "--port", str(port)]
    with running(command, port) as process:
        assert _countdown(f"http://127.0.0.1:{port}") == list(range(10, 0, -1))
        with socket.create_connection(("127.0.0.1", port)) as stream_socket:
            stream_socket.sendall(b"GET /events/resumable HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200" in stream_socket.recv(4096)
            process.send_signal(signum)
            process.wait(timeout=5)
        output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_the_command_runs_several_workers() -> None:
    port = free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "examples.guide:app"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    with running(command, port) as process:
        assert _countdown(f"http://127.0.0.1:{port}") == list(range(10, 0, -1))
        process.send_signal(signal.SIGTERM)  # the supervisor alone, as `kill PID` does
        process.wait(timeout=10)
        output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode == 0, output
    # The workers honour --log-level too: none of their INFO lines ("shutting down...").
    assert "INFO" not in output, output


def _wait_for_workers(port: int, count: int) -> None:
    """Wait until ``count`` different worker processes answer ``GET /pid``.

    The supervisor listens before its workers have started, so the first one up would get
    every connection: wait for all of them, one new connection per request.
    """
    pids: set[int] = set()
    deadline = time.monotonic() + 20
    while len(pids) < count:
        assert time.monotonic() < deadline, f"only workers {pids} answered within 20 s"
        response = httpx.get(f"http://127.0.0.1:{port}/pid", headers={"connection": "close"})
        pids.add(response.json()["pid"])
        # Each worker owns its process, so the command tuned its collector (serve.tune_gc).
        assert response.json()["gc"] == list(DEFAULT_GC_THRESHOLD), response.json()
        time.sleep(0.02)


def _open_pid_stream(port: int) -> tuple[socket.socket, int]:
    """Open ``/pid/stream`` on a raw socket; return it and the pid of the worker serving it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /pid/stream HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while (found := re.search(rb'"pid":(\d+)', data)) is None:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return sock, int(found[1])


def _rest(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection or ends the chunked body."""
    data = b""
    while not data.endswith(b"0\r\n\r\n") and (chunk := sock.recv(4096)):
        data += chunk
    return data


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_process_group_stops_every_worker_gracefully(signum: int) -> None:
    """systemd's default stop, ``kill -TERM -- -PGID`` and Ctrl+C signal every process."""
    port = free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "tests.serving.workers_app:app"]
    command += ["--port", str(port), "--workers", "2"]
    with running(command, port, new_session=True) as process:
        # Both workers serve: open streams until each has some (the kernel hands every new
        # connection to one of the processes waiting on the shared socket).
        _wait_for_workers(port, 2)
        streams: list[tuple[socket.socket, int]] = []
        # Which process wins a connection is the scheduler's choice: on a loaded machine one
        # worker can take dozens in a row. Bounded by time, with pauses that let both wait.
        deadline = time.monotonic() + 20
        while len({pid for _, pid in streams}) < 2:
            seen = sorted({pid for _, pid in streams})
            assert time.monotonic() < deadline, f"{len(streams)} streams, all to {seen} in 20 s"
            streams.append(_open_pid_stream(port))
            time.sleep(0.02)
        pids = {pid for _, pid in streams}
        assert process.pid not in pids  # the supervisor itself serves nothing
        os.killpg(process.pid, signum)
        endings = []
        for sock, _ in streams:
            with sock:
                endings.append(_rest(sock))
        process.wait(timeout=10)
        output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    # Every stream ended cleanly, with the chunked body's final chunk, not a cut connection.
    assert all((b"\r\n" + ending).endswith(b"\r\n0\r\n\r\n") for ending in endings), endings
    # ...and its cleanup ran, in the worker that served it.
    cleanups = sorted(int(pid) for pid in re.findall(r"^cleanup (\d+)$", output, re.M))
    assert cleanups == sorted(pid for _, pid in streams), output
    assert output.count("shutting down: ending every open stream within") >= len(pids), output


def test_plain_hypercorn_serves_the_guide_too() -> None:
    port = free_port()
    command = [sys.executable, "-m", "hypercorn", "--worker-class", "trio"]
    command += ["--bind", f"127.0.0.1:{port}", "examples.guide:app"]
    with running(command, port) as process:
        assert _countdown(f"http://127.0.0.1:{port}") == list(range(10, 0, -1))
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_a_bad_app_path_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_dwex", "run", "examples.nope:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "cannot import 'examples.nope'" in result.stderr


def test_run_serves_from_synchronous_code_until_a_signal() -> None:
    """``trio_dwex.run(app, port=...)`` at a script's top level: no coroutine left unawaited."""
    port = free_port()
    script = (
        "import trio_dwex\n"
        "from examples.guide import app\n"
        "import gc\n"
        f"trio_dwex.run(app, port={port})\n"
        "print('run returned', gc.get_threshold(), flush=True)\n"
    )
    with running([sys.executable, "-c", script], port) as process:
        assert _countdown(f"http://127.0.0.1:{port}") == list(range(10, 0, -1))
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode == 0, output
    # It returned after a clean shutdown, having tuned the collector for a serving process.
    assert f"run returned {DEFAULT_GC_THRESHOLD}" in output, output
    assert "Traceback" not in output, output


def test_tune_gc_sets_thresholds_and_refuses_bad_ones() -> None:
    before = gc.get_threshold()
    try:
        tune_gc((5000, 20, 30))
        assert gc.get_threshold() == (5000, 20, 30)
        tune_gc(None)  # leaves the interpreter's setting alone
        assert gc.get_threshold() == (5000, 20, 30)
        for bad in [(1, 2), (-1, 10, 10), (1.5, 10, 10), [700, 10, 10], "700"]:
            with pytest.raises(ValueError, match="gc_threshold must be a tuple of three"):
                tune_gc(bad)  # type: ignore[arg-type]
        assert gc.get_threshold() == (5000, 20, 30)
    finally:
        gc.set_threshold(*before)


async def test_run_inside_trio_is_a_clear_error() -> None:
    import trio_dwex

    with pytest.raises(RuntimeError, match=r"await trio_dwex\.serve"):
        trio_dwex.run(DwexApp.__new__(DwexApp), port=0)
