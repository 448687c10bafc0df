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

from trio_dwex.broadcast import BroadcastBackend, MemoryBackend

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
        #: More redis-server options (the cluster's); none for a plain server.
        self.extra_args: list[str] = []
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
                *self.extra_args,
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
    from trio_dwex.broadcast import RedisBackend

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


class RedisClusterNodes:
    """A Redis Cluster of ``size`` primaries (no replicas) on free loopback ports, one process
    each, made with ``redis-cli --cluster create``; stopped by PID."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.cli = shutil.which("redis-cli")
        if self.cli is None or shutil.which("redis-server") is None:
            pytest.fail(
                "redis-server or redis-cli is not installed: run .ci/install-system-packages "
                "(Debian's redis-server, which brings redis-cli) to run the cluster tests"
            )
        self.directory = directory
        self.nodes: list[RedisServer] = []
        for _ in range(size):
            node = RedisServer(directory)
            # The cluster bus gets its own free port (``--cluster-port``), not port + 10000,
            # which may be taken or above 65535.
            node.extra_args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"nodes-{node.port}.conf"),
                "--cluster-port",
                str(_free_port()),
                "--cluster-node-timeout",
                "2000",
            ]
            self.nodes.append(node)

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        assert self.cli is not None
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        # Every node must agree the cluster is up and see every slot assigned.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            infos = [self.command(port, "CLUSTER", "INFO") for port in self.ports]
            if all("cluster_state:ok" in info for info in infos):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok within 15 s")

    def command(self, port: int, *args: str) -> str:
        assert self.cli is not None
        done = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    cluster = RedisClusterNodes(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
