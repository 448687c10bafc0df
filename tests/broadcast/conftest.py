"""Fixtures for the broadcast suite: a real redis-server per test, and the hub on each backend.

The Redis tests need Debian's ``redis-server`` binary; CI installs it with
``.ci/install-system-packages``. Each test gets its own server on a free loopback port, with
no persistence unless the test asks for it, in a temporary directory, stopped by PID.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trio_dwex.streams.broadcast import BroadcastBackend, MemoryBackend

_prefixes = itertools.count()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on a fixed loopback port, which tests may kill and restart."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: run .ci/install-system-packages "
                "(it installs Debian's redis-server) to run the broadcast tests"
            )
        self.binary = binary
        self.directory = directory
        self.persistent = persistent
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        """SIGKILL: a crash, not a clean shutdown."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(*, persistent: bool = False) -> RedisServer:
        server = RedisServer(tmp_path, persistent=persistent)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory()


BackendFactory = Callable[..., BroadcastBackend]


@pytest.fixture(params=["memory", "redis"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_backend(backend_kind: str, request: pytest.FixtureRequest) -> BackendFactory:
    """Backends of the parametrized kind; Redis ones share one server and one key prefix."""
    if backend_kind == "memory":
        return lambda **kwargs: MemoryBackend(**kwargs)
    from trio_dwex.streams.redis_backend import RedisBackend

    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"test{next(_prefixes)}:"

    def make(**kwargs: object) -> BroadcastBackend:
        options: dict[str, object] = {
            "key_prefix": prefix,
            "backoff_max": 0.2,
            "block_seconds": 0.5,
            "reader_linger": 0.2,
        }
        options.update(kwargs)
        return RedisBackend(server.url, **options)  # type: ignore[arg-type]

    return make
