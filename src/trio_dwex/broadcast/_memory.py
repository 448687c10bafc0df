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
    DEFAULT_RETAIN_BYTES,
    BroadcastBackend,
    Deliver,
    EndTopic,
    EventTooLarge,
    IdKey,
    Replay,
    ResetReason,
    event_size,
    parse_stream_id,
    rebuild_event,
)

__all__ = ["MemoryBackend"]


class _MemoryTopic:
    """One topic's counter and retained events; `MemoryBackend` keeps it within its bounds."""

    __slots__ = ("generation", "retained", "retained_bytes", "seq", "trimmed_to")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.seq = 0
        #: The highest sequence number no longer retained (0: nothing trimmed yet).
        self.trimmed_to = 0
        #: (when, sequence number, event, its size), oldest first.
        self.retained: deque[tuple[float, int, SseEvent, int]] = deque()
        #: The sum of the sizes in ``retained``.
        self.retained_bytes = 0

    def append(self, when: float, event: SseEvent, size: int) -> None:
        self.seq += 1
        self.retained.append((when, self.seq, event, size))
        self.retained_bytes += size

    def trim(self, count: int, size: int, cutoff: float) -> None:
        """Drop the oldest events until at most ``count`` events of at most ``size`` bytes in
        all are left, none from before ``cutoff``."""
        retained = self.retained
        while retained and (
            len(retained) > count or self.retained_bytes > size or retained[0][0] < cutoff
        ):
            _, self.trimmed_to, _, dropped = retained.popleft()
            self.retained_bytes -= dropped


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

    Retention is bounded three ways, whichever bites first: events, bytes and age. An event
    larger than ``retain_bytes`` is refused with `EventTooLarge` (a 413), since keeping it
    would evict every other. Subscribers and replays share the retained events (one object
    per event), so a topic costs its retention once, however many clients read it.

    Args:
        retain_count: events kept per topic for replay.
        retain_bytes: bytes kept per topic for replay (see `event_size`: the encoded event,
            its id line included; in memory, about twice that); also the largest event taken.
        retain_seconds: how long an event is kept for replay.
    """

    def __init__(
        self,
        *,
        retain_count: int = 1000,
        retain_bytes: int = DEFAULT_RETAIN_BYTES,
        retain_seconds: float = 300.0,
    ) -> None:
        if not isinstance(retain_count, int) or isinstance(retain_count, bool) or retain_count < 0:
            raise ValueError(f"retain_count must be a non-negative int, got {retain_count!r}")
        if not isinstance(retain_bytes, int) or isinstance(retain_bytes, bool) or retain_bytes < 1:
            raise ValueError(f"retain_bytes must be a positive int, got {retain_bytes!r}")
        if not retain_seconds >= 0:
            raise ValueError(
                f"retain_seconds must be a non-negative number, got {retain_seconds!r}"
            )
        self.retain_count = retain_count
        self.retain_bytes = retain_bytes
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
        cutoff = trio.current_time() - self.retain_seconds
        state.trim(self.retain_count, self.retain_bytes, cutoff)

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
        message = rebuild_event(event, f"{state.generation}-{state.seq + 1}")
        size = event_size(message)
        if size > self.retain_bytes:
            await trio.lowlevel.checkpoint()
            raise EventTooLarge(topic, size, self.retain_bytes)
        state.append(trio.current_time(), message, size)
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
        # References to the retained events, not copies: one page, whatever its size.
        return Replay([item[2] for item in itertools.islice(retained, start, None)], None, latest)

    async def history(self, topic: str) -> Replay:
        await trio.lowlevel.checkpoint()
        self._sweep()
        state = self._topics.get(topic)
        if state is None:
            return Replay([], None, "")
        self._trim(state)
        latest = f"{state.generation}-{state.seq}" if state.seq else ""
        return Replay([item[2] for item in state.retained], None, latest)

    def id_key(self, event_id: str) -> IdKey | None:
        return parse_stream_id(event_id)
