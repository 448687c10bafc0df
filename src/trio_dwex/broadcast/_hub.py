"""The broadcast hub: named topics, ids from the hub, Last-Event-ID replay, bounded fan-out.

Theory of operation. A `Broadcast` owns, per topic, the set of *local* subscribers (those of
this process) and fans every event of the topic out to them without ever waiting on one of
them. Where the events come from and how they are kept is the backend's business:

* `MemoryBackend` (``_memory``) assigns the ids, keeps the retained events and hands each
  published event to the hub at once, in the publisher's task. One process only.
* `RedisBackend` (``_redis``) appends to a Redis Stream per topic; one reader task per topic
  and process reads the stream and hands each entry to the hub, so every process sees every
  event of every other, with the stream entry id as the event id.

What a backend owes the hub is `BroadcastBackend`, in ``_backend``; the backends import that
contract and never this module, so there is no cycle between the hub and its backends.

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

**A replay in pages.** A backend may answer a replay one page at a time (`Replay.more`): the
subscription then asks for the next page, after the last event of the previous one, once its
consumer has taken it. The live events that arrive meanwhile wait in the subscriber's buffer,
and the high-water mark moves on with each page. A page that finds the events after the last
one replayed gone (trimmed meanwhile) is a reset, as for a first page.

**Slow subscribers.** Each subscriber has a buffer bounded in events and in bytes; when an
event does not fit, the hub applies the named `OverflowPolicy`, the same as `SseStream`'s, and
moves on to the next subscriber. Under `OverflowPolicy.CLOSE` the subscription ends after its
buffered events, and its client reconnects with ``Last-Event-ID`` and resumes from the retained
events. An empty buffer takes any one event, whatever its size: the byte bound holds for what
waits behind it (and the backend refuses an event larger than a topic's retention).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import trio

from ..streams._state import CloseReason
from ..streams._stream import DEFAULT_BUFFER_SIZE, OverflowPolicy, SseStream, dropped_events
from ..wire._sse import SseEvent, to_event
from ._backend import (
    BroadcastBackend,
    BroadcastUnavailable,
    IdKey,
    Replay,
    event_size,
    reset_event,
)
from ._memory import MemoryBackend

__all__ = ["DEFAULT_SUBSCRIBER_BUFFER_BYTES", "Broadcast", "Subscription", "backend_from_url"]

logger = logging.getLogger("trio_dwex.broadcast")

#: Bytes of events a subscriber may have waiting (see `event_size`), besides
#: `DEFAULT_BUFFER_SIZE` events: 256 events of 4 KiB. Events are shared between subscribers,
#: so a subscriber's buffer costs its bytes only for events no one else holds.
DEFAULT_SUBSCRIBER_BUFFER_BYTES = 1024 * 1024


class BroadcastCounts:
    """What the hubs of this process did that operators watch (the metrics read it).

    Per process; never reset.
    """

    #: Subscriptions that resumed from a ``Last-Event-ID`` (a client that reconnected).
    replays: int = 0
    #: Resumptions that could not be served and got a ``reset`` event instead (the id was
    #: trimmed, or from another hub): a client that missed events.
    resets: int = 0


broadcast_counts = BroadcastCounts()
"""The process's `BroadcastCounts`."""


class _Subscriber:
    """One subscription's live side: a bounded buffer, or an `SseStream` fed directly.

    `offer` is called by the hub's fan-out and never waits. Before the replay is known, live
    events are buffered; ``high_water`` then drops the ones the replay already had. The buffer
    holds at most ``capacity`` events and ``capacity_bytes`` bytes (an empty one takes any one
    event); only `offer`, `take` and `set_high_water` change it.
    """

    __slots__ = (
        "_buffer",
        "_buffered_bytes",
        "_key",
        "capacity",
        "capacity_bytes",
        "direct",
        "ended",
        "high_water",
        "lot",
        "overflow",
        "overflowed",
    )

    def __init__(
        self,
        capacity: int,
        capacity_bytes: int,
        overflow: OverflowPolicy,
        key: Callable[[str], IdKey | None],
    ) -> None:
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.overflow = overflow
        self._key = key
        self._buffer: deque[SseEvent] = deque()
        self._buffered_bytes = 0
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
        size = event_size(event)
        if self._fits(size):
            self._append(event, size)
            return True
        if self.overflow is OverflowPolicy.DROP_NEWEST:
            dropped_events.newest += 1
            return True
        if self.overflow is OverflowPolicy.DROP_OLDEST:
            while not self._fits(size):
                self._popleft()
                dropped_events.oldest += 1
            self._append(event, size)
            return True
        logger.warning(
            "ending a broadcast subscription: it reads slower than events are published and "
            "its buffer (%d events, %d bytes) is full (overflow policy CLOSE)",
            self.capacity,
            self.capacity_bytes,
        )
        self.overflowed = True
        self.end()
        return False

    def _fits(self, size: int) -> bool:
        if not self._buffer:
            return True
        return (
            len(self._buffer) < self.capacity and self._buffered_bytes + size <= self.capacity_bytes
        )

    def _append(self, event: SseEvent, size: int) -> None:
        self._buffer.append(event)
        self._buffered_bytes += size
        self.lot.unpark_all()

    def _popleft(self) -> SseEvent:
        event = self._buffer.popleft()
        self._buffered_bytes -= event_size(event)
        return event

    def take(self) -> SseEvent | None:
        """The oldest buffered event, or ``None`` if there is none."""
        return self._popleft() if self._buffer else None

    def set_high_water(self, key: IdKey | None) -> None:
        """Drop buffered events at or below ``key`` and keep dropping live ones until past it."""
        if key is None:
            return
        while self._buffer:
            first = self._key(self._buffer[0].id or "")
            if first is None or first > key:
                return  # past the mark: no duplicate can follow
            self._popleft()
        self.high_water = key

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.lot.unpark_all()
            if self.direct is not None:
                # The runner reports an overflowed stream as CloseReason.OVERFLOW.
                reason = CloseReason.OVERFLOW if self.overflowed else CloseReason.CLOSED
                self.direct.close(reason=reason)


class Subscription:
    """The events of one topic for as long as an ``async with`` block runs.

    Made by `Broadcast.subscribe`; entering it registers for live events and fetches the replay,
    exiting unregisters. Iterate it for the events: first the replayed ones (or one
    `RESET_EVENT`), then the live ones. The iteration ends when the hub shuts down or, under
    `OverflowPolicy.CLOSE`, when this subscriber fell too far behind (`overflowed` tells).

    Events carry their data as the wire text (``event.data`` is a ``str``, JSON for non-string
    data), the same whichever backend brought them.

    A replay that the backend answers in pages (Redis) is read a page at a time, as the
    iteration reaches it: `BroadcastUnavailable` may then come out of the iteration, if the
    backend cannot be reached for a later page.
    """

    def __init__(
        self, hub: Broadcast, topic: str, last_event_id: str | None, *, history: bool = False
    ) -> None:
        self.topic = topic
        self.last_event_id = last_event_id or None
        #: Whether the topic's retained events come first when there is no ``last_event_id``.
        self.history = history
        self._hub = hub
        #: The replay's current page (or one reset event), not yet taken.
        self._replay: deque[SseEvent] = deque()
        #: The id after which the backend has more to replay, once ``_replay`` is taken.
        self._replay_after: str | None = None
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
                broadcast_counts.replays += 1
                await self._load_replay(self.last_event_id)
            elif self.history:
                await self._load_replay(None)
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

    async def _load_replay(self, last_event_id: str | None) -> None:
        """Fetch the page of replay after ``last_event_id`` (or the reset that replaces it);
        ``None``: the first page of the topic's history."""
        assert self._subscriber is not None
        backend = self._hub.backend
        try:
            with trio.fail_after(self._hub.replay_timeout):
                if last_event_id is None:
                    replay = await backend.history(self.topic)
                else:
                    replay = await backend.replay(self.topic, last_event_id)
        except trio.TooSlowError:
            raise BroadcastUnavailable(
                f"the replay of topic {self.topic!r} took longer than "
                f"{self._hub.replay_timeout}s (replay_timeout); is the backend reachable?"
            ) from None
        self._replay_after = None
        if replay.reset is None:
            self._replay.extend(replay.events)
            last = replay.events[-1].id if replay.events else last_event_id
            if replay.more and replay.events:  # a page with no event would never end
                self._replay_after = last
        else:
            broadcast_counts.resets += 1
            self._replay.append(self._hub._reset_event(replay, last_event_id or ""))
            last = replay.latest_id
        self._subscriber.set_high_water(backend.id_key(last or ""))

    async def _next_replayed(self) -> SseEvent | None:
        """The next replayed event, fetching the next page when one is due; ``None`` at the end."""
        if not self._replay and self._replay_after is not None:
            await self._load_replay(self._replay_after)
        return self._replay.popleft() if self._replay else None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SseEvent:
        subscriber = self._subscriber
        if subscriber is None:
            raise RuntimeError("iterate a Subscription inside its `async with` block")
        await trio.lowlevel.checkpoint()
        replayed = await self._next_replayed()
        if replayed is not None:
            return replayed
        while (event := subscriber.take()) is None:
            if subscriber.ended:
                raise StopAsyncIteration
            await subscriber.lot.park()
        return event

    async def _feed(self, stream: SseStream) -> None:
        """Send the replay and the buffered events into ``stream``, then let the hub feed it.

        Waiting on the stream (``send``) applies its back-pressure during the replay; once the
        backlog is written, the hub's fan-out puts events straight into the stream's buffer,
        so a live event costs no task switch here. The switch happens without a checkpoint
        after the buffer is found empty, so nothing can slip in between.
        """
        subscriber = self._subscriber
        assert subscriber is not None
        try:
            while (replayed := await self._next_replayed()) is not None:
                await stream.send(replayed)
        except BroadcastUnavailable as exc:
            # A later page of the replay could not be read: the client reconnects with the
            # last id it got and resumes, as after an overflow; no traceback for an outage.
            logger.warning(
                "closing a stream of broadcast topic %r in the middle of its replay (%s); "
                "its client reconnects and resumes",
                self.topic,
                exc,
            )
            stream.close()
            return
        while (event := subscriber.take()) is not None:
            await stream.send(event)
        if subscriber.ended:
            reason = CloseReason.OVERFLOW if subscriber.overflowed else CloseReason.CLOSED
            stream.close(reason=reason)
            return
        subscriber.direct = stream
        await trio.sleep_forever()


def backend_from_url(url: str, *, what: str = "broadcast", **retention: Any) -> BroadcastBackend:
    """The backend a URL names: `MemoryBackend` for ``memory://``, ``RedisBackend`` for
    ``redis://``, ``rediss://`` or ``unix://``. ``retention`` goes to the backend
    (``retain_count``, ``retain_seconds``; ``key_prefix`` for Redis only); ``what`` names the
    URL's use in the error for any other scheme."""
    key_prefix = retention.pop("key_prefix", None)
    if url in ("memory", "memory://"):
        return MemoryBackend(**retention)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ._redis import RedisBackend  # optional dependency: coredis

        if key_prefix is not None:
            retention["key_prefix"] = key_prefix
        return RedisBackend(url, **retention)
    raise ValueError(f"unknown {what} URL {url!r}: use memory:// or redis://host:port/db")


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
        subscriber_buffer_bytes: bytes of events held per such subscriber (the events'
            encoded size, see `event_size`); an event that does not fit either bound is an
            overflow. An empty buffer takes any one event.
        overflow: what happens to a subscriber whose buffer is full (see `OverflowPolicy`).
        replay_timeout: seconds that opening a subscription may take (replay and, for Redis,
            reaching the server) before it fails with `BroadcastUnavailable`.
    """

    def __init__(
        self,
        backend: BroadcastBackend | None = None,
        *,
        subscriber_buffer: int = DEFAULT_BUFFER_SIZE,
        subscriber_buffer_bytes: int = DEFAULT_SUBSCRIBER_BUFFER_BYTES,
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
        if (
            not isinstance(subscriber_buffer_bytes, int)
            or isinstance(subscriber_buffer_bytes, bool)
            or subscriber_buffer_bytes < 1
        ):
            raise ValueError(
                "Broadcast subscriber_buffer_bytes must be a positive int, "
                f"got {subscriber_buffer_bytes!r}"
            )
        if not isinstance(overflow, OverflowPolicy):
            raise ValueError(f"Broadcast overflow must be an OverflowPolicy, got {overflow!r}")
        if not replay_timeout > 0:
            raise ValueError(f"Broadcast replay_timeout must be positive, got {replay_timeout!r}")
        self.backend = backend if backend is not None else MemoryBackend()
        self.subscriber_buffer = subscriber_buffer
        self.subscriber_buffer_bytes = subscriber_buffer_bytes
        self.overflow = overflow
        self.replay_timeout = replay_timeout
        self._subscribers: dict[str, set[_Subscriber]] = {}
        #: The backend's block while the hub is open; None before and after.
        self._lifetime: AsyncExitStack | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> Broadcast:
        """A hub on the backend a URL names: ``memory://`` or ``redis://host:port/db``.

        For a setting or a command-line option. Other keyword arguments go to `Broadcast`.
        """
        return cls(backend_from_url(url), **kwargs)  # type: ignore[arg-type]

    # -- lifetime -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._lifetime is not None:
            raise RuntimeError("this Broadcast is already open; enter it once at a time")
        lifetime = AsyncExitStack()
        # The backend's tasks (Redis readers) live in the backend's block, entered here and
        # left in __aexit__, in the task that owns the hub (the app's lifespan task when the
        # hub is a provider), not in whichever request happened to need them.
        await lifetime.enter_async_context(self.backend.open(self._deliver, self._end_topic))
        self._lifetime = lifetime
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lifetime, self._lifetime = self._lifetime, None
        if lifetime is None:
            return
        # End every subscription first, so that their consumers (SSE streams) finish normally
        # instead of waiting on a hub that will never deliver again.
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                subscriber.end()
        self._subscribers.clear()
        # The backend's block ends as a normal exit, whatever ended ours: the exception (if
        # any) is this block's to raise, unchanged (see `BroadcastBackend.open`).
        await lifetime.aclose()

    @property
    def is_open(self) -> bool:
        """True between entering and exiting the hub."""
        return self._lifetime is not None

    def _check_open(self, what: str) -> None:
        if self._lifetime is None:
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
                longer than its publish timeout). A 503.
            EventTooLarge: the event is larger than the topic keeps (the backend's
                ``retain_bytes``); nothing was published. A 413.
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

    def subscribe(
        self, topic: str, last_event_id: str | None = None, *, history: bool = False
    ) -> Subscription:
        """The events of ``topic``, as an async context manager that yields an async iterator.

        With ``last_event_id`` (the client's ``Last-Event-ID``), the retained events after it
        come first, then the live ones, with no gap and no duplicate; if it cannot be replayed,
        one `RESET_EVENT` comes first instead. ``None`` or ``""``: live events only, unless
        ``history`` is true: then every event the topic retains comes first (a page that opens
        shows what happened before it), with the same guarantee. Any text is taken as an id:
        one that is no id of the topic (malformed, out of range) gets the reset (reason
        ``unknown``), as an id from before a restart does.
        """
        _check_topic(topic)
        return Subscription(self, topic, last_event_id, history=history)

    def stream(
        self, topic: str, last_event_id: str | None = None, *, history: bool = False
    ) -> SseStream:
        """An `SseStream` of ``topic`` to return from an ``@Sse`` handler.

        Its subscription is opened by a task in the stream's own nursery, so it exists only
        while the stream runs: a client that disconnects ends it, whatever the reason. The
        stream's buffer is the subscriber's buffer (``subscriber_buffer`` events, the hub's
        overflow policy), and a stream closed for overflow ends as ``CloseReason.OVERFLOW``.
        Once the replay is written, events go straight into the stream's buffer, which the
        stream bounds in events (``subscriber_buffer``) and bytes (``subscriber_buffer_bytes``),
        as it bounds the live events that wait while the replay is written. ``history``: as
        for `subscribe`.
        """
        self._check_open("stream")
        _check_topic(topic)
        stream = SseStream(
            buffer_size=self.subscriber_buffer,
            buffer_bytes=self.subscriber_buffer_bytes,
            overflow=self.overflow,
        )
        stream.start_soon(self._run_stream, stream, topic, last_event_id, history)
        return stream

    async def _run_stream(
        self, stream: SseStream, topic: str, last_event_id: str | None, history: bool
    ) -> None:
        async with self.subscribe(topic, last_event_id, history=history) as subscription:
            await subscription._feed(stream)

    def subscriber_count(self, topic: str) -> int:
        """Local subscribers of ``topic`` (in this process)."""
        return len(self._subscribers.get(topic, ()))

    async def _register(self, topic: str) -> _Subscriber:
        """Register for live events of ``topic``, and wait until the backend delivers them."""
        self._check_open("subscribe")
        subscriber = _Subscriber(
            self.subscriber_buffer,
            self.subscriber_buffer_bytes,
            self.overflow,
            self.backend.id_key,
        )
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


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a broadcast topic must be a non-empty str, got {topic!r}")
