"""The broadcast hub: named topics, ids from the hub, Last-Event-ID replay, bounded fan-out.

Theory of operation. A `Broadcast` owns, per topic, the set of *local* subscribers (those of
this process) and fans every event of the topic out to them without ever waiting on one of
them. Where the events come from and how they are kept is the backend's business:

* `MemoryBackend` assigns the ids, keeps the retained events and hands each published event to
  the hub at once, in the publisher's task. One process only.
* `RedisBackend` (``trio_dwex.broadcast._redis``) appends to a Redis Stream per topic; one
  reader task per topic and process reads the stream and hands each entry to the hub, so every
  process sees every event of every other, with the stream entry id as the event id.

Either way an event is encoded once per process: the hub builds one `SseEvent` carrying the id,
and every subscriber gets that same object (its bytes are cached in it).

**Replay with no gap and no duplicate.** `Broadcast.subscribe` registers the subscriber for
live events *first*, then asks the backend for the retained events after ``last_event_id``, and
remembers the last id replayed (the high-water mark). Live events that arrived meanwhile and
are at or below that mark are duplicates of replayed ones and are dropped; the first live
event above it switches the check off (events of a topic arrive in id order). Registering
before reading means an event published during the replay is either in the replay or in the
live buffer, never in neither.

**An id that cannot be replayed** (its successors were trimmed, or it is from another
incarnation of the topic, e.g. after a restart without persistence) is answered with one
``event: reset`` whose ``id`` is the topic's latest id and whose data says why (see
`RESET_EVENT`); live events follow. The client is never silently given a gap.

**Slow subscribers.** Each subscriber has a bounded buffer; when it is full the hub applies the
named `OverflowPolicy`, the same as `SseStream`'s, and moves on to the next subscriber. Under
`OverflowPolicy.CLOSE` the subscription ends after its buffered events, and its client
reconnects with ``Last-Event-ID`` and resumes from the retained events.
"""

from __future__ import annotations

import abc
import enum
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import trio

from .._errors import ServiceUnavailableException
from .._unset import UNSET
from ..streams._stream import DEFAULT_BUFFER_SIZE, OverflowPolicy, SseStream
from ..wire._sse import SseEvent, to_event

__all__ = [
    "RESET_EVENT",
    "Broadcast",
    "BroadcastBackend",
    "BroadcastUnavailable",
    "Deliver",
    "EndTopic",
    "MemoryBackend",
    "Replay",
    "ResetReason",
    "Subscription",
    "rebuild_event",
    "reset_event",
]

logger = logging.getLogger("trio_dwex.broadcast")

#: The ``event:`` name of the event a subscriber gets instead of a replay it cannot have.
#: Its ``id`` is the topic's latest id (``""`` for a topic with no event yet, which clears the
#: client's last event id), so the client's next reconnection does not ask again; its data is
#: JSON ``{"reason": "too_old" | "unknown", "lastEventId": ..., "message": ...}``. A client
#: that gets it has missed events and should reload its state (e.g. over REST).
RESET_EVENT: Final = "reset"

Deliver = Callable[[str, SseEvent], None]
"""How a backend hands an event of a topic, with its id, to the hub: ``deliver(topic, event)``."""

EndTopic = Callable[[str], None]
"""How a backend ends every local subscription of a topic it can no longer deliver (its reader
crashed): ``end(topic)``. The subscriptions' iterations end and their streams close, so their
clients reconnect (with ``Last-Event-ID``) and subscribe anew."""

IdKey = tuple[int, int]
"""A topic's ids as something ordered; each backend knows how to read its own ids."""


class BroadcastUnavailable(ServiceUnavailableException):
    """The broadcast backend cannot be reached (Redis down) within the configured timeout.

    Raised by `Broadcast.publish` and when opening a subscription; live subscriptions that are
    already open are not ended by an outage, they wait for the backend to come back. A 503:
    raised in a handler (or by a stream before its first event), the client gets a 503 and an
    EventSource retries.
    """


class ResetReason(enum.Enum):
    """Why a ``Last-Event-ID`` could not be replayed (the ``reason`` of a `RESET_EVENT`)."""

    #: Events after it are no longer retained (by count or by age).
    TOO_OLD = "too_old"
    #: The id was never an id of this topic: malformed, from the future, or from another
    #: incarnation of the topic (the process restarted, or Redis lost its data).
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Replay:
    """What a backend answers to "the events of this topic after this id".

    Attributes:
        events: the retained events after the id, oldest first (empty when ``reset`` is set).
        reset: why the id could not be replayed, or ``None`` if ``events`` is complete.
        latest_id: the topic's latest id when the answer was made (``""`` if none); the reset
            event carries it, so that live events start after it.
    """

    events: list[SseEvent]
    reset: ResetReason | None = None
    latest_id: str = ""


def rebuild_event(event: SseEvent, event_id: str) -> SseEvent:
    """``event`` with the hub's id, without serializing its data again.

    The data is passed on as its wire text (a ``str`` is sent as is), so the new event costs one
    line split and one encoding, and a backend that stores the text (Redis) rebuilds exactly
    the same bytes in every process.
    """
    text = event.data_text
    return SseEvent(
        data=UNSET if text is None else text,
        event=event.event,
        id=event_id,
        retry=event.retry,
        comment=event.comment,
    )


class BroadcastBackend(abc.ABC):
    """Where a `Broadcast` keeps its topics: ids, retention, and delivery to every process.

    A backend is used by one hub at a time, between `open` and `close`, which the hub calls
    from one task (its owner's): a backend that runs tasks opens its nursery in `open` and
    cancels and exits it in `close`. Implementations must
    hand every event of a topic that has local subscribers (see `watch`) to ``deliver``
    exactly once and in id order.
    """

    @abc.abstractmethod
    async def open(self, deliver: Deliver, end: EndTopic) -> None:
        """Start; from now on, events of watched topics go to ``deliver``.

        ``end(topic)`` ends the local subscriptions of a topic the backend can no longer
        deliver (a crash of its reader): they end instead of waiting forever, and their
        clients reconnect.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every task and release every connection; called once per `open`."""

    @abc.abstractmethod
    async def publish(self, topic: str, event: SseEvent) -> str:
        """Append ``event`` (it has no id) to ``topic`` and return the id it was given."""

    @abc.abstractmethod
    async def watch(self, topic: str) -> None:
        """Make sure events of ``topic`` are being delivered before returning.

        Called when a topic gets its first local subscriber, before `replay`; every event
        published after this returns must reach ``deliver``.
        """

    @abc.abstractmethod
    def unwatch(self, topic: str) -> None:
        """``topic`` has no local subscriber any more; delivery for it may stop."""

    @abc.abstractmethod
    async def replay(self, topic: str, last_event_id: str) -> Replay:
        """The retained events of ``topic`` after ``last_event_id``, or why there are none."""

    @abc.abstractmethod
    def id_key(self, event_id: str) -> IdKey | None:
        """``event_id`` as an ordered key, or ``None`` if it is not an id this backend makes."""


class _Subscriber:
    """One subscription's live side: a bounded buffer, or an `SseStream` fed directly.

    `offer` is called by the hub's fan-out and never waits. Before the replay is known, live
    events are buffered; ``high_water`` then drops the ones the replay already had.
    """

    __slots__ = (
        "_key",
        "buffer",
        "capacity",
        "direct",
        "ended",
        "high_water",
        "lot",
        "overflow",
        "overflowed",
    )

    def __init__(
        self, capacity: int, overflow: OverflowPolicy, key: Callable[[str], IdKey | None]
    ) -> None:
        self.capacity = capacity
        self.overflow = overflow
        self._key = key
        self.buffer: deque[SseEvent] = deque()
        self.lot = trio.lowlevel.ParkingLot()
        self.high_water: IdKey | None = None
        self.direct: SseStream | None = None
        self.ended = False
        self.overflowed = False

    def offer(self, event: SseEvent) -> bool:
        """Take a live event; ``False`` once the subscriber is done and can be forgotten."""
        if self.ended:
            return False
        if self.high_water is not None:
            key = self._key(event.id or "")
            if key is not None and key <= self.high_water:
                return True  # the replay had it
            self.high_water = None  # ordered from here on: no more duplicates possible
        if self.direct is not None:
            if self.direct.send_nowait(event):
                return True
            if self.direct.is_closed:  # the stream's own policy closed it
                self.ended = True
                return False
            return True  # dropped by DROP_NEWEST
        if len(self.buffer) < self.capacity:
            self.buffer.append(event)
            self.lot.unpark_all()
            return True
        if self.overflow is OverflowPolicy.DROP_NEWEST:
            return True
        if self.overflow is OverflowPolicy.DROP_OLDEST:
            self.buffer.popleft()
            self.buffer.append(event)
            return True
        logger.warning(
            "ending a broadcast subscription: it reads slower than events are published and "
            "its buffer of %d events is full (overflow policy CLOSE)",
            self.capacity,
        )
        self.overflowed = True
        self.end()
        return False

    def set_high_water(self, key: IdKey | None) -> None:
        """Drop buffered events at or below ``key`` and keep dropping live ones until past it."""
        if key is None:
            return
        while self.buffer:
            first = self._key(self.buffer[0].id or "")
            if first is None or first > key:
                return  # past the mark: no duplicate can follow
            self.buffer.popleft()
        self.high_water = key

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.lot.unpark_all()
            if self.direct is not None:
                if self.overflowed:
                    # The runner reports an overflowed stream as CloseReason.OVERFLOW.
                    self.direct._overflowed = True
                self.direct.close()


class Subscription:
    """The events of one topic for as long as an ``async with`` block runs.

    Made by `Broadcast.subscribe`; entering it registers for live events and fetches the replay,
    exiting unregisters. Iterate it for the events: first the replayed ones (or one
    `RESET_EVENT`), then the live ones. The iteration ends when the hub shuts down or, under
    `OverflowPolicy.CLOSE`, when this subscriber fell too far behind (`overflowed` tells).

    Events carry their data as the wire text (``event.data`` is a ``str``, JSON for non-string
    data), the same whichever backend brought them.
    """

    def __init__(self, hub: Broadcast, topic: str, last_event_id: str | None) -> None:
        self.topic = topic
        self.last_event_id = last_event_id or None
        self._hub = hub
        self._replay: deque[SseEvent] = deque()
        self._subscriber: _Subscriber | None = None
        self._entered = False

    @property
    def overflowed(self) -> bool:
        """True if the hub ended this subscription because its buffer was full."""
        return self._subscriber is not None and self._subscriber.overflowed

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Subscription can be entered only once; call subscribe() again")
        self._entered = True
        self._subscriber = await self._hub._register(self.topic)
        try:
            if self.last_event_id is not None:
                await self._load_replay(self.last_event_id)
        except BaseException:
            self._hub._unregister(self.topic, self._subscriber)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscriber is not None:
            self._subscriber.end()
            self._hub._unregister(self.topic, self._subscriber)

    async def _load_replay(self, last_event_id: str) -> None:
        assert self._subscriber is not None
        backend = self._hub.backend
        try:
            with trio.fail_after(self._hub.replay_timeout):
                replay = await backend.replay(self.topic, last_event_id)
        except trio.TooSlowError:
            raise BroadcastUnavailable(
                f"the replay of topic {self.topic!r} took longer than "
                f"{self._hub.replay_timeout}s (replay_timeout); is the backend reachable?"
            ) from None
        if replay.reset is None:
            self._replay.extend(replay.events)
            last = replay.events[-1].id if replay.events else last_event_id
        else:
            self._replay.append(self._hub._reset_event(replay, last_event_id))
            last = replay.latest_id
        self._subscriber.set_high_water(backend.id_key(last or ""))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SseEvent:
        subscriber = self._subscriber
        if subscriber is None:
            raise RuntimeError("iterate a Subscription inside its `async with` block")
        await trio.lowlevel.checkpoint()
        if self._replay:
            return self._replay.popleft()
        while not subscriber.buffer:
            if subscriber.ended:
                raise StopAsyncIteration
            await subscriber.lot.park()
        return subscriber.buffer.popleft()

    async def _feed(self, stream: SseStream) -> None:
        """Send the replay and the buffered events into ``stream``, then let the hub feed it.

        Waiting on the stream (``send``) applies its back-pressure during the replay; once the
        backlog is written, the hub's fan-out puts events straight into the stream's buffer,
        so a live event costs no task switch here. The switch happens without a checkpoint
        after the buffer is found empty, so nothing can slip in between.
        """
        subscriber = self._subscriber
        assert subscriber is not None
        while self._replay:
            await stream.send(self._replay.popleft())
        while subscriber.buffer:
            await stream.send(subscriber.buffer.popleft())
        if subscriber.ended:
            if subscriber.overflowed:
                stream._overflowed = True
            stream.close()
            return
        subscriber.direct = stream
        await trio.sleep_forever()


class Broadcast:
    """A hub of named topics: publish once, every subscriber of every process gets it.

    Use it as an async context manager (list it as a provider, and the app enters it at
    startup and exits it at shutdown)::

        async with Broadcast() as hub:
            await hub.publish("news", SseEvent(data={"title": "hello"}, event="news"))

    Args:
        backend: where topics live; `MemoryBackend` (the default) for one process, or
            ``RedisBackend`` to share topics between processes and hosts.
        subscriber_buffer: events held per subscriber that reads slower than events arrive.
        overflow: what happens to a subscriber whose buffer is full (see `OverflowPolicy`).
        replay_timeout: seconds that opening a subscription may take (replay and, for Redis,
            reaching the server) before it fails with `BroadcastUnavailable`.
    """

    def __init__(
        self,
        backend: BroadcastBackend | None = None,
        *,
        subscriber_buffer: int = DEFAULT_BUFFER_SIZE,
        overflow: OverflowPolicy = OverflowPolicy.CLOSE,
        replay_timeout: float = 10.0,
    ) -> None:
        if (
            not isinstance(subscriber_buffer, int)
            or isinstance(subscriber_buffer, bool)
            or subscriber_buffer < 1
        ):
            raise ValueError(
                f"Broadcast subscriber_buffer must be a positive int, got {subscriber_buffer!r}"
            )
        if not isinstance(overflow, OverflowPolicy):
            raise ValueError(f"Broadcast overflow must be an OverflowPolicy, got {overflow!r}")
        if not replay_timeout > 0:
            raise ValueError(f"Broadcast replay_timeout must be positive, got {replay_timeout!r}")
        self.backend = backend if backend is not None else MemoryBackend()
        self.subscriber_buffer = subscriber_buffer
        self.overflow = overflow
        self.replay_timeout = replay_timeout
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._open = False

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> Broadcast:
        """A hub on the backend a URL names: ``memory://`` or ``redis://host:port/db``.

        For a setting or a command-line option. Other keyword arguments go to `Broadcast`.
        """
        if url in ("memory", "memory://"):
            backend: BroadcastBackend = MemoryBackend()
        elif url.startswith(("redis://", "rediss://", "unix://")):
            from ._redis import RedisBackend  # optional dependency: coredis

            backend = RedisBackend(url)
        else:
            raise ValueError(
                f"unknown broadcast URL {url!r}: use memory:// or redis://host:port/db"
            )
        return cls(backend, **kwargs)  # type: ignore[arg-type]

    # -- lifetime -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._open:
            raise RuntimeError("this Broadcast is already open; enter it once at a time")
        # The backend's tasks (Redis readers) live in a nursery the backend enters here and
        # exits in __aexit__, in the task that owns the hub (the app's lifespan task when the
        # hub is a provider), not in whichever request happened to need them.
        await self.backend.open(self._deliver, self._end_topic)
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._open:
            return
        self._open = False
        # End every subscription first, so that their consumers (SSE streams) finish normally
        # instead of waiting on a hub that will never deliver again.
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                subscriber.end()
        self._subscribers.clear()
        await self.backend.close()

    @property
    def is_open(self) -> bool:
        """True between entering and exiting the hub."""
        return self._open

    def _check_open(self, what: str) -> None:
        if not self._open:
            raise RuntimeError(
                f"Broadcast.{what}() needs an open hub: use `async with Broadcast(...) as hub`, "
                "or list the Broadcast as a provider so the app enters it at startup"
            )

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, topic: str, event: object) -> str:
        """Send ``event`` to every subscriber of ``topic``, in every process; return its id.

        ``event`` is an `SseEvent`, a mapping of its fields, or plain data (like a handler's
        yield). Its data is serialized here, once. The hub gives it its id: an event that has
        an ``id`` of its own is refused, because replay relies on the hub's order.

        Raises:
            BroadcastUnavailable: the backend could not take the event (Redis down for
                longer than its publish timeout).
        """
        self._check_open("publish")
        _check_topic(topic)
        message = to_event(event)
        if message.id is not None:
            raise ValueError(
                f"Broadcast.publish() assigns event ids itself; got an event with id="
                f"{message.id!r}: leave id unset (put your own identifier in data)"
            )
        return await self.backend.publish(topic, message)

    def _deliver(self, topic: str, event: SseEvent) -> None:
        """The fan-out: never waits, so one slow subscriber cannot slow the others."""
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            return
        finished = [subscriber for subscriber in subscribers if not subscriber.offer(event)]
        for subscriber in finished:
            self._unregister(topic, subscriber)

    def _end_topic(self, topic: str) -> None:
        """End every local subscription of ``topic``: the backend cannot deliver it any more."""
        subscribers = self._subscribers.pop(topic, None)
        if not subscribers:
            return
        logger.warning(
            "ending the %d local subscription(s) of broadcast topic %r: its backend can no "
            "longer deliver it; their clients reconnect",
            len(subscribers),
            topic,
        )
        for subscriber in subscribers:
            subscriber.end()
        self.backend.unwatch(topic)

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(self, topic: str, last_event_id: str | None = None) -> Subscription:
        """The events of ``topic``, as an async context manager that yields an async iterator.

        With ``last_event_id`` (the client's ``Last-Event-ID``), the retained events after it
        come first, then the live ones, with no gap and no duplicate; if it cannot be replayed,
        one `RESET_EVENT` comes first instead. ``None`` or ``""``: live events only.
        """
        _check_topic(topic)
        return Subscription(self, topic, last_event_id)

    def stream(self, topic: str, last_event_id: str | None = None) -> SseStream:
        """An `SseStream` of ``topic`` to return from an ``@Sse`` handler.

        Its subscription is opened by a task in the stream's own nursery, so it exists only
        while the stream runs: a client that disconnects ends it, whatever the reason. The
        stream's buffer is the subscriber's buffer (``subscriber_buffer`` events, the hub's
        overflow policy), and a stream closed for overflow ends as ``CloseReason.OVERFLOW``.
        """
        self._check_open("stream")
        _check_topic(topic)
        stream = SseStream(buffer_size=self.subscriber_buffer, overflow=self.overflow)
        stream.start_soon(self._run_stream, stream, topic, last_event_id)
        return stream

    async def _run_stream(self, stream: SseStream, topic: str, last_event_id: str | None) -> None:
        async with self.subscribe(topic, last_event_id) as subscription:
            await subscription._feed(stream)

    def subscriber_count(self, topic: str) -> int:
        """Local subscribers of ``topic`` (in this process)."""
        return len(self._subscribers.get(topic, ()))

    async def _register(self, topic: str) -> _Subscriber:
        """Register for live events of ``topic``, and wait until the backend delivers them."""
        self._check_open("subscribe")
        subscriber = _Subscriber(self.subscriber_buffer, self.overflow, self.backend.id_key)
        self._subscribers.setdefault(topic, set()).add(subscriber)
        try:
            # Every subscriber waits, not only the first: a second one that arrives while the
            # first is still starting the topic's reader must not read its replay before it.
            with trio.fail_after(self.replay_timeout):
                await self.backend.watch(topic)
        except trio.TooSlowError:
            self._unregister(topic, subscriber)
            raise BroadcastUnavailable(
                f"the broadcast backend did not start delivering topic {topic!r} within "
                f"{self.replay_timeout}s (replay_timeout); is it reachable?"
            ) from None
        except BaseException:
            self._unregister(topic, subscriber)
            raise
        return subscriber

    def _unregister(self, topic: str, subscriber: _Subscriber) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is None or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[topic]
            self.backend.unwatch(topic)

    def _reset_event(self, replay: Replay, last_event_id: str) -> SseEvent:
        assert replay.reset is not None
        return reset_event(replay.reset, last_event_id, replay.latest_id)


def reset_event(
    reason: ResetReason, last_event_id: str, event_id: str, message: str | None = None
) -> SseEvent:
    """The `RESET_EVENT` that tells a subscriber it missed events after ``last_event_id``.

    ``event_id`` is the id the event carries (live events after it follow); ``message`` says
    why in words (a default per ``reason``).
    """
    if message is None:
        if reason is ResetReason.TOO_OLD:
            message = "events after this id are no longer retained; reload your state"
        else:
            message = "this id is unknown to the topic (malformed, or from before a restart)"
    return SseEvent(
        data=json.dumps(
            {"reason": reason.value, "lastEventId": last_event_id, "message": message},
            separators=(",", ":"),
        ),
        event=RESET_EVENT,
        id=event_id,
    )


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a broadcast topic must be a non-empty str, got {topic!r}")


# -- the in-memory backend ----------------------------------------------------------------------


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

    async def open(self, deliver: Deliver, end: EndTopic) -> None:
        self._deliver = deliver
        await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        self._deliver = None
        await trio.lowlevel.checkpoint()

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


def parse_stream_id(event_id: str) -> IdKey | None:
    """``"<a>-<b>"`` (both decimal, as Redis stream ids and `MemoryBackend` ids) as ``(a, b)``."""
    first, sep, second = event_id.partition("-")
    if not sep or not first.isdigit() or not second.isdigit() or not first.isascii():
        return None
    if not second.isascii():
        return None
    return int(first), int(second)
