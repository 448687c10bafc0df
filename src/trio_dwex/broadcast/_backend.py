"""The contract between the `Broadcast` hub and the backends that keep its topics.

The hub (``_hub``) and each backend (``_memory``, ``_redis``) import this module and never each
other's, so a backend can be written, imported and tested without the hub, and the hub names
a concrete backend only where it must (its default, and `Broadcast.from_url`).

What a backend owes the hub is `BroadcastBackend`; what the hub hands a backend is two
callbacks, `Deliver` and `EndTopic`; what a backend answers to a ``Last-Event-ID`` is a
`Replay`, with a `ResetReason` when it cannot replay. The helpers below (`rebuild_event`,
`reset_event`, `parse_stream_id`, `event_size`) are shared by both backends.

**Bytes.** Every byte bound of the broadcast package (a topic's retention, a subscriber's buffer,
a page of replay) counts an event as `event_size`: the length of its encoded form, id line
included, which is what it costs on the wire. In memory an event also holds its data as text,
so it takes about twice that (up to five times for text of many short lines, or of characters
outside the Basic Multilingual Plane).
"""

from __future__ import annotations

import abc
import enum
import json
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final

import trio

from .._errors import HttpException, ServiceUnavailableException, clip
from .._unset import UNSET
from ..wire._sse import SseEvent

__all__ = [
    "DEFAULT_RETAIN_BYTES",
    "MAX_ID_PART",
    "RESET_EVENT",
    "BroadcastBackend",
    "BroadcastUnavailable",
    "Deliver",
    "EndTopic",
    "EventTooLarge",
    "IdKey",
    "Replay",
    "ResetReason",
    "check_counts",
    "check_seconds",
    "event_size",
    "parse_stream_id",
    "rebuild_event",
    "reset_event",
]

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

#: The largest part of a ``"<a>-<b>"`` id: Redis stream ids are two unsigned 64-bit numbers,
#: and `MemoryBackend` ids stay far below it. A ``Last-Event-ID`` with a larger part is not an
#: id of any topic.
MAX_ID_PART: Final = 2**64 - 1

#: Its decimal digits: a part with more is refused before it is converted (Python refuses to
#: convert more than 4,300 digits, and a client may send as many as the head limit allows).
_MAX_ID_DIGITS: Final = len(str(MAX_ID_PART))

#: The default of both backends' ``retain_bytes``: the bytes a topic keeps for replay (1,000
#: events of 16 KiB), and so the largest event it takes.
DEFAULT_RETAIN_BYTES: Final = 16 * 1024 * 1024


class BroadcastUnavailable(ServiceUnavailableException):
    """The broadcast backend cannot be reached (Redis down) within the configured timeout.

    Raised by `Broadcast.publish` and when opening a subscription; live subscriptions that are
    already open are not ended by an outage, they wait for the backend to come back. A 503:
    raised in a handler (or by a stream before its first event), the client gets a 503 and an
    EventSource retries.
    """


class EventTooLarge(HttpException):
    """An event larger than its topic may hold (the backend's ``retain_bytes``) was published.

    Raised by `Broadcast.publish` before anything is published: keeping the event would evict
    every other retained event of the topic. A 413: raised in a handler, the client gets a
    413 Content Too Large, with this message.

    Attributes:
        topic: the topic the event was published to.
        size: the event's size in bytes (see `event_size`; with its id line).
        limit: the most bytes the topic takes (``retain_bytes``).
    """

    default_status = 413

    def __init__(self, topic: str, size: int, limit: int) -> None:
        self.topic = topic
        self.size = size
        self.limit = limit
        super().__init__(
            413,
            f"the event is {size} bytes encoded, and topic {clip(topic)!r} keeps at most "
            f"{limit} bytes (retain_bytes)",
        )


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
        more: ``events`` is one page, and more retained events follow the last of them: the
            hub asks again with that event's id once the subscriber has taken the page. A
            backend that reads its events from elsewhere (Redis) pages them, so that a replay
            costs at most a page of memory at a time.
    """

    events: list[SseEvent]
    reset: ResetReason | None = None
    latest_id: str = ""
    more: bool = False


class BroadcastBackend(abc.ABC):
    """Where a `Broadcast` keeps its topics: ids, retention, and delivery to every process.

    A backend's lifetime is one async context manager, `open`: the hub enters it when the hub
    is entered and exits it when the hub is exited, both in the task that owns the hub (the
    app's lifespan task when the hub is a provider). Whatever the backend runs (reader tasks,
    a connection pool) lives inside that block and is gone when it ends. A backend serves one
    hub at a time.

    Inside the block, the hub calls the other methods from any task. Implementations must hand
    every event of a watched topic (see `watch`) to ``deliver`` exactly once and in id order.
    """

    @abc.abstractmethod
    def open(self, deliver: Deliver, end: EndTopic) -> AbstractAsyncContextManager[None]:
        """The backend's lifetime: inside the block, events of watched topics go to ``deliver``.

        ``end(topic)`` ends the local subscriptions of a topic the backend can no longer
        deliver (a crash of its reader): they end instead of waiting forever, and their
        clients reconnect. Leaving the block stops every task the backend started and
        releases every connection it holds. Entering a backend that is already open raises
        `RuntimeError`.

        The hub leaves the block as if it ended normally, whatever ended the hub's own
        block: why the hub's owner stopped is not the backend's business, and an exception
        thrown into a block that holds a nursery would come back out wrapped in an
        `ExceptionGroup`.
        """

    @abc.abstractmethod
    async def publish(self, topic: str, event: SseEvent) -> str:
        """Append ``event`` (it has no id) to ``topic`` and return the id it was given."""

    @abc.abstractmethod
    async def watch(self, topic: str) -> None:
        """Make sure events of ``topic`` are being delivered before returning.

        Called for every new local subscriber of the topic, before its `replay`: every event
        published after this returns must reach ``deliver``.
        """

    @abc.abstractmethod
    def unwatch(self, topic: str) -> None:
        """``topic`` has no local subscriber any more; delivery for it may stop."""

    @abc.abstractmethod
    async def replay(self, topic: str, last_event_id: str) -> Replay:
        """The retained events of ``topic`` after ``last_event_id``, or why there are none.

        ``last_event_id`` is what a client sent: any text. One that is not an id of the topic
        (malformed, out of range, from another incarnation) is answered with a reset (reason
        ``unknown``), never an error. The answer may be one page (`Replay.more`).
        """

    async def history(self, topic: str) -> Replay:
        """Every retained event of ``topic``, oldest first: what a new subscriber that asks for
        history gets before the live events (never a reset: nothing was missed).

        The answer may be one page (`Replay.more`); the hub asks for the next with `replay`
        after the page's last id. A backend that keeps no history need not override this.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot replay a topic's history")

    @abc.abstractmethod
    def id_key(self, event_id: str) -> IdKey | None:
        """``event_id`` as an ordered key, or ``None`` if it is not an id this backend makes.

        Never raises, whatever the text: it reads clients' ``Last-Event-ID`` headers.
        """

    async def expire(self, topic: str, seconds: float) -> None:
        """Drop ``topic``, events and all, ``seconds`` from now (a later call moves the time):
        for a topic that ends, such as a run's, whose events must not outlive it.

        By default nothing beyond retention: a backend whose topics go once their events aged
        out (`MemoryBackend`) needs no more. One whose topics stay until something trims them
        (Redis, which trims when someone publishes) overrides it.
        """
        await trio.lowlevel.checkpoint()


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


def reset_event(
    reason: ResetReason, last_event_id: str, event_id: str, message: str | None = None
) -> SseEvent:
    """The `RESET_EVENT` that tells a subscriber it missed events after ``last_event_id``.

    ``event_id`` is the id the event carries (live events after it follow); ``message`` says
    why in words (a default per ``reason``). The ``lastEventId`` it repeats is cut to
    `trio_dwex._errors.MAX_ECHO` characters: a client may send kilobytes of header, and no id
    of ours is that long.
    """
    if message is None:
        if reason is ResetReason.TOO_OLD:
            message = "events after this id are no longer retained; reload your state"
        else:
            message = "this id is unknown to the topic (malformed, or from before a restart)"
    return SseEvent(
        data=json.dumps(
            {"reason": reason.value, "lastEventId": clip(last_event_id), "message": message},
            separators=(",", ":"),
        ),
        event=RESET_EVENT,
        id=event_id,
    )


def parse_stream_id(event_id: str) -> IdKey | None:
    """``"<a>-<b>"`` (both decimal, as Redis stream ids and `MemoryBackend` ids) as ``(a, b)``.

    ``None`` for anything else, whatever the text: a part that is empty, not ASCII digits only,
    longer than `MAX_ID_PART` is (leading zeros included: checked before it is converted, so
    that a part of thousands of digits costs no more than a short one), or above it.
    """
    first, sep, second = event_id.partition("-")
    if not sep or not _is_id_part(first) or not _is_id_part(second):
        return None
    key = int(first), int(second)
    if key[0] > MAX_ID_PART or key[1] > MAX_ID_PART:
        return None
    return key


def _is_id_part(text: str) -> bool:
    # isdigit() alone would take other scripts' digits ("٣") and superscripts ("²").
    return 0 < len(text) <= _MAX_ID_DIGITS and text.isascii() and text.isdigit()


def event_size(event: SseEvent) -> int:
    """The bytes ``event`` counts for in every byte bound of the hub: its encoded length."""
    return len(event.encode())


def check_counts(owner: str, **counts: object) -> None:
    """A ``ValueError`` naming ``owner``'s setting unless each of ``counts`` is a positive int."""
    for name, count in counts.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"{owner} {name} must be a positive int, got {count!r}")


def check_seconds(owner: str, *, finite: bool, **durations: object) -> None:
    """A ``ValueError`` naming ``owner``'s setting unless each of ``durations`` is a positive
    number (of seconds), and a finite one where ``finite``."""
    for name, seconds in durations.items():
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or (finite and not math.isfinite(seconds))
            or not seconds > 0
        ):
            raise ValueError(
                f"{owner} {name} must be a positive number of seconds, got {seconds!r}"
            )
