"""Measure what a topic with no subscriber costs: 400 posts of 1 MB to the activity example.

Issue 18 found 895 MB resident after this attack, with the hub keeping 1,000 events per topic
whatever their size. Not a test (the figures depend on the machine): run it by hand, from the
repository's root, and compare with docs/broadcast.md::

    python -m tests.broadcast.retention_rss memory [posts]
    python -m tests.broadcast.retention_rss redis [posts]    # starts its own redis-server

It serves ``examples.activity_broadcast`` in a process of its own, posts ``posts`` (400)
activities of 1,000,000 bytes of JSON, and prints that process's resident memory before the
first and one second after the last (for Redis, also what Redis holds for the topic).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.broadcast.conftest import RedisServer

#: The body of one post: 1,000,000 bytes of JSON.
BODY = json.dumps({"userId": "u", "activity": "x" * (1_000_000 - 35)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid``, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def redis_holds(server: RedisServer) -> str:
    """How many entries and bytes of memory Redis holds for the activity topic."""

    def command(*args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(server.port), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    key = "trio-dwex:broadcast:activity"
    return f"{command('XLEN', key)} entries, {int(command('MEMORY', 'USAGE', key)) / 2**20:.0f} MiB"


def measure(broadcast: str, posts: int) -> str:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.activity_broadcast",
            "--broadcast",
            broadcast,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(100):
                try:
                    client.post("/activity", json={"userId": "u", "activity": "warm-up"})
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            before = rss_mib(server.pid)
            statuses: dict[int, int] = {}
            for _ in range(posts):
                response = client.post(
                    "/activity", content=BODY, headers={"content-type": "application/json"}
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            time.sleep(1)
            after = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    return (
        f"{posts} posts of {len(BODY):,} bytes, answered {statuses}: "
        f"RSS {before:.0f} MiB before, {after:.0f} MiB after"
    )


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "memory"
    posts = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    if kind == "memory":
        print(f"memory: {measure('memory://', posts)}")
        return
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(Path(directory))
        redis.start()
        try:
            print(f"redis: {measure(redis.url, posts)}; Redis holds {redis_holds(redis)}")
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
