"""``trio_dwex.broadcast``: one event to many streams, with ids, retention and replay.

A `Broadcast` hub owns topics. Each published event gets an id; a subscriber that reconnects
with ``Last-Event-ID`` is replayed what it missed, or told with a ``reset`` event that it
cannot be. The hub keeps its state in a backend: `MemoryBackend` for one process,
`RedisBackend` (Redis Streams, ``pip install trio-dwex[redis]``) across workers and hosts.
`Runs` builds on a hub: work detached from its connection (an LLM's answer), whose events a
client reattaches to after a reload, and that can be cancelled on purpose (docs/runs.md).

This layer sits above ``trio_dwex.streams`` (a subscription feeds an `SseStream`) and below
the framework. Inside it, the hub (``_hub``) sits above the backends (``_memory``, ``_redis``),
which sit above their contract (``_backend``); import-linter keeps it so. See
``docs/broadcast.md``.
"""

from typing import TYPE_CHECKING

from ._backend import (
    RESET_EVENT,
    BroadcastBackend,
    BroadcastUnavailable,
    Deliver,
    EndTopic,
    EventTooLarge,
    Replay,
    ResetReason,
)
from ._hub import Broadcast, Subscription
from ._memory import MemoryBackend
from ._runs import RUN_ENDED_EVENT, RUN_ID_PATTERN, RunInfo, Runs, RunStatus

if TYPE_CHECKING:  # what `__getattr__` below returns, for type checkers: the class, not object
    from ._redis import RedisBackend

__all__ = [
    "RESET_EVENT",
    "RUN_ENDED_EVENT",
    "RUN_ID_PATTERN",
    "Broadcast",
    "BroadcastBackend",
    "BroadcastUnavailable",
    "Deliver",
    "EndTopic",
    "EventTooLarge",
    "MemoryBackend",
    "RedisBackend",
    "Replay",
    "ResetReason",
    "RunInfo",
    "RunStatus",
    "Runs",
    "Subscription",
]


def __getattr__(name: str) -> object:
    # The Redis backend needs the optional `coredis` (pip install trio-dwex[redis]): import it
    # only when asked for, so that `import trio_dwex.broadcast` works without it.
    if name == "RedisBackend":
        from ._redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module 'trio_dwex.broadcast' has no attribute {name!r}")
