"""coredis stays optional: without it, the broadcast package and a memory hub work as ever."""

from __future__ import annotations

import subprocess
import sys

#: Run in a fresh interpreter where ``import coredis`` fails, as where it is not installed.
WITHOUT_COREDIS = """
import sys

sys.modules["coredis"] = None  # an import of it now raises ImportError

import trio

import trio_dwex
import trio_dwex.broadcast as broadcast
from trio_dwex.broadcast import Broadcast


async def main() -> None:
    async with Broadcast.from_url("memory://") as hub, hub.subscribe("t") as subscription:
        await hub.publish("t", "x")
        assert (await anext(subscription)).data == "x"


trio.run(main)
assert "trio_dwex.broadcast._redis" not in sys.modules, "the Redis backend was imported"
for attempt in (lambda: broadcast.RedisBackend, lambda: Broadcast.from_url("redis://h:1/0")):
    try:
        attempt()
    except ImportError as exc:
        assert "coredis" in str(exc), exc
    else:
        raise AssertionError("the Redis backend was usable without coredis")
print("ok")
"""


def test_the_broadcast_package_works_without_coredis() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_COREDIS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
