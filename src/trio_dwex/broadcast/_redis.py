r"""`RedisBackend`: broadcast topics as Redis Streams, shared by every process and host.

Needs the ``redis`` extra (``pip install trio-dwex[redis]``: coredis, an anyio-based client that
runs on Trio) and Redis 7.0 or later (``XADD ... MAXLEN ~`` with ``XTRIM ... MINID``, and
``XINFO STREAM``'s ``entries-added`` to tell a trimmed stream from one made anew).

Theory of operation. A topic is the stream ``<key_prefix><topic>``.

* **publish** is one ``XADD ... MAXLEN ~ retain_count``; the entry id Redis assigns is the
  event's id, so ids are monotonic per topic across every publisher. An event larger than
  ``retain_bytes`` is refused before it is sent (`EventTooLarge`). Each entry carries its
  event's size (the ``n`` field). Retention by age is an ``XTRIM ... MINID ~``, measured on the
  server's clock (the entry id's milliseconds), never on this host's; retention by bytes is a
  Lua script (`_TRIM_BYTES`) that walks the stream from its newest entry, adding up sizes, and
  trims what lies beyond ``retain_bytes``, always keeping the newest `_TRIM_KEEPS` entries.
  Both run after a publish, at most once a second per topic and process, or sooner once this
  process published a quarter of ``retain_bytes`` to the topic since its last trim.
* **live delivery**: one reader task per topic and process, started with the topic's first
  local subscriber, reads from the last id it delivered and hands each entry to the hub, which
  fans it out to every local subscriber. Caught up, it waits in a blocking ``XREAD`` of a few
  entries (`_TRIM_KEEPS`); when that read is full, it may have fallen behind, and it reads on
  in pages of at most ``read_bytes`` (`_READ_PAGE`, a Lua script that answers a page and the
  stream's counts at one moment) until a page is the last, so that what it holds at once is
  bounded in bytes. It starts from the stream's last entry *before* the first subscriber
  replays, so that nothing falls between the replay and the live events. It stops
  ``reader_linger`` seconds after the last local subscriber left (a reconnecting client does
  not restart it).
* **outages**: when Redis goes away, local subscribers stay connected; the reader retries with
  exponential backoff and, once Redis is back, reads on from the last id it delivered, so every
  entry Redis still has is delivered, in order, once. Entries that were trimmed before it could
  read them (an outage longer than retention) are not skipped silently: the reader counts the
  entries up to its last id (``entries-added`` when it starts, one per entry read) and, after
  a failed command or a full blocking read, compares that count with the stream's (read with
  each page); entries added after its last id that are gone unread, or a stream with fewer
  entries ever added than it read (made anew), make it deliver one ``reset`` event (reason
  ``too_old`` or ``unknown``, its id the last id read) to the local subscribers before what
  follows. Every trim by count or bytes leaves at least `_TRIM_KEEPS` entries (or
  ``retain_count``, if fewer), so a reader that such a trim went past finds its blocking read
  full, and checks; a trim by age can leave fewer, but goes past a reader only if it read
  nothing for ``retain_seconds``. This assumes every process trims with the same
  ``retain_count`` and ``retain_bytes`` and nobody deletes entries (``XDEL``). Counting cannot
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
* **replay**: pages of at most ``read_bytes`` (`_READ_PAGE` from the client's id, inclusive,
  and the stream's counts, at one moment); the hub asks for the next page, after the last
  event of this one, once its subscriber has taken it (`Replay.more`). Redis trims streams
  from the oldest end only, so if the page's first id (the client's, then the last one
  replayed) is still there, everything after it is, and the page follows on without a gap. If
  it is gone, the client gets a reset, never a silent gap (Redis records no trimmed ids, so a
  client whose last event was the very last one trimmed gets a reset it could have done
  without). An id newer than the stream's last, or older than a stream that never trimmed
  anything (made anew after Redis lost its data), is unknown; so is anything that is not an
  id (`parse_stream_id`), which is never sent to Redis.

**Bytes, and where they are bounded.** In this process: a replay holds one page at a time
(``read_bytes``, or one event if it is larger), per subscriber that is replaying; a reader
holds one page, or one blocking read of `_TRIM_KEEPS` entries; no event is larger than
``retain_bytes``. In Redis: each topic's stream holds about ``retain_bytes`` (what the topic's
publishers add between two byte trims comes on top: a quarter of ``retain_bytes`` per
publishing process), at least its newest `_TRIM_KEEPS` entries, and at most ``retain_count``
entries, for ``retain_seconds``. Redis's own ``maxmemory`` bounds the sum over topics.

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
    DEFAULT_RETAIN_BYTES,
    BroadcastBackend,
    BroadcastUnavailable,
    Deliver,
    EndTopic,
    EventTooLarge,
    IdKey,
    Replay,
    ResetReason,
    check_counts,
    check_seconds,
    event_size,
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

#: Seconds between two trims (by age, ``XTRIM MINID``, and by bytes) of one topic by one
#: process, unless it publishes a quarter of ``retain_bytes`` to the topic sooner.
_AGE_TRIM_EVERY = 1.0

#: The entries a trim by bytes always keeps, whatever their size; also the entries a caught-up
#: reader asks for in one blocking read. A reader that some trim went past finds at least this
#: many entries after its last id, so a blocking read that is not full was not trimmed past.
_TRIM_KEEPS = 4

#: The most bytes of ``id: <id>\n`` a Redis stream id adds to an event: two 20-digit numbers.
_ID_LINE_MAX = len("id: \n") + 2 * 20 + 1

#: Lua: an entry's size as `event_size` counts it (its ``n`` field, plus its id line); for an
#: entry written without ``n``, the length of its values, near enough.
_LUA_SIZE = """
local function entry_size(entry)
  local fields, n, text = entry[2], nil, 0
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then n = tonumber(fields[i + 1]) end
    text = text + #fields[i + 1] + 8
  end
  return (n or text) + #entry[1] + 5
end
"""

#: Lua: the numbers of ``XINFO STREAM`` that tell a gap, without the first and last entries it
#: also answers (they may be megabytes); ``false`` if there is no stream.
_LUA_INFO = """
local function stream_info(key)
  if redis.call('EXISTS', key) == 0 then
    return false
  end
  local raw = redis.call('XINFO', 'STREAM', key)
  local added, length, first, last = 0, 0, '', '0-0'
  for i = 1, #raw, 2 do
    local name, value = raw[i], raw[i + 1]
    if name == 'entries-added' then
      added = value
    elseif name == 'length' then
      length = value
    elseif name == 'last-generated-id' then
      last = value
    elseif name == 'first-entry' and value then
      first = value[1]
    end
  end
  return {added, length, first, last}
end
"""

#: The stream's numbers (``KEYS[1]``): ``{entries-added, length, first id or '', last id}``,
#: or nil if there is no stream.
_STREAM_INFO = (
    _LUA_INFO
    + """
return stream_info(KEYS[1])
"""
)

#: A page of the stream ``KEYS[1]`` after the id ``ARGV[1]``, and the stream's numbers at the
#: same moment: ``{added, length, first, last, found, more, entries}``, or nil if there is no
#: stream. ``entries`` are those after the id, oldest first: at least one if there is one, at
#: most ``ARGV[3]``, and no more than ``ARGV[2]`` bytes in all unless the first alone is;
#: ``found``: the id is an entry of the stream; ``more``: entries follow the page. Reads the
#: stream in small steps, so that Redis holds little more than the page. One key: it runs on
#: Redis Cluster too.
_READ_PAGE = (
    _LUA_SIZE
    + _LUA_INFO
    + """
local key, start = KEYS[1], ARGV[1]
local budget, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local info = stream_info(key)
if not info then
  return false
end
local found, more, total, out, from = 0, 0, 0, {}, start
while true do
  local batch = redis.call('XRANGE', key, from, '+', 'COUNT', 16)
  for _, entry in ipairs(batch) do
    if entry[1] == start then
      found = 1
    else
      local size = entry_size(entry)
      if #out >= limit or (#out > 0 and total + size > budget) then
        more = 1
        break
      end
      total = total + size
      out[#out + 1] = entry
    end
  end
  if more == 1 or #batch < 16 then
    break
  end
  from = '(' .. batch[#batch][1]
end
return {info[1], info[2], info[3], info[4], found, more, out}
"""
)

#: Trims the stream ``KEYS[1]`` to its newest entries that hold at most ``ARGV[1]`` bytes in
#: all, keeping its newest ``ARGV[2]`` whatever their size; answers how many it trimmed.
#: Exact (``XTRIM MINID`` without ``~``), from the oldest end, as every trim of Redis is.
_TRIM_BYTES = (
    _LUA_SIZE
    + """
local key, budget, keep = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local total, count, newer, upto = 0, 0, nil, '+'
while true do
  local batch = redis.call('XREVRANGE', key, upto, '-', 'COUNT', 16)
  for _, entry in ipairs(batch) do
    count = count + 1
    total = total + entry_size(entry)
    if count > keep and total > budget then
      return redis.call('XTRIM', key, 'MINID', newer)
    end
    newer = entry[1]
  end
  if #batch < 16 then
    return 0
  end
  upto = '(' .. batch[#batch][1]
end
"""
)

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


class _TrimPace:
    """When this process last trimmed a topic, and how many bytes it published there since."""

    __slots__ = ("published", "when")

    def __init__(self, when: float) -> None:
        self.when = when
        self.published = 0


class _Page:
    """What `_READ_PAGE` answers: the stream's numbers, and the entries of one page.

    ``info`` has the keys ``entries-added``, ``length``, ``first-id`` (``None`` for an empty
    stream) and ``last-generated-id``, or is ``None`` if there is no stream (and no entry).
    """

    __slots__ = ("entries", "found", "info", "more")

    def __init__(
        self,
        info: dict[str, Any] | None,
        found: bool,
        more: bool,
        entries: list[tuple[str, Mapping[Any, Any]]],
    ) -> None:
        self.info = info
        self.found = found
        self.more = more
        self.entries = entries


class RedisBackend(BroadcastBackend):
    """Topics in Redis Streams, for a hub shared by worker processes and hosts.

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
        client: a coredis ``Redis`` or ``RedisCluster`` to use instead of ``url`` (made with
            ``decode_responses=True``); the backend enters it when the hub opens and exits it
            when the hub closes.
        retain_count: entries kept per topic (approximately: ``MAXLEN ~`` keeps at least this
            many, and trims in whole nodes of about a hundred).
        retain_bytes: bytes kept per topic (see `event_size`), trimmed after publishes (see
            the module's docstring for what comes on top); also the largest event taken:
            a larger one raises `EventTooLarge` (a 413).
        retain_seconds: how long entries are kept for replay.
        key_prefix: prepended to the topic to make the stream's key.
        command_timeout: deadline of each command (blocking reads get it on top of their block).
        publish_timeout: how long `publish` retries while Redis is unreachable.
        block_seconds: how long one ``XREAD`` blocks; also how often an idle reader checks
            whether it should stop.
        read_count: entries read at most at once (a page of a replay, or of a reader that
            fell behind).
        read_bytes: bytes read at most at once, likewise (at least one entry: an event may
            be larger); what a replay or a reader holds in this process's memory at a time.
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
        retain_bytes: int = DEFAULT_RETAIN_BYTES,
        retain_seconds: float = 300.0,
        key_prefix: str = "trio-dwex:broadcast:",
        command_timeout: float = 5.0,
        publish_timeout: float = 10.0,
        block_seconds: float = 1.0,
        read_count: int = 512,
        read_bytes: int = 1024 * 1024,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        reader_linger: float = 5.0,
        max_connections: int = 256,
    ) -> None:
        check_counts(
            "RedisBackend",
            retain_count=retain_count,
            retain_bytes=retain_bytes,
            read_count=read_count,
            read_bytes=read_bytes,
        )
        check_seconds(
            "RedisBackend",
            finite=False,
            retain_seconds=retain_seconds,
            command_timeout=command_timeout,
            publish_timeout=publish_timeout,
            block_seconds=block_seconds,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        self.url = url
        self.retain_count = retain_count
        self.retain_bytes = retain_bytes
        self.retain_seconds = retain_seconds
        self.key_prefix = key_prefix
        self.command_timeout = command_timeout
        self.publish_timeout = publish_timeout
        self.block_seconds = block_seconds
        self.read_count = read_count
        self.read_bytes = read_bytes
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
        self._last_trim: dict[str, _TrimPace] = {}
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
        size = event_size(event)
        # The id is Redis's to give: count the longest there is.
        if size + _ID_LINE_MAX > self.retain_bytes:
            await trio.lowlevel.checkpoint()
            raise EventTooLarge(topic, size + _ID_LINE_MAX, self.retain_bytes)
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
        await self._trim(topic, key, entry_id, size + len(entry_id) + len("id: \n"))
        return entry_id

    async def expire(self, topic: str, seconds: float) -> None:
        """``PEXPIRE`` the topic's stream: it goes ``seconds`` from now, as a whole."""
        client = self._require_client()
        try:
            with trio.fail_after(self.command_timeout):
                await client.pexpire(self._key(topic), max(1, round(seconds * 1000)))
        except _UNAVAILABLE as exc:
            raise BroadcastUnavailable(
                f"could not set the expiry of topic {topic!r}: Redis at {self.url} is "
                f"unavailable ({exc!r})"
            ) from exc

    async def _trim(self, topic: str, key: str, entry_id: str, size: int) -> None:
        """Trim the topic by age and by bytes, if it is time (see `_AGE_TRIM_EVERY`)."""
        now = trio.current_time()
        if now - self._last_prune >= _AGE_TRIM_EVERY:
            # Forget topics whose pacing is over: dynamic topics must not grow this for ever.
            self._last_prune = now
            self._last_trim = {
                name: pace
                for name, pace in self._last_trim.items()
                if now - pace.when < _AGE_TRIM_EVERY
            }
        pace = self._last_trim.get(topic)
        if pace is not None and now - pace.when < _AGE_TRIM_EVERY:
            pace.published += size
            if pace.published < self.retain_bytes // 4:
                return
        self._last_trim[topic] = _TrimPace(now)
        parsed = parse_stream_id(entry_id)
        if parsed is None:
            return
        min_id = f"{max(0, parsed[0] - int(self.retain_seconds * 1000))}-0"
        client = self._require_client()
        try:
            with trio.fail_after(self.command_timeout):
                await client.xtrim(
                    key, PureToken.MINID, min_id, trim_operator=PureToken.APPROXIMATELY
                )
            with trio.fail_after(self.command_timeout):
                await client.eval(
                    _TRIM_BYTES, keys=[key], args=[str(self.retain_bytes), str(_TRIM_KEEPS)]
                )
        except _READER_RETRIES as exc:
            # The event is published all the same (so this never raises); a later publish
            # trims instead. Once per spell of failures a warning: entries outlive
            # retain_seconds meanwhile.
            if self._trims_failing:
                logger.debug("age trim (or byte trim) of %r failed again: %r", topic, exc)
            else:
                self._trims_failing = True
                logger.warning(
                    "age trim (or byte trim) of broadcast topic %r failed (%r): entries older "
                    "than retain_seconds=%s, or beyond retain_bytes=%s, stay in Redis until a "
                    "trim succeeds (further failures are logged at DEBUG until then)",
                    topic,
                    exc,
                    self.retain_seconds,
                    self.retain_bytes,
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
        # per entry read). After a failed command, and after a full blocking read (it may be
        # behind, and a trim may have gone past it), it reads pages (`_READ_PAGE`), each with
        # the stream's counts at the same moment, and compares them with its own before it
        # delivers the page: entries added after its last id that are no longer there were
        # trimmed unread (a gap), and fewer entries ever added than it has read means the
        # stream was made anew (Redis lost its data). Either way its local subscribers get a
        # reset event, not a silent gap. It reads pages until one is the last, then waits in
        # a blocking read again.
        #
        # Counting cannot tell a stream made anew that had more entries added than the reader
        # read (a reader that started on an empty topic has read none), so the reader also
        # checks the stream's incarnation (see `_incarnation`) when it starts and after every
        # failed command: if it changed, Redis lost the stream, and the subscribers get a
        # reset (reason ``unknown``) before the new stream's entries, read from its start.
        key = self._key(topic)
        client = self._require_client()
        state = reader.state
        # Every trim leaves at least this many entries (see `_TRIM_KEEPS`): a blocking read
        # with fewer was not trimmed past, and is delivered as it is.
        full_batch = min(_TRIM_KEEPS, self.retain_count)
        #: Whether the next read is a page (the reader may be behind), not a blocking read.
        behind = False
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
                info = None
                if behind or state.checks_gap:
                    with trio.fail_after(self.command_timeout):
                        page = await self._read_page(client, key, state.last_id)
                    info, entries, behind = page.info, page.entries, page.more
                else:
                    with trio.fail_after(self.block_seconds + self.command_timeout):
                        result = await client.xread(
                            {key: state.last_id},
                            count=full_batch,
                            block=int(self.block_seconds * 1000),
                        )
                    entries = _entries(result, key)
                    if len(entries) >= full_batch:
                        # Perhaps behind, and trimmed past: read from the same place again,
                        # in pages that come with the counts that tell a gap.
                        entries, behind = [], True
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
            for entry_id, fields in entries:
                state.advanced(entry_id)
                try:
                    event = _decode(entry_id, fields)
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
        # Anything that is not an id of ours is unknown, and never reaches Redis (which would
        # answer a part of 2**64 or more with an error).
        wanted = self.id_key(last_event_id)
        page: _Page | None = None
        try:
            with trio.fail_after(self.command_timeout):
                if wanted is None:
                    info = await self._stream_info(client, key)
                else:
                    # One page from the client's id, inclusive, with the stream's counts at
                    # the same moment: if that entry is still there, every entry after it is
                    # too (Redis trims streams from the oldest end only), so the page follows
                    # on from it without a gap.
                    page = await self._read_page(client, key, f"{wanted[0]}-{wanted[1]}")
                    info = page.info
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
        if wanted is None or page is None or (latest_key is not None and wanted > latest_key):
            return Replay([], ResetReason.UNKNOWN, latest)
        first_key = parse_stream_id(info.get("first-id") or "")
        if not page.found and (first_key is None or wanted < first_key):
            # The id is older than everything retained. Whether the entry right after it was
            # trimmed too cannot be known (Redis records no trimmed ids), so this errs towards
            # a reset. A stream that never trimmed anything cannot have had the id at all: it
            # was made anew (Redis lost its data) or the id was made up.
            never_trimmed = _int(info.get("entries-added")) == _int(info.get("length"))
            reason = ResetReason.UNKNOWN if never_trimmed else ResetReason.TOO_OLD
            return Replay([], reason, latest)
        events = self._decode_page(topic, page.entries)
        if page.more and not events:
            # Every entry of the page was skipped: go on after the last of them, since the
            # hub asks for the next page after the last event it was given.
            return await self.replay(topic, page.entries[-1][0])
        return Replay(events, None, latest, more=page.more)

    async def history(self, topic: str) -> Replay:
        client = self._require_client()
        try:
            with trio.fail_after(self.command_timeout):
                page = await self._read_page(client, self._key(topic), "-")  # from the oldest
        except _UNAVAILABLE as exc:
            raise BroadcastUnavailable(
                f"could not read the history of topic {topic!r}: Redis at {self.url} is "
                f"unavailable ({exc!r})"
            ) from exc
        if page.info is None:
            return Replay([], None, "")
        latest = _text(page.info.get("last-generated-id") or "")
        events = self._decode_page(topic, page.entries)
        if page.more and not events:
            return await self.replay(topic, page.entries[-1][0])
        return Replay(events, None, "" if latest == "0-0" else latest, more=page.more)

    def _decode_page(self, topic: str, entries: list[tuple[str, Any]]) -> list[SseEvent]:
        """The events of a page's entries; one that cannot be decoded is logged and skipped."""
        events = []
        for entry_id, fields in entries:
            try:
                event = _decode(entry_id, fields)
            except Exception:
                logger.exception(
                    "broadcast topic %r: skipping stream entry %s in a replay, which could not "
                    "be decoded",
                    topic,
                    entry_id,
                )
                continue
            if event is not None:
                events.append(event)
        return events

    async def _read_page(self, client: Any, key: str, after: str) -> _Page:
        """One page of the stream after the id ``after``, with its counts (`_READ_PAGE`)."""
        reply = await client.eval(
            _READ_PAGE, keys=[key], args=[after, str(self.read_bytes), str(self.read_count)]
        )
        if not reply:
            return _Page(None, False, False, [])
        added, length, first, last, found, more, raw = reply
        info = {
            "entries-added": _int(added),
            "length": _int(length),
            "first-id": _text(first) or None,
            "last-generated-id": _text(last),
        }
        entries = [(_text(entry_id), _fields(values)) for entry_id, values in raw]
        return _Page(info, _int(found) == 1, _int(more) == 1, entries)

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
        """The stream's counts, as in `_Page.info`: ``None`` if there is no stream.

        Not ``XINFO STREAM`` itself, which also answers the first and the last entry, whole.
        """
        reply = await client.eval(_STREAM_INFO, keys=[key], args=[])
        if not reply:
            return None
        added, length, first, last = reply
        return {
            "entries-added": _int(added),
            "length": _int(length),
            "first-id": _text(first) or None,
            "last-generated-id": _text(last),
        }

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
    ``last_id`` (``entries-added - offset``) should all be there. ``info`` comes with the
    entries it judges (`_READ_PAGE`), read at the same moment, so the answer is exact.
    """
    if info is None:
        return None
    added = _int(info.get("entries-added"))
    if added < offset:
        return ResetReason.UNKNOWN
    first = parse_stream_id(info.get("first-id") or "")
    mark = parse_stream_id(last_id)
    if mark is not None and first is not None and first <= mark:
        return None  # the entry read last (or one before it) is still there: nothing trimmed
    if added - offset > _int(info.get("length")):
        return ResetReason.TOO_OLD
    return None


def _int(value: object) -> int:
    return value if isinstance(value, int) else int(_text(value or 0))


def _entries(result: object, key: str) -> list[tuple[str, Mapping[Any, Any]]]:
    """The entries of ``key`` in an ``XREAD`` reply, as (id, fields)."""
    if not result:
        return []
    assert isinstance(result, Mapping)
    for name, entries in result.items():
        if _text(name) == key:
            return [(_text(entry.identifier), entry.field_values) for entry in entries]
    return []


def _fields(values: Any) -> Mapping[Any, Any]:
    """An entry's fields, answered by a script as a flat list ``[name, value, ...]``."""
    items = list(values)
    return {_text(name): value for name, value in zip(items[::2], items[1::2], strict=True)}


def _encode_fields(event: SseEvent) -> dict[str, str]:
    """The event's fields as stored in a stream entry; the data as its wire text."""
    # ``n``: the event's size (see `event_size`, without the id line), which the scripts that
    # page and trim the stream add up without decoding the entry.
    fields: dict[str, str] = {"n": str(event_size(event))}
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
