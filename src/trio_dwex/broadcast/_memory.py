"""`MemoryBackend`: broadcast topics in this process's memory.

No setup and no task of its own: `MemoryBackend.publish` assigns the id, keeps the event for
replay and hands it to the hub at once, in the publisher's task. One process only; across
workers and hosts, use `RedisBackend`.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ..wire._sse import SseEvent
from ._backend import (
    BroadcastBackend,
    Deliver,
    EndTopic,
    IdKey,
    Replay,
    ResetReason,
    parse_stream_id,
    rebuild_event,
)

__all__ = ["MemoryBackend"]


class _MemoryTopic:
    __slots__ = ("generation", "retained", "seq", "trimmed_to")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.seq = 0
        #: The highest sequence number no longer retained (0: nothing trimmed yet).
        self.trimmed_to = 0
        self.retained: deque[tuple[float, int, SseEvent]] = deque()


#: Seconds between two sweeps of a `MemoryBackend`'s idle topics.
_SWEEP_EVERY = 1.0

#: Topic generations: distinct for every topic of every backend of this process (a counter),
#: and across restarts (it starts from the clock, in microseconds).
_GENERATIONS = itertools.count(time.time_ns() // 1000)


class MemoryBackend(BroadcastBackend):
    """Topics in this process's memory: no setup, one process.

    Ids are ``"<generation>-<n>"``: ``n`` counts the topic's events from 1, and the generation
    (unique per topic and process, from the clock) tells an id of this run from one handed out
    before a restart, which is answered with a reset instead of a wrong replay.

    A topic's state (its generation, counter and retained events) is dropped once it has no
    local subscriber and none of its events is retained any more (they aged out), so that
    dynamic topics (one per user, per job) do not make the memory grow without limit. A client
    that comes back later with an id of a dropped topic gets a reset (reason ``unknown``), as
    after a restart: its events are gone either way.

    Args:
        retain_count: events kept per topic for replay.
        retain_seconds: how long an event is kept for replay.
    """

    def __init__(self, *, retain_count: int = 1000, retain_seconds: float = 300.0) -> None:
        if not isinstance(retain_count, int) or isinstance(retain_count, bool) or retain_count < 0:
            raise ValueError(f"retain_count must be a non-negative int, got {retain_count!r}")
        if not retain_seconds >= 0:
            raise ValueError(
                f"retain_seconds must be a non-negative number, got {retain_seconds!r}"
            )
        self.retain_count = retain_count
        self.retain_seconds = retain_seconds
        self._topics: dict[str, _MemoryTopic] = {}
        self._watched: set[str] = set()
        self._last_sweep = -_SWEEP_EVERY
        self._deliver: Deliver | None = None

    @asynccontextmanager
    async def open(self, deliver: Deliver, end: EndTopic) -> AsyncIterator[None]:
        # Nothing runs in the background: publish hands each event to the hub in the
        # publisher's task. The topics outlive the block, so a hub entered again later on
        # this backend replays what the previous one published.
        if self._deliver is not None:
            raise RuntimeError(
                "this MemoryBackend is already open: a backend serves one Broadcast at a time"
            )
        await trio.lowlevel.checkpoint()
        self._deliver = deliver
        try:
            yield
        finally:
            self._deliver = None

    def _topic(self, topic: str) -> _MemoryTopic:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _MemoryTopic(next(_GENERATIONS))
        return state

    def _trim(self, state: _MemoryTopic) -> None:
        retained = state.retained
        cutoff = trio.current_time() - self.retain_seconds
        while retained and (len(retained) > self.retain_count or retained[0][0] < cutoff):
            state.trimmed_to = retained.popleft()[1]

    def _sweep(self) -> None:
        """Drop idle topics whose events all aged out; at most once every `_SWEEP_EVERY` s."""
        now = trio.current_time()
        if now - self._last_sweep < _SWEEP_EVERY:
            return
        self._last_sweep = now
        for topic, state in list(self._topics.items()):
            if topic not in self._watched:
                self._trim(state)
                if not state.retained:
                    del self._topics[topic]

    async def publish(self, topic: str, event: SseEvent) -> str:
        self._sweep()
        state = self._topic(topic)
        state.seq += 1
        message = rebuild_event(event, f"{state.generation}-{state.seq}")
        state.retained.append((trio.current_time(), state.seq, message))
        self._trim(state)
        if self._deliver is not None:
            self._deliver(topic, message)
        await trio.lowlevel.checkpoint()
        assert message.id is not None
        return message.id

    async def watch(self, topic: str) -> None:
        self._watched.add(topic)
        await trio.lowlevel.checkpoint()

    def unwatch(self, topic: str) -> None:
        self._watched.discard(topic)
        self._sweep()

    async def replay(self, topic: str, last_event_id: str) -> Replay:
        await trio.lowlevel.checkpoint()
        self._sweep()
        state = self._topics.get(topic)
        if state is None:  # no event yet, or dropped when its events aged out
            return Replay([], ResetReason.UNKNOWN, "")
        self._trim(state)
        latest = f"{state.generation}-{state.seq}" if state.seq else ""
        key = self.id_key(last_event_id)
        if key is None or key[0] != state.generation or key[1] > state.seq:
            return Replay([], ResetReason.UNKNOWN, latest)
        if key[1] < state.trimmed_to:
            return Replay([], ResetReason.TOO_OLD, latest)
        retained = state.retained
        start = 0 if not retained else max(0, key[1] - retained[0][1] + 1)
        return Replay([item[2] for item in itertools.islice(retained, start, None)], None, latest)

    def id_key(self, event_id: str) -> IdKey | None:
        return parse_stream_id(event_id)
