r"""`RedisBackend`: broadcast topics as Redis Streams, shared by every process and host.

Needs the ``redis`` extra (``pip install trio-dwex[redis]``: coredis, an anyio-based client that
runs on Trio) and Redis 7.0 or later (``XADD ... MAXLEN ~`` with ``XTRIM ... MINID``, and
``XINFO STREAM``'s ``entries-added`` to tell a trimmed stream from one made anew).

Theory of operation. A topic is the stream ``<key_prefix><topic>``.

* **publish** is one ``XADD ... MAXLEN ~ retain_count``; the entry id Redis assigns is the
  event's id, so ids are monotonic per topic across every publisher. Retention by age is an
  ``XTRIM ... MINID ~`` at most once a second per topic, measured on the server's clock (the
  entry id's milliseconds), never on this host's.
* **live delivery**: one reader task per topic and process, started with the topic's first
  local subscriber, reads with a blocking ``XREAD`` from the last id it delivered and hands each
  entry to the hub, which fans it out to every local subscriber. It starts from the stream's
  last entry *before* the first subscriber replays, so that nothing falls between the replay
  and the live events. It stops ``reader_linger`` seconds after the last local subscriber left
  (a reconnecting client does not restart it).
* **outages**: when Redis goes away, local subscribers stay connected; the reader retries with
  exponential backoff and, once Redis is back, reads on from the last id it delivered, so every
  entry Redis still has is delivered, in order, once. Entries that were trimmed before it could
  read them (an outage longer than retention) are not skipped silently: the reader counts the
  entries up to its last id (``entries-added`` when it starts, one per entry read) and, after
  a failed command or a full batch, compares with ``XINFO STREAM``; entries added after its
  last id that are gone unread, or a stream with fewer entries ever added than it read (made
  anew), make it deliver one ``reset`` event (reason ``too_old`` or ``unknown``, its id the
  last id read) to the local subscribers before what follows. This assumes every process
  trims with the same ``retain_count`` and nobody deletes entries (``XDEL``). Counting cannot
  tell a stream made anew that had more entries added than the reader read, so the reader
  also checks the stream's *incarnation*, a consumer group named
  ``trio-dwex:incarnation:<random>`` that lives and dies with the stream: it makes it when it
  starts (with the stream, empty, for a topic with no event yet) and checks it after every
  failed command; gone or different, it tells a reset (reason ``unknown``) and reads the new
  stream from its start.
  Which checks an attempt makes, and the reader's place and backoff, are one `ReaderState`
  per reader (``_reader_state``: a phase, and its transitions as a table).
* **retried publishes**: `publish` retries within ``publish_timeout`` then raises
  `BroadcastUnavailable`. An attempt whose reply was lost may have been applied, so every
  entry carries a token (a random nonce per backend, a sequence number per publish), and a
  retry is a Lua script that adds the entry only if no entry since shortly before the first
  attempt (on the server's clock) carries the token, and otherwise answers that entry's id:
  the event is in the stream once, and `publish` returns its id.
* **crashes**: an entry that cannot be decoded is logged with its traceback and skipped; a
  reader that crashes (a bug, not Redis being away) is logged and ends its topic's local
  subscriptions, whose clients reconnect; the hub and the other topics go on.
* **replay**: one ``XRANGE last_id +`` (inclusive) then ``XINFO STREAM``. Redis trims streams
  from the oldest end only, so if the client's own entry is still there, everything after it
  is, and the replay is complete. If it is gone, the client gets a reset, never a silent gap
  (Redis records no trimmed ids, so a client whose last event was the very last one trimmed
  gets a reset it could have done without). An id newer than the stream's last, or older than
  a stream that never trimmed anything (made anew after Redis lost its data), is unknown.

"No retained event lost" across a Redis restart holds for what Redis itself kept: run Redis
with ``appendonly yes`` (and ``appendfsync always`` to survive a crash of the Redis host, not
only a restart). Without persistence a restart empties the topics: live subscribers still get
every event the readers had read, then a reset, and a client that reconnects with an older id
gets a reset.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import coredis
import coredis.exceptions
import trio
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from .._unset import UNSET
from ..wire._sse import SseEvent
from ._backend import (
    BroadcastBackend,
    BroadcastUnavailable,
    Deliver,
    EndTopic,
    IdKey,
    Replay,
    ResetReason,
    parse_stream_id,
    reset_event,
)
from ._reader_state import ReaderPhase, ReaderState

__all__ = ["RedisBackend"]

logger = logging.getLogger("trio_dwex.broadcast.redis")

#: Errors after which a command is worth retrying: Redis is away, restarting, or loading.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    coredis.exceptions.ConnectionError,  # includes BusyLoadingError (a restarting Redis)
    coredis.exceptions.ClusterDownError,
    coredis.exceptions.TryAgainError,
    TimeoutError,
    OSError,
    trio.TooSlowError,
)

#: What the reader retries on: also a server error (a wrong key type, an ACL change), so that
#: an operator can fix it without restarting the app; it is logged, and backoff bounds the rate.
_READER_RETRIES: tuple[type[BaseException], ...] = (*_UNAVAILABLE, coredis.exceptions.RedisError)

#: Seconds between two age trims (``XTRIM MINID``) of one topic by one process.
_AGE_TRIM_EVERY = 1.0

#: Names the consumer group that marks a stream's incarnation: this prefix and a random part.
#: No one reads through it; it lives and dies with the stream (and its persistence), so a
#: stream that Redis made anew after losing its data has none, or another.
_INCARNATION_GROUP = "trio-dwex:incarnation:"

#: The stream's incarnation (``KEYS[1]``): the name of its incarnation group, made (with the
#: stream, if there is none yet) from ``ARGV[1]`` and ``ARGV[2]`` if it has none. Atomic, so
#: every process agrees on it; one key, so it runs on Redis Cluster too.
_ENSURE_INCARNATION = """
local key, prefix = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 1 then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    for i = 1, #group, 2 do
      if group[i] == 'name' and string.sub(group[i + 1], 1, #prefix) == prefix then
        return group[i + 1]
      end
    end
  end
end
local name = prefix .. ARGV[2]
redis.call('XGROUP', 'CREATE', key, name, '$', 'MKSTREAM')
return name
"""

#: The entry field that names the publish: ``<publisher nonce>:<sequence number>``.
_TOKEN = "p"

#: How far (ms) before the first attempt, on the server's clock, a retry looks for it: the
#: client's elapsed time measures the rest, and this absorbs clock steps and rounding.
_RETRY_MARGIN_MS = 5000

#: A retried publish: ``KEYS[1]`` the stream; ``ARGV`` the token, the window (ms) in which an
#: earlier attempt may have been applied, ``retain_count``, then the entry's fields. Atomic, and
#: on one key, so it runs on Redis Cluster too. Only retries pay for the scan, which is bounded
#: by the window and the retention.
_IDEMPOTENT_XADD = """
local key, token = KEYS[1], ARGV[1]
local now = redis.call('TIME')
local since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
local start = string.format('%d-0', math.max(0, since))
while true do
  local batch = redis.call('XRANGE', key, start, '+', 'COUNT', 256)
  for _, entry in ipairs(batch) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'p' and fields[i + 1] == token then
        return entry[1]
      end
    end
  end
  if #batch < 256 then
    break
  end
  start = '(' .. batch[#batch][1]
end
return redis.call('XADD', key, 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
"""


class _Reader:
    """The live side of one topic in this process: its reader task's state, as the backend
    sees it.

    ``state`` is the reader task's own (only that task changes it); ``ready`` is set once the
    reader has its place in the stream, or has finished, for the subscribers waiting in
    `RedisBackend.watch`; ``idle_since`` is when the topic's last local subscriber left
    (``None`` while it has some), for `RedisBackend.reader_linger`.
    """

    __slots__ = ("idle_since", "ready", "state")

    def __init__(self, state: ReaderState) -> None:
        self.state = state
        self.ready = trio.Event()
        self.idle_since: float | None = None


class RedisBackend(BroadcastBackend):
    """Topics in Redis Streams, for a hub shared by worker processes and hosts.

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
        client: a coredis ``Redis`` or ``RedisCluster`` to use instead of ``url`` (made with
            ``decode_responses=True``); the backend enters it when the hub opens and exits it
            when the hub closes.
        retain_count: entries kept per topic (approximately: ``MAXLEN ~`` keeps at least this
            many, and trims in whole nodes of about a hundred).
        retain_seconds: how long entries are kept for replay.
        key_prefix: prepended to the topic to make the stream's key.
        command_timeout: deadline of each command (blocking reads get it on top of their block).
        publish_timeout: how long `publish` retries while Redis is unreachable.
        block_seconds: how long one ``XREAD`` blocks; also how often an idle reader checks
            whether it should stop.
        read_count: entries read at most per ``XREAD``.
        backoff_initial: first pause after a failed command; doubles up to ``backoff_max``.
        backoff_max: longest pause between two attempts.
        reader_linger: seconds a topic's reader keeps going after its last local subscriber
            left, so that reconnecting clients do not restart it.
        max_connections: size of the connection pool; each topic with local subscribers holds
            one connection in its blocking read, and publishers share the rest.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: coredis.Redis[str] | coredis.RedisCluster[str] | None = None,
        retain_count: int = 1000,
        retain_seconds: float = 300.0,
        key_prefix: str = "trio-dwex:broadcast:",
        command_timeout: float = 5.0,
        publish_timeout: float = 10.0,
        block_seconds: float = 1.0,
        read_count: int = 512,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        reader_linger: float = 5.0,
        max_connections: int = 256,
    ) -> None:
        if not isinstance(retain_count, int) or isinstance(retain_count, bool) or retain_count < 1:
            raise ValueError(f"retain_count must be a positive int, got {retain_count!r}")
        for name, value in (
            ("retain_seconds", retain_seconds),
            ("command_timeout", command_timeout),
            ("publish_timeout", publish_timeout),
            ("block_seconds", block_seconds),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"RedisBackend {name} must be a positive number, got {value!r}")
        self.url = url
        self.retain_count = retain_count
        self.retain_seconds = retain_seconds
        self.key_prefix = key_prefix
        self.command_timeout = command_timeout
        self.publish_timeout = publish_timeout
        self.block_seconds = block_seconds
        self.read_count = read_count
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.reader_linger = reader_linger
        self._given_client = client
        #: Names this backend's publishes, with a sequence number: see `publish`.
        self._nonce = secrets.token_hex(8)
        self._sequence = itertools.count(1)
        self._max_connections = max_connections
        self._client: Any = None
        self._nursery: trio.Nursery | None = None
        self._deliver: Deliver | None = None
        self._end: EndTopic | None = None
        self._readers: dict[str, _Reader] = {}
        self._last_trim: dict[str, float] = {}
        self._last_prune = 0.0
        #: True from a failed age trim to the next one that succeeds: one warning per spell.
        self._trims_failing = False

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, key_prefix={self.key_prefix!r})"

    # -- lifetime -----------------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, deliver: Deliver, end: EndTopic) -> AsyncIterator[None]:
        if self._deliver is not None:
            raise RuntimeError(
                f"{self!r} is already open: a backend serves one Broadcast at a time"
            )
        client = self._given_client
        if client is None:
            client = coredis.Redis.from_url(
                self.url,
                decode_responses=True,
                # Retries are ours: with backoff and deadlines, and only where they are safe.
                retry_policy=NoRetryPolicy(),
                max_connections=self._max_connections,
                connect_timeout=self.command_timeout,
            )
        self._deliver, self._end = deliver, end
        try:
            # coredis's pool runs its connection tasks in a task group, and our readers run in
            # a nursery: both live in this block, in the task that owns the hub, and the
            # nursery is exited first since it was entered last. No deadline of our own
            # around the exit: a cancel scope opened here would enclose the exit of scopes
            # opened before it. The readers are cancelled; coredis's pool cancels its own
            # tasks on exit.
            async with client, trio.open_nursery() as nursery:
                self._client, self._nursery = client, nursery
                try:
                    yield
                finally:
                    # Forget the hub first: a reader that ends while it is cancelled
                    # delivers nothing more and ends no topic.
                    self._forget()
                    nursery.cancel_scope.cancel()
        finally:
            self._forget()

    def _forget(self) -> None:
        """Back to closed: no hub to deliver to, no client, no reader."""
        self._deliver = None
        self._end = None
        self._nursery = None
        self._client = None
        self._readers.clear()

    def _key(self, topic: str) -> str:
        return self.key_prefix + topic

    def _require_client(self) -> Any:
        if self._client is None:
            raise RuntimeError("RedisBackend is not open: enter its Broadcast first")
        return self._client

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, topic: str, event: SseEvent) -> str:
        client = self._require_client()
        key = self._key(topic)
        # The entry names its publish (this backend's nonce, a sequence number), so that a
        # retry can tell whether an attempt whose reply was lost was applied after all.
        token = f"{self._nonce}:{next(self._sequence)}"
        fields = {_TOKEN: token, **_encode_fields(event)}
        started = trio.current_time()
        deadline = started + self.publish_timeout
        backoff = self.backoff_initial
        retry = False
        while True:
            try:
                with trio.fail_after(self.command_timeout):
                    if not retry:
                        reply = await client.xadd(
                            key,
                            fields,
                            trim_strategy=PureToken.MAXLEN,
                            threshold=self.retain_count,
                            trim_operator=PureToken.APPROXIMATELY,
                        )
                    else:
                        # Redis may have applied an earlier attempt: add the entry only if
                        # no entry of the last moments carries the token, else answer its id.
                        window = int((trio.current_time() - started) * 1000) + _RETRY_MARGIN_MS
                        args = [token, str(window), str(self.retain_count)]
                        for name, value in fields.items():
                            args += [name, value]
                        reply = await client.eval(_IDEMPOTENT_XADD, keys=[key], args=args)
                entry_id = _text(reply)
                break
            except _UNAVAILABLE as exc:
                retry = True
                if trio.current_time() + backoff > deadline:
                    raise BroadcastUnavailable(
                        f"could not publish to topic {topic!r}: Redis at {self.url} did not "
                        f"answer within publish_timeout={self.publish_timeout}s ({exc!r})"
                    ) from exc
                logger.debug("publish to %r failed (%r); retrying in %.2fs", topic, exc, backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
        await self._trim_by_age(topic, key, entry_id)
        return entry_id

    async def _trim_by_age(self, topic: str, key: str, entry_id: str) -> None:
        now = trio.current_time()
        if now - self._last_prune >= _AGE_TRIM_EVERY:
            # Forget topics whose pacing is over: dynamic topics must not grow this for ever.
            self._last_prune = now
            self._last_trim = {
                name: when for name, when in self._last_trim.items() if now - when < _AGE_TRIM_EVERY
            }
        if now - self._last_trim.get(topic, -_AGE_TRIM_EVERY) < _AGE_TRIM_EVERY:
            return
        self._last_trim[topic] = now
        parsed = parse_stream_id(entry_id)
        if parsed is None:
            return
        min_id = f"{max(0, parsed[0] - int(self.retain_seconds * 1000))}-0"
        try:
            with trio.fail_after(self.command_timeout):
                await self._require_client().xtrim(
                    key, PureToken.MINID, min_id, trim_operator=PureToken.APPROXIMATELY
                )
        except _READER_RETRIES as exc:
            # The event is published all the same (so this never raises); a later publish
            # trims instead. Once per spell of failures a warning: entries outlive
            # retain_seconds meanwhile.
            if self._trims_failing:
                logger.debug("age trim of %r failed again: %r", topic, exc)
            else:
                self._trims_failing = True
                logger.warning(
                    "age trim of broadcast topic %r failed (%r): entries older than "
                    "retain_seconds=%s stay in Redis until a trim succeeds (further failures "
                    "are logged at DEBUG until then)",
                    topic,
                    exc,
                    self.retain_seconds,
                )
        else:
            if self._trims_failing:
                self._trims_failing = False
                logger.info("age trims of broadcast topics succeed again (topic %r)", topic)

    # -- live delivery ------------------------------------------------------------------------

    async def watch(self, topic: str) -> None:
        reader = self._readers.get(topic)
        if reader is None:
            if self._nursery is None:
                raise RuntimeError("RedisBackend is not open: enter its Broadcast first")
            state = ReaderState(self.backoff_initial, self.backoff_max)
            reader = self._readers[topic] = _Reader(state)
            self._nursery.start_soon(self._read, topic, reader)
        reader.idle_since = None
        await reader.ready.wait()
        if reader.state.phase is ReaderPhase.CRASHED:
            raise BroadcastUnavailable(
                f"the reader of broadcast topic {topic!r} crashed (logged); subscribe again"
            )

    def unwatch(self, topic: str) -> None:
        reader = self._readers.get(topic)
        if reader is not None:
            reader.idle_since = trio.current_time()

    def _should_stop(self, reader: _Reader) -> bool:
        return (
            reader.idle_since is not None
            and trio.current_time() - reader.idle_since >= self.reader_linger
        )

    async def _read(self, topic: str, reader: _Reader) -> None:
        """The topic's reader: the only task of this process that reads the topic's stream.

        A crash (a bug, not Redis being away: that is retried) is logged and ends the topic's
        local subscriptions, whose clients reconnect; the hub and other topics go on.
        """
        state = reader.state
        try:
            await self._read_loop(topic, reader)
        except Exception:
            logger.exception(
                "broadcast topic %r: its reader crashed; ending the topic's local "
                "subscriptions (their clients reconnect and resume)",
                topic,
            )
            state.crashed()
        finally:
            # Synchronous from the stop decision to here: a subscriber arriving later finds no
            # reader and starts a new one.
            if not state.is_finished:
                state.stopped()
            reader.ready.set()  # a subscriber still waiting in watch() is told
            if self._readers.get(topic) is reader:
                del self._readers[topic]
        if state.phase is ReaderPhase.CRASHED and self._end is not None:
            self._end(topic)

    async def _read_loop(self, topic: str, reader: _Reader) -> None:
        # One attempt per turn; `reader.state` says what the attempt must send and learns
        # what happened (see `_reader_state`). The reader counts the entries of the stream up
        # to its last id (the state's ``offset``: ``entries-added`` when it starts, plus one
        # per entry read). After a failed command, and after a full batch (it is behind, and
        # ``MAXLEN ~`` may have trimmed past it), it compares that count with ``XINFO
        # STREAM`` before it delivers more: entries added after its last id that are no
        # longer there were trimmed unread (a gap), and fewer entries ever added than it has
        # read means the stream was made anew (Redis lost its data). Either way its local
        # subscribers get a reset event, not a silent gap.
        #
        # Counting cannot tell a stream made anew that had more entries added than the reader
        # read (a reader that started on an empty topic has read none), so the reader also
        # checks the stream's incarnation (see `_incarnation`) when it starts and after every
        # failed command: if it changed, Redis lost the stream, and the subscribers get a
        # reset (reason ``unknown``) before the new stream's entries, read from its start.
        key = self._key(topic)
        client = self._require_client()
        state = reader.state
        full_batch = min(self.read_count, self.retain_count)
        while True:
            if self._should_stop(reader):
                return
            try:
                if state.must_start:
                    # Start after the stream's last id as it is now, before any local
                    # subscriber reads its replay: the replay covers up to there.
                    with trio.fail_after(self.command_timeout):
                        incarnation = await self._incarnation(client, key)
                    with trio.fail_after(self.command_timeout):
                        info = await self._stream_info(client, key)
                    latest = info.get("last-generated-id") if info is not None else None
                    offset = _int(info.get("entries-added")) if info is not None else 0
                    state.started(_text(latest or "0-0"), offset, incarnation)
                    reader.ready.set()
                elif state.checks_incarnation:
                    with trio.fail_after(self.command_timeout):
                        now = await self._incarnation(client, key)
                    if now != state.incarnation:
                        with trio.fail_after(self.command_timeout):
                            info = await self._stream_info(client, key)
                        self._tell_reset(topic, state.last_id, ResetReason.UNKNOWN)
                        # Read the new stream from its start; count what it trimmed already.
                        trimmed = 0
                        if info is not None:
                            trimmed = _int(info.get("entries-added")) - _int(info.get("length"))
                        state.made_anew(now, trimmed)
                with trio.fail_after(self.block_seconds + self.command_timeout):
                    result = await client.xread(
                        {key: state.last_id},
                        count=self.read_count,
                        block=int(self.block_seconds * 1000),
                    )
                entries = _entries(result, key)
                info = None
                if state.checks_gap or len(entries) >= full_batch:
                    with trio.fail_after(self.command_timeout):
                        info = await self._stream_info(client, key)
            except _READER_RETRIES as exc:
                if state.phase is not ReaderPhase.RETRYING:
                    logger.warning(
                        "broadcast topic %r: Redis at %s is unavailable (%r); retrying "
                        "with backoff, and resuming after id %s when it is back",
                        topic,
                        self.url,
                        exc,
                        state.last_id if state.has_place else "(none yet)",
                    )
                await trio.sleep(state.failed())
                continue
            if state.phase is ReaderPhase.RETRYING:
                logger.warning("broadcast topic %r: Redis is back; reading on", topic)
            state.answered(stream_seen=info is not None)
            reason = _lost_after(info, state.last_id, state.offset)
            if reason is not None and info is not None:
                self._tell_reset(topic, state.last_id, reason)
                # Re-count from what the stream holds now, all of it after the old last id.
                state.recounted(max(0, _int(info.get("entries-added")) - _int(info.get("length"))))
            for entry in entries:
                entry_id = _text(entry.identifier)
                state.advanced(entry_id)
                try:
                    event = _decode(entry_id, entry.field_values)
                except Exception:
                    logger.exception(
                        "broadcast topic %r: skipping stream entry %s, which could not be decoded",
                        topic,
                        entry_id,
                    )
                    continue
                if event is not None and self._deliver is not None:
                    self._deliver(topic, event)

    def _tell_reset(self, topic: str, last_id: str, reason: ResetReason) -> None:
        if reason is ResetReason.TOO_OLD:
            what = "were trimmed before this process could read them"
            message = (
                "events after this id were trimmed while this server could not read them; "
                "reload your state"
            )
        else:
            what = "may be lost: the stream was made anew (Redis lost its data)"
            message = "the topic was made anew (Redis lost its data); reload your state"
        logger.warning(
            "broadcast topic %r: entries after id %s %s; telling its local subscribers with "
            "a reset event",
            topic,
            last_id,
            what,
        )
        if self._deliver is not None:
            # The reset carries the last id read: a subscriber whose own replay already went
            # past it drops it as a duplicate, and a client that reconnects with it is told
            # again by its replay.
            self._deliver(topic, reset_event(reason, last_id, last_id, message))

    # -- replay -------------------------------------------------------------------------------

    async def replay(self, topic: str, last_event_id: str) -> Replay:
        client = self._require_client()
        key = self._key(topic)
        wanted = self.id_key(last_event_id)
        entries: tuple[Any, ...] = ()
        try:
            if wanted is not None:
                # One read, from the client's id inclusive: if that entry is still there, every
                # entry after it is too (Redis trims streams from the oldest end only), so the
                # answer is complete without trusting anything read at another moment. Its size
                # is bounded by the retention.
                with trio.fail_after(self.command_timeout):
                    entries = tuple(await client.xrange(key, f"{wanted[0]}-{wanted[1]}", "+"))
            with trio.fail_after(self.command_timeout):
                info = await self._stream_info(client, key)
        except _UNAVAILABLE as exc:
            raise BroadcastUnavailable(
                f"could not replay topic {topic!r}: Redis at {self.url} is unavailable ({exc!r})"
            ) from exc
        if info is None:
            return Replay([], ResetReason.UNKNOWN, "")
        latest = _text(info.get("last-generated-id") or "")
        if latest == "0-0":
            latest = ""  # an empty stream (its reader made it): no event yet
        latest_key = parse_stream_id(latest)
        if wanted is None or (latest_key is not None and wanted > latest_key):
            return Replay([], ResetReason.UNKNOWN, latest)
        found = bool(entries) and parse_stream_id(_text(entries[0].identifier)) == wanted
        first_entry = info.get("first-entry")
        first_key = parse_stream_id(_text(first_entry.identifier)) if first_entry else None
        if not found and (first_key is None or wanted < first_key):
            # The id is older than everything retained. Whether the entry right after it was
            # trimmed too cannot be known (Redis records no trimmed ids), so this errs towards
            # a reset. A stream that never trimmed anything cannot have had the id at all: it
            # was made anew (Redis lost its data) or the id was made up.
            added = info.get("entries-added")
            never_trimmed = isinstance(added, int) and added == info.get("length")
            reason = ResetReason.UNKNOWN if never_trimmed else ResetReason.TOO_OLD
            return Replay([], reason, latest)
        events = []
        for entry in entries[1:] if found else entries:
            event = _decode(_text(entry.identifier), entry.field_values)
            if event is not None:
                events.append(event)
        return Replay(events, None, latest)

    async def _incarnation(self, client: Any, key: str) -> str:
        """The stream's incarnation, made (with the stream if need be) if it has none.

        A consumer group named `_INCARNATION_GROUP` and a random part marks it: it is kept,
        persisted and replicated with the stream, and lost with it. Making it creates the
        stream (empty) for a topic that has subscribers but no event yet.
        """
        reply = await client.eval(
            _ENSURE_INCARNATION, keys=[key], args=[_INCARNATION_GROUP, secrets.token_hex(8)]
        )
        return _text(reply)

    async def _stream_info(self, client: Any, key: str) -> Mapping[str, Any] | None:
        try:
            info: Mapping[str, Any] = await client.xinfo_stream(key)
        except coredis.exceptions.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        return info

    def id_key(self, event_id: str) -> IdKey | None:
        return parse_stream_id(event_id)


def _text(value: object) -> str:
    """A reply as text, whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _lost_after(info: Mapping[str, Any] | None, last_id: str, offset: int) -> ResetReason | None:
    """Whether entries after ``last_id`` (the ``offset``-th entry ever added) are gone unread.

    ``info`` is ``XINFO STREAM``: Redis trims from the oldest end, so if the first retained
    entry is after ``last_id``, every retained entry is, and the entries added after
    ``last_id`` (``entries-added - offset``) should all be there. Read after the entries it
    judges, this errs towards a reset for a reader at the very edge of retention.
    """
    if info is None:
        return None
    added = _int(info.get("entries-added"))
    if added < offset:
        return ResetReason.UNKNOWN
    first_entry = info.get("first-entry")
    first = parse_stream_id(_text(first_entry.identifier)) if first_entry else None
    mark = parse_stream_id(last_id)
    if mark is not None and first is not None and first <= mark:
        return None  # the entry read last (or one before it) is still there: nothing trimmed
    if added - offset > _int(info.get("length")):
        return ResetReason.TOO_OLD
    return None


def _int(value: object) -> int:
    return value if isinstance(value, int) else int(_text(value or 0))


def _entries(result: object, key: str) -> tuple[Any, ...]:
    if not result:
        return ()
    assert isinstance(result, Mapping)
    for name, entries in result.items():
        if _text(name) == key:
            return tuple(entries)
    return ()


def _encode_fields(event: SseEvent) -> dict[str, str]:
    """The event's fields as stored in a stream entry; the data as its wire text."""
    fields: dict[str, str] = {}
    if event.data_text is not None:
        fields["d"] = event.data_text
    if event.event is not None:
        fields["e"] = event.event
    if event.retry is not None:
        fields["r"] = str(event.retry)
    if event.comment is not None:
        fields["c"] = event.comment
    return fields


def _decode(entry_id: str, fields: Mapping[Any, Any]) -> SseEvent | None:
    """A stream entry as an event with the entry id; ``None`` (logged) if it is not ours."""
    values = {_text(name): _text(value) for name, value in fields.items()}
    try:
        retry = values.get("r")
        return SseEvent(
            data=values.get("d", UNSET),
            event=values.get("e"),
            id=entry_id,
            retry=None if retry is None else int(retry),
            comment=values.get("c"),
        )
    except ValueError as exc:
        logger.error("skipping stream entry %s, which is not a broadcast event: %s", entry_id, exc)
        return None
