"""`Runs`: work that outlives the connection that asked for it, and that clients reattach to.

An LLM answer takes seconds to minutes; a user reloads the page, loses the train's network,
switches tabs. Tied to its connection, the generation dies with it (work and tokens wasted).
Detached into a **run**, it goes on in the app's own nursery and writes its events to a topic
of its own, with ids; the client reattaches with the run's id and its ``Last-Event-ID`` and
gets the rest, with no gap and no duplicate, on any worker when the hub is on Redis.

Each run has three topics on the hub that `Runs` owns:

* ``<id>`` holds the run's events: a ``run.started`` marker, the producer's events, then one
  ``run.ended`` event whose data says how it ended (``completed``, ``cancelled``, ``failed``).
  Readers get the producer's events and the ``run.ended`` one; the start marker is ours.
* ``<id>:status`` holds the `RunInfo`, written at the start and at the end: what `status`
  reads, without reading the events.
* one control topic, shared, carries cancellations to the worker that runs the producer.

Retention is the hub's: `Runs` makes its backend keep every event of a run for
``max_duration + keep_finished`` seconds, so that a finished run stays readable for
``keep_finished`` seconds, and then is gone (`GoneException`, a 410): whole or not at all. A
backend that keeps topics until told (Redis) is told: a run's topics expire
``max_duration + keep_finished`` after its start and ``keep_finished`` after its end.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

import trio

from .._errors import (
    BadRequestException,
    GoneException,
    NotFoundException,
    ServiceUnavailableException,
    TooManyRequestsException,
)
from ..streams._iterators import aclose_iterator
from ..wire._sse import SseEvent, to_event
from ._backend import (
    RESET_EVENT,
    BroadcastBackend,
    BroadcastUnavailable,
    check_counts,
    check_seconds,
)
from ._hub import Broadcast, backend_from_url
from ._memory import MemoryBackend

__all__ = ["RUN_ENDED_EVENT", "RUN_ID_PATTERN", "RunInfo", "RunStatus", "Runs"]

logger = logging.getLogger("trio_dwex.broadcast")

#: The ``event:`` name of a run's last event; its data is ``{"status": ..., "error": ...}``.
RUN_ENDED_EVENT: Final = "run.ended"
#: The first event of a run's topic: how a reader knows it has the run from its start.
_STARTED_EVENT: Final = "run.started"
_CONTROL_TOPIC: Final = "runs:control"

RunStatus = Literal["running", "completed", "cancelled", "failed"]
"""Where a run is: still producing, or how it ended."""

#: What every run id looks like: ``run_``, the milliseconds since the epoch when it started (11
#: hex digits, until the year 2527), then 96 random bits. For a route's ``Constraint(pattern=)``.
RUN_ID_PATTERN: Final = "run_[0-9a-f]{35}"
_RUN_ID: Final = re.compile(r"run_([0-9a-f]{11})([0-9a-f]{24})")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What is known of a run, on any worker: `Runs.status` reads it.

    Attributes:
        id: the run's id (``run_...``), as `Runs.start` returned it.
        status: ``running``, or how it ended.
        owner: whose run it is (``Runs.start(owner=...)``), or ``None``.
        started_at: when it started (Unix seconds).
        ended_at: when it ended, or ``None`` while it runs.
        error: why it was cancelled or failed (``None`` otherwise); never a traceback.
    """

    id: str
    status: RunStatus
    owner: str | None
    started_at: float
    ended_at: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The info as JSON-able data (``startedAt``, ``endedAt``)."""
        return {
            "id": self.id,
            "status": self.status,
            "owner": self.owner,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        return cls(
            id=data["id"],
            status=data["status"],
            owner=data["owner"],
            started_at=data["startedAt"],
            ended_at=data["endedAt"],
            error=data["error"],
        )


class _LocalRun:
    """A run whose producer runs in this process: its scope, and why it was cancelled."""

    __slots__ = ("cancel_reason", "info", "scope")

    def __init__(self, info: RunInfo, scope: trio.CancelScope) -> None:
        self.info = info
        self.scope = scope
        self.cancel_reason: str | None = None

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.scope.cancel()


class Runs:
    """Producers detached from their connection, each writing its events to a run's topic.

    List it as a provider (the app enters it at startup: its nursery is where runs run)::

        Provider(Runs, use_factory=lambda: Runs.from_url("redis://127.0.0.1:6379/0"))

    then, in a handler, start a run and answer with its events, or with any part of them::

        run_id = await runs.start(model.generate(prompt), owner=user)
        return EventSourceResponse(await runs.events(run_id), headers={"X-Run-Id": run_id})

    Args:
        backend: where the runs' topics live: `MemoryBackend` (one process) or ``RedisBackend``
            (every worker and host). Its retention must cover ``max_duration + keep_finished``
            seconds and ``max_events`` events; `from_url` builds one that does.
        max_runs: runs producing at once in this process; `start` answers more with 503.
        max_runs_per_owner: runs of one owner producing at once in this process; more: 429.
        max_events: events a run may produce; one more fails it (every event is kept until
            the run expires, so this bounds its memory, or its Redis stream).
        max_duration: seconds a run may produce; then it is stopped and fails.
        keep_finished: seconds a finished run stays readable; then it is gone (410).
        shutdown_grace: seconds the runs still producing at shutdown get to finish; the rest
            are cancelled, and end with a ``run.ended`` event saying so (``"error":
            "shutdown"``).
        cancel_timeout: seconds `cancel` waits for the run to end.
        retry_after: seconds announced in ``Retry-After`` when a run is refused.
    """

    def __init__(
        self,
        backend: BroadcastBackend | None = None,
        *,
        max_runs: int = 1000,
        max_runs_per_owner: int = 10,
        max_events: int = 10_000,
        max_duration: float = 900.0,
        keep_finished: float = 300.0,
        shutdown_grace: float = 3.0,
        cancel_timeout: float = 5.0,
        retry_after: int = 5,
    ) -> None:
        check_counts(
            "Runs",
            max_runs=max_runs,
            max_runs_per_owner=max_runs_per_owner,
            max_events=max_events,
            retry_after=retry_after,
        )
        check_seconds(
            "Runs",
            finite=True,
            max_duration=max_duration,
            keep_finished=keep_finished,
            shutdown_grace=shutdown_grace,
            cancel_timeout=cancel_timeout,
        )
        retain_count, retain_seconds = max_events + 2, max_duration + keep_finished
        if backend is None:
            backend = MemoryBackend(retain_count=retain_count, retain_seconds=retain_seconds)
        _check_retention(backend, retain_count, retain_seconds)
        # A reader that joins a run late is replayed its events while new ones arrive: room
        # for a whole run's worth, so that it is not dropped for falling behind its replay.
        self.hub = Broadcast(backend, subscriber_buffer=retain_count)
        self.max_runs = max_runs
        self.max_runs_per_owner = max_runs_per_owner
        self.max_events = max_events
        self.max_duration = max_duration
        self.keep_finished = keep_finished
        self.shutdown_grace = shutdown_grace
        self.cancel_timeout = cancel_timeout
        self.retry_after = retry_after
        self._local: dict[str, _LocalRun] = {}
        self._owners: Counter[str] = Counter()
        self._idle = trio.Event()
        self._idle.set()
        self._runs_nursery: trio.Nursery | None = None
        self._lifetime: AsyncExitStack | None = None

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> Runs:
        """Runs on the backend a URL names (``memory://`` or ``redis://host:port/db``), with
        the retention the settings need; ``settings`` are `Runs`'s keyword arguments."""
        if url in ("memory", "memory://"):
            return cls(**settings)  # a memory backend sized by the settings
        # The retention the settings need, as the runs (checked, with their defaults) say.
        needs = cls(**settings)
        backend = backend_from_url(
            url,
            what="runs",
            retain_count=needs.max_events + 2,
            retain_seconds=needs.max_duration + needs.keep_finished,
            key_prefix="trio-dwex:runs:",
        )
        return cls(backend, **settings)

    # -- lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._lifetime is not None:
            raise RuntimeError("these Runs are already open; enter them once at a time")
        async with AsyncExitStack() as opening:
            await opening.enter_async_context(self.hub)
            control = await opening.enter_async_context(trio.open_nursery())
            await control.start(self._listen_for_cancels)
            opening.callback(control.cancel_scope.cancel)  # on exit: after the runs' nursery
            self._runs_nursery = await opening.enter_async_context(trio.open_nursery())
            lifetime = opening.pop_all()
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
        # The shutdown policy: the runs still producing get `shutdown_grace` to finish, then
        # are cancelled; each still writes its end (shielded), so no run is left half-written.
        try:
            with trio.move_on_after(self.shutdown_grace):
                await self._idle.wait()
        finally:
            # Also when that wait was cancelled: the nurseries are closed in any case.
            for run in list(self._local.values()):
                run.cancel("shutdown")
            self._runs_nursery = None
            await lifetime.__aexit__(exc_type, exc, tb)

    def _check_open(self, what: str) -> trio.Nursery:
        if self._runs_nursery is None:
            raise RuntimeError(
                f"Runs.{what}() needs open Runs: list them as a provider (the app enters them "
                "at startup), or use `async with Runs(...) as runs`"
            )
        return self._runs_nursery

    # -- starting and following a run ---------------------------------------------------------

    async def start(self, events: AsyncIterable[object], *, owner: str | None = None) -> str:
        """Run ``events`` (an async generator, say) in the background; the run's id, at once.

        Each item becomes an event of the run (as a handler's yield does: an `SseEvent`, a
        mapping of its fields, or plain data), with an id from the hub. The producer runs until
        it ends, `cancel`, ``max_duration`` or shutdown; its ``finally`` runs in every case.

        Raises:
            ServiceUnavailableException: ``max_runs`` runs are producing in this process (503).
            TooManyRequestsException: ``owner`` has ``max_runs_per_owner`` producing (429).
        """
        nursery = self._check_open("start")
        retry = {"Retry-After": str(self.retry_after)}
        refusal: Exception | None = None
        if len(self._local) >= self.max_runs:
            refusal = ServiceUnavailableException(
                f"too many runs in progress (max_runs={self.max_runs}); retry later",
                headers=retry,
            )
        elif owner is not None and self._owners[owner] >= self.max_runs_per_owner:
            refusal = TooManyRequestsException(
                f"too many runs in progress for this user (max_runs_per_owner="
                f"{self.max_runs_per_owner}); wait for one to end, or cancel one",
                headers=retry,
            )
        if refusal is not None:
            await _close(events)
            raise refusal
        run_id = f"run_{int(time.time() * 1000):011x}{secrets.token_hex(12)}"
        info = RunInfo(run_id, "running", owner, time.time())
        run = _LocalRun(info, trio.CancelScope(deadline=trio.current_time() + self.max_duration))
        self._add(run)  # counted at once: no await between the limit's check and this
        try:
            await self.hub.publish(_status_topic(run_id), _status_event(info))
            await self.hub.publish(run_id, SseEvent(event=_STARTED_EVENT, data=""))
            # Gone at the latest when a run that lasts its longest has been kept its time,
            # even if its end is never written (its worker died).
            await self._expire(run_id, self.max_duration + self.keep_finished)
        except BaseException:
            self._remove(run)
            await _close(events)
            raise
        nursery.start_soon(self._produce, run, events)
        return run_id

    async def events(
        self, run_id: str, *, last_event_id: str | None = None, owner: str | None = None
    ) -> AsyncIterator[SseEvent]:
        """The events of a run, from its start or after ``last_event_id``, as an async iterator
        to return from a handler (or to map first); it ends after the ``run.ended`` event.

        Every event has its id, so a client that loses the connection comes back with
        ``Last-Event-ID`` and gets the rest: no gap, no duplicate, even from another worker
        (on Redis). An id the run no longer has gets one ``reset`` event, then the stream ends.

        Raises (here, before any event, so the response is a proper HTTP error):
            NotFoundException: no such run, or ``owner`` is given and the run is another's.
            GoneException: the run existed, and expired (``keep_finished`` after its end).
            BadRequestException: ``last_event_id`` is no id of a run.
        """
        await self.status(run_id, owner=owner)
        if last_event_id is not None and self.hub.backend.id_key(last_event_id) is None:
            raise BadRequestException(
                f"Last-Event-ID {last_event_id[:60]!r} is not an event id of a run"
            )
        return self._follow(run_id, last_event_id or None)

    async def _follow(self, run_id: str, last_event_id: str | None) -> AsyncIterator[SseEvent]:
        async with self.hub.subscribe(
            run_id, last_event_id, history=last_event_id is None
        ) as subscription:
            async for event in subscription:
                if event.event == _STARTED_EVENT:
                    continue
                yield event
                if event.event in (RUN_ENDED_EVENT, RESET_EVENT):
                    return

    async def status(self, run_id: str, *, owner: str | None = None) -> RunInfo:
        """What is known of the run, on any worker.

        Raises:
            NotFoundException: no such run, or ``owner`` is given and the run is another's
                (the same answer, so that ids of others' runs cannot be probed).
            GoneException: the run existed, and expired.
        """
        self._check_open("status")
        match = _RUN_ID.fullmatch(run_id)
        if match is None:
            raise NotFoundException("no such run")
        try:
            with trio.fail_after(self.hub.replay_timeout):
                replay = await self.hub.backend.history(_status_topic(run_id))
        except trio.TooSlowError:
            raise BroadcastUnavailable("the runs' backend did not answer in time") from None
        if not replay.events:
            started = int(match.group(1), 16) / 1000
            if time.time() - started > self.keep_finished:
                # Old enough to have ended and expired; a run this young cannot have.
                raise GoneException("this run has expired: its events are no longer kept")
            raise NotFoundException("no such run")
        info = RunInfo.from_json(json.loads(replay.events[-1].data or "{}"))
        if owner is not None and info.owner != owner:
            raise NotFoundException("no such run")
        if info.ended_at is not None and time.time() > info.ended_at + self.keep_finished:
            # Kept a while longer by a backend's retention, perhaps, but no longer whole (its
            # oldest events age out first): gone, as promised, rather than half there.
            raise GoneException("this run has expired: its events are no longer kept")
        return info

    async def cancel(self, run_id: str, *, owner: str | None = None) -> RunInfo:
        """Stop a run on purpose, on whichever worker it runs; its info once it has ended.

        The producer is cancelled (its ``finally`` runs), its readers get the ``run.ended``
        event (``"status": "cancelled"``) and their streams end. A run that has ended already
        is left as it is. Waits up to ``cancel_timeout`` seconds for the end.

        Raises:
            NotFoundException, GoneException: as `status`.
        """
        info = await self.status(run_id, owner=owner)
        if info.status != "running":
            return info
        async with self.hub.subscribe(_status_topic(run_id)) as updates:
            info = await self.status(run_id, owner=owner)  # it may have ended meanwhile
            if info.status != "running":
                return info
            local = self._local.get(run_id)
            if local is not None:
                local.cancel("cancelled")
            else:
                await self.hub.publish(_CONTROL_TOPIC, SseEvent(data={"cancel": run_id}))
            with trio.move_on_after(self.cancel_timeout):
                async for event in updates:
                    info = RunInfo.from_json(json.loads(event.data or "{}"))
                    if info.status != "running":
                        return info
        return info

    @property
    def running(self) -> int:
        """Runs producing in this process now."""
        return len(self._local)

    # -- the producer's side ----------------------------------------------------------------

    async def _produce(self, run: _LocalRun, events: AsyncIterable[object]) -> None:
        status: RunStatus = "cancelled"
        error: str | None = "shutdown"  # what a cancellation from outside our scope means
        try:
            with run.scope:
                await self._pump(run.info.id, events)
                status, error = "completed", None
            if run.scope.cancelled_caught:
                if run.cancel_reason is None:
                    status = "failed"
                    error = f"the run took longer than max_duration={self.max_duration:g}s"
                else:
                    status, error = "cancelled", run.cancel_reason
        except _TooManyEvents:
            status, error = "failed", f"the run produced more than max_events={self.max_events}"
        except Exception:
            logger.exception("run %s failed", run.info.id)
            status, error = "failed", "the run failed; the server's log says why"
        finally:
            self._remove(run)
            ended = RunInfo(
                run.info.id, status, run.info.owner, run.info.started_at, time.time(), error
            )
            await self._write_end(ended)

    async def _pump(self, run_id: str, events: AsyncIterable[object]) -> None:
        iterator = aiter(events)
        count = 0
        try:
            async for item in iterator:
                count += 1
                if count > self.max_events:
                    raise _TooManyEvents
                await self.hub.publish(run_id, to_event(item))
        finally:
            # Closed here, in this task, whatever ended the run: its finally runs now.
            with trio.CancelScope(shield=True):
                await aclose_iterator(iterator)

    async def _write_end(self, info: RunInfo) -> None:
        """The run's final status, then its last event: shielded, so that a cancelled run still
        says how it ended; bounded, so that an unreachable backend cannot hang shutdown."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.cancel_timeout
            try:
                # The status first: whoever has read the run's last event then finds it ended.
                await self.hub.publish(_status_topic(info.id), _status_event(info))
                ended = {"status": info.status, "error": info.error}
                await self.hub.publish(info.id, SseEvent(event=RUN_ENDED_EVENT, data=ended))
                await self._expire(info.id, self.keep_finished)
            except BroadcastUnavailable:
                logger.error(
                    "run %s ended (%s) but its end could not be written", info.id, info.status
                )
        if scope.cancelled_caught:
            logger.error("run %s ended (%s) but writing its end timed out", info.id, info.status)

    async def _expire(self, run_id: str, seconds: float) -> None:
        """Drop the run's topics ``seconds`` from now, where the backend keeps topics until
        told (Redis); elsewhere its retention already does."""
        for topic in (run_id, _status_topic(run_id)):
            await self.hub.backend.expire(topic, seconds)

    async def _listen_for_cancels(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Cancel the local runs that another worker was asked to cancel."""
        started = False
        while True:
            try:
                async with self.hub.subscribe(_CONTROL_TOPIC) as requests:
                    if not started:
                        started = True
                        task_status.started()
                    async for request in requests:
                        run = self._local.get(json.loads(request.data or "{}").get("cancel", ""))
                        if run is not None:
                            run.cancel("cancelled")
            except BroadcastUnavailable:
                logger.warning("the runs' control topic is unreachable; retrying in 1 s")
            await trio.sleep(1.0)  # the subscription ended (an outage): subscribe again

    def _add(self, run: _LocalRun) -> None:
        self._local[run.info.id] = run
        if run.info.owner is not None:
            self._owners[run.info.owner] += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    def _remove(self, run: _LocalRun) -> None:
        if self._local.pop(run.info.id, None) is None:
            return
        owner = run.info.owner
        if owner is not None:
            self._owners[owner] -= 1
            if self._owners[owner] <= 0:
                del self._owners[owner]
        if not self._local:
            self._idle.set()


class _TooManyEvents(Exception):
    pass


def _status_topic(run_id: str) -> str:
    return f"{run_id}:status"


def _status_event(info: RunInfo) -> SseEvent:
    return SseEvent(event="run.status", data=info.to_json())


def _check_retention(backend: BroadcastBackend, count: int, seconds: float) -> None:
    kept_count = getattr(backend, "retain_count", None)
    kept_seconds = getattr(backend, "retain_seconds", None)
    if (kept_count is not None and kept_count < count) or (
        kept_seconds is not None and kept_seconds < seconds
    ):
        raise ValueError(
            f"this backend keeps {kept_count} events for {kept_seconds} s; Runs needs at least "
            f"{count} events for {seconds:g} s (max_events + 2, max_duration + keep_finished). "
            "Runs.from_url builds a backend that does"
        )


async def _close(events: AsyncIterable[object]) -> None:
    """Close a producer that will never run (an async generator's body has not started)."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
