"""Shared by the reliability tests: a real server in this process, raw-socket clients, and the
process-level gauges (file descriptors, Trio tasks, RSS) that prove nothing leaked.

The clients are raw sockets on purpose: hostile input must reach Hypercorn byte for byte
(httpx would refuse to send most of it), and a connection that vanishes must vanish exactly
as we say (a FIN, or an RST through ``SO_LINGER`` 0), not as a client library decides.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from trio_dwex.serving import ServerLimits, serve
from trio_dwex.serving._fixes import READ_AHEAD_LIMIT
from trio_dwex.serving._serve import make_config

__all__ = [
    "ROOT",
    "Reply",
    "exchange",
    "listening_process",
    "open_fd_count",
    "read_response",
    "rss_kib",
    "running_server",
    "task_count",
]

ROOT = Path(__file__).resolve().parents[2]

_LINGER_RST = struct.pack("ii", 1, 0)
# A body may end without a line break right before the next pipelined response's status line.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3}) ")


@asynccontextmanager
async def running_server(
    app: Any,
    *,
    write_timeout: float | None = None,
    limits: ServerLimits | None = None,
    **config: Any,
) -> AsyncIterator[int]:
    """Serve ``app`` with `serve` (our patched Hypercorn Trio worker) on a free loopback port.

    Yields the port. ``limits`` are the server's (`ServerLimits`); ``config`` sets Hypercorn
    settings (``keep_alive_timeout``,
    ``h11_max_incomplete_size``...). On exit the server shuts down as on SIGTERM: open streams
    are closed at once and their cleanup has run when the block is left.
    """
    stop = trio.Event()
    config.setdefault("graceful_timeout", 2.0)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(
                serve,
                app,
                config=make_config(port=0, **config),
                write_timeout=write_timeout,
                limits=limits,
                # As on SIGTERM, but at once: a test's streams need no spread shutdown.
                drain_window=0.0,
                shutdown_trigger=stop.wait,
            )
        )
        try:
            yield int(binds[0].rsplit(":", 1)[1])
        finally:
            stop.set()


class Reply:
    """What a raw client received: the bytes, and how the exchange ended."""

    def __init__(self, data: bytes, *, closed: bool, reset: bool) -> None:
        self.data = data
        #: The server closed the connection (FIN or RST) before our deadline.
        self.closed = closed
        #: ... and it was an RST.
        self.reset = reset

    @property
    def status(self) -> int | None:
        """The status code of the first response, or ``None`` if none came."""
        if not self.data.startswith(b"HTTP/1."):
            return None
        return int(self.data.split(b" ", 2)[1])

    @property
    def statuses(self) -> list[int]:
        """Status codes of every response in the bytes (pipelining gives several)."""
        return [int(code) for code in _STATUS_LINE.findall(self.data)]

    def __repr__(self) -> str:
        return f"<Reply closed={self.closed} reset={self.reset} {self.data[:300]!r}>"


async def exchange(
    port: int,
    request: bytes,
    *,
    seconds: float = 5.0,
    until: bytes | None = None,
    byte_delay: float | None = None,
) -> Reply:
    """Send ``request`` on a fresh connection and read until the server closes it.

    Reading also stops after ``seconds`` (a hang is then visible as ``closed=False``), or as
    soon as ``until`` has been received (for responses that stay open, such as streams).
    ``byte_delay`` sends one byte at a time with that pause in between (slowloris).
    """
    received = bytearray()
    closed = reset = False
    with trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        await sock.connect(("127.0.0.1", port))
        with trio.move_on_after(seconds):
            try:
                if byte_delay is None:
                    await sock.send(request)
                else:
                    for index in range(len(request)):
                        await sock.send(request[index : index + 1])
                        await trio.sleep(byte_delay)
                while until is None or until not in received:
                    data = await sock.recv(65536)
                    if not data:
                        closed = True
                        break
                    received += data
            except (ConnectionResetError, BrokenPipeError):
                closed = reset = True
    return Reply(bytes(received), closed=closed, reset=reset)


#: A response head with its Content-Length, and the body so far.
_WHOLE = re.compile(rb".*?\r\ncontent-length: ([0-9]+)\r\n.*?\r\n\r\n(.*)", re.S | re.I)


async def read_response(client: trio.SocketStream, seconds: float = 5.0) -> bytes:
    """Read one response that has a ``Content-Length`` from an open connection, and no more
    than it (the connection stays usable for the next)."""
    received = b""
    with trio.fail_after(seconds):
        while not (whole := _WHOLE.match(received)) or len(whole[2]) < int(whole[1]):
            data = await client.receive_some(1)
            assert data, f"closed before the response was whole: {received!r}"
            received += data
    return received


def get(path: bytes | str, *headers: bytes | str, version: str = "1.1") -> bytes:
    """A GET request with ``Host`` and the given raw header lines."""
    if isinstance(path, str):
        path = path.encode()
    lines = [b"GET " + path + b" HTTP/" + version.encode(), b"Host: test"]
    lines += [h.encode() if isinstance(h, str) else h for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *headers]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def reset_on_close(sock: socket.socket | trio.socket.SocketType) -> None:
    """Make ``close()`` send RST instead of FIN, as a crashed or killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)


def unacknowledged_bytes(sock: socket.socket | trio.socket.SocketType) -> int:
    """Bytes sent on ``sock`` that the peer's kernel has not acknowledged yet (``SIOCOUTQ``)."""
    outq: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    return outq


def open_fd_count() -> int:
    """File descriptors this process has open now."""
    return len(os.listdir("/proc/self/fd"))


def rss_kib(pid: int | None = None) -> int:
    """Resident memory of process ``pid`` (this one by default) now, in KiB."""
    path = f"/proc/{'self' if pid is None else pid}/status"
    with open(path) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in {path}")


def task_count() -> int:
    """Every Trio task alive in this run: the root task's children, recursively."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None, "task_count() runs inside trio.run"
    pending = [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


async def vanish_after_first_event(
    port: int, path: str, *, rst: bool, marker: bytes = b"\ndata: ", headers: Sequence[str] = ()
) -> None:
    """Open a stream, wait for its first event, then leave: a FIN (``rst=False``) or an RST.

    ``marker`` is what counts as "open": the first event by default; ``b"\r\n\r\n"`` (the
    response headers) for a stream that may stay silent. ``headers`` are raw header lines
    added to the request (``"Authorization: Bearer ..."``).

    The FIN is a clean close: shut down our side, then read until the server closes its side
    (closing with unread bytes would send an RST instead). The RST is what a killed client or
    a NAT timeout looks like.
    """
    with trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(get(path, *headers))
        received = b""
        while marker not in received:
            data = await sock.recv(65536)
            if not data:
                raise AssertionError(f"{path}: closed before the first event: {received!r}")
            received += data
        if rst:
            reset_on_close(sock)
            return
        sock.shutdown(socket.SHUT_WR)
        with trio.fail_after(10):
            try:
                while await sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass  # the server may abort instead of closing; we sent our FIN either way


async def disconnect_storm(
    port: int,
    paths: list[str],
    *,
    cycles: int,
    concurrency: int,
    marker: bytes = b"\ndata: ",
    headers: Sequence[str] = (),
) -> dict[str, int]:
    """``cycles`` connect-then-vanish cycles, ``concurrency`` at a time; even ones FIN, odd RST.

    Cycles are spread over ``paths`` in turn, each request with the raw header lines
    ``headers``. Returns how many of each kind ran. Only
    ``concurrency`` client tasks exist, each taking the next cycle when it is done: a task per
    cycle, spawned up front, would hold 10,000 coroutines at once and its memory would show up
    in the RSS that this process measures for the server.
    """
    done = {"fin": 0, "rst": 0}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < cycles:
            index = next_index
            next_index += 1
            rst = index % 2 == 1
            path = paths[index % len(paths)]
            await vanish_after_first_event(port, path, rst=rst, marker=marker, headers=headers)
            done["rst" if rst else "fin"] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, cycles)):
            nursery.start_soon(worker)
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(
    target: str, port: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m trio_dwex run TARGET --port PORT`` until it listens; killed at the end.

    Its stdout and stderr go to one pipe, for the caller to read after the process ended.
    """
    command = [sys.executable, "-m", "trio_dwex", "run", target, "--port", str(port), *args]
    with listening_process(command, port, env=env) as process:
        yield process


@contextmanager
def listening_process(
    command: Sequence[str], port: int, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (in the repository, which is on its ``PYTHONPATH``) until it accepts
    connections on the loopback ``port``; killed at the end.

    Its stdout and stderr go to one pipe, for the caller to read after the process ended.
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    process = subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    output = process.communicate()[0].decode(errors="replace")
                    raise RuntimeError(f"the server did not start listening:\n{output}") from None
                time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def open_streams(
    port: int, paths: list[str], count: int, *, concurrency: int = 100
) -> list[trio.socket.SocketType]:
    """``count`` open streams (spread over ``paths``), each past its first event."""
    limiter = trio.CapacityLimiter(concurrency)
    socks: list[trio.socket.SocketType] = []

    async def one(index: int) -> None:
        async with limiter:
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            await sock.connect(("127.0.0.1", port))
            await sock.send(get(paths[index % len(paths)]))
            received = b""
            while b"\ndata: " not in received:
                data = await sock.recv(65536)
                if not data:
                    raise AssertionError(f"closed before the first event: {received!r}")
                received += data

    try:
        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(one, index)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def read_to_end(sock: trio.socket.SocketType, seconds: float) -> bytes:
    """Everything until the server closes ``sock`` (which is then closed); the last bytes."""
    tail = b""
    with sock, trio.fail_after(seconds):
        while data := await sock.recv(65536):
            tail = (tail + data)[-64:]
    return tail


#: Bytes that `vanish_behind_unread_bytes` pipelines: more than the server reads behind a stream.
UNREAD_PIPELINE = 2 * READ_AHEAD_LIMIT + 2**14


async def vanish_behind_unread_bytes(port: int, path: str, *, seconds: float = 10.0) -> None:
    """Open a stream, wait for its first event, make the server stop reading, then reset.

    Behind a running stream h11 is paused, so our server takes at most ``READ_AHEAD_LIMIT``
    bytes into the protocol (the read that finds it paused) and ``READ_AHEAD_LIMIT`` more into
    its read-ahead buffer, and then stops reading this client. We pipeline more than both, and
    wait (at most ``seconds``) until the server's kernel has acknowledged every byte: bytes the
    server will never read then stand in front of the RST, so it cannot learn of the reset by
    reading. Only a write that fails tells it that the client has gone.

    (The server's kernel takes all of `UNREAD_PIPELINE` on Linux: its receive buffer starts
    at 128 KiB, and the server has read 64 KiB or more of it before it stops.)
    """
    pipeline = get("/t/ping") * (UNREAD_PIPELINE // len(get("/t/ping")) + 1)
    with trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(get(path))
        received = b""
        while b"\ndata: " not in received:
            data = await sock.recv(65536)
            if not data:
                raise AssertionError(f"{path}: closed before the first event: {received!r}")
            received += data
        with trio.fail_after(seconds), memoryview(pipeline) as view:
            sent = 0
            while sent < len(view):
                sent += await sock.send(view[sent:])
            while unacknowledged_bytes(sock):  # noqa: ASYNC110 (kernel state, no event)
                await trio.sleep(0.01)
        reset_on_close(sock)
