"""Every example of the SSE guide, as one trio-dwex app.

Run it with ``nox -s demo`` (or ``trio-dwex run examples.guide:app``), then::

    curl -N localhost:9929/events/countdown

Every interval is multiplied by the environment variable ``GUIDE_TICK`` (seconds, default 1),
so the tests can run the whole guide in a fraction of a second.

The notification feeds are private: each user's is read, by that user only, at
``/private/notifications`` or ``/notifications/stream?userId=<their id>``, with a bearer token.
``GUIDE_TOKEN`` (default ``secret-token``) is user ``user-1``'s, and ``GUIDE_ADMIN_TOKEN``
(default ``admin-token``) is user ``admin``'s, the one user who may post to another's feed::

    curl -N -H "Authorization: Bearer secret-token" localhost:9929/private/notifications

The activity example (``/activity``) is the guide's in-process event emitter by default. With
``GUIDE_BROADCAST`` (or ``--broadcast``) set to ``redis://host:port/db`` (or ``memory://``) it
runs on the broadcast hub instead (``examples/activity_broadcast.py``): every worker and host
that points at the same Redis shares the activity, with ids and ``Last-Event-ID`` replay::

    GUIDE_BROADCAST=redis://127.0.0.1:6379/0 trio-dwex run examples.guide:app
    python -m examples.guide --broadcast redis://127.0.0.1:6379/0 --port 9930
"""

from __future__ import annotations

import itertools
import os
import re
import resource
import secrets
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, TypedDict

import trio

from trio_dwex import (
    BadRequestException,
    Body,
    Controller,
    CorsSettings,
    DwexApp,
    ExecutionContext,
    ForbiddenException,
    Get,
    Headers,
    HTMLResponse,
    Injectable,
    Module,
    OpenAPISettings,
    Param,
    Post,
    Provider,
    Query,
    Req,
    Request,
    Settings,
    Sse,
    SseEvent,
    SseStream,
    StaticFiles,
    UnauthorizedException,
    UseGuards,
    create_app,
)

TICK = float(os.environ.get("GUIDE_TICK", "1"))
#: The front page and its script (``GET /``): every stream of the app, live.
STATIC = Path(__file__).with_name("guide_static")
JOB_ID = re.compile(r"[\w.-]{1,64}")
STARTED = time.monotonic()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- The events the streams send: each stream route declares its own (docs/openapi.md) -------


class Message(TypedDict):
    """A line of text for people: a greeting, or a goodbye."""

    message: str


class Update(TypedDict):
    count: int
    #: When the update was made, ISO 8601 (UTC).
    timestamp: str


class Tick(TypedDict):
    time: str
    count: int


class Count(TypedDict):
    count: int


class Alert(TypedDict):
    title: str
    body: str
    #: Milliseconds since the Unix epoch.
    timestamp: int


class Status(TypedDict):
    status: Literal["started", "ended"]


class Item(TypedDict):
    item: int


class Failure(TypedDict):
    error: str


# -- Approach 1 and 2, event fields, Last-Event-ID, error handling: /events/... --------------


@Injectable()
class DataService:
    """A data source that fails part-way, for the error-handling example."""

    async def stream(self) -> AsyncGenerator[dict[str, int], None]:
        for n in range(3):
            yield {"item": n}
            await trio.sleep(TICK / 2)
        raise ConnectionError("the data source went away")


@Controller("events")
class EventsController:
    def __init__(self, data_service: DataService) -> None:
        # Not ``self.data``: that would shadow the ``data`` handler below.
        self.data_service = data_service

    @Sse("updates", events={"connected": Message, "update": Update, "complete": Message})
    async def updates(self) -> AsyncIterator[SseEvent]:
        """Approach 1: an async generator."""
        yield SseEvent(data={"message": "Connected"}, event="connected")
        for i in range(10):
            yield SseEvent(data={"count": i, "timestamp": now_iso()}, event="update", id=str(i))
            await trio.sleep(TICK)
        yield SseEvent(data={"message": "Stream complete"}, event="complete")

    @Sse("time", events={"time": Tick})
    def time(self) -> SseStream:
        """Approach 2: an SseStream fed by a task that runs in the stream's own nursery."""
        stream = SseStream()

        async def tick() -> None:
            for count in range(10):
                await trio.sleep(TICK)
                await stream.send(SseEvent(data={"time": now_iso(), "count": count}, event="time"))
            stream.close()

        stream.start_soon(tick)  # cancelled by itself if the client leaves first
        return stream

    @Sse("countdown", events={"countdown": Count, "complete": Message})
    async def countdown(self) -> AsyncIterator[SseEvent]:
        for i in range(10, 0, -1):
            yield SseEvent(data={"count": i}, event="countdown", id=str(10 - i + 1))
            await trio.sleep(TICK)
        yield SseEvent(data={"message": "Countdown complete!"}, event="complete")

    @Sse("notifications", events={"notification": Alert})
    async def notifications(self) -> AsyncIterator[SseEvent]:
        """One event with every field."""
        yield SseEvent(
            data={"title": "New Message", "body": "You have a new message", "timestamp": now_ms()},
            event="notification",
            id="msg-123",
            retry=3000,
            comment="User notification event",
        )

    @Sse("resumable", events={"message": Count})
    async def resumable(
        self, last_event_id: Annotated[str | None, Headers("last-event-id")] = None
    ) -> AsyncIterator[SseEvent]:
        """Numeric ids: a reconnecting EventSource sends the last one and resumes after it.

        An empty header counts as none: an EventSource whose last event id was reset (an event
        with an empty ``id:``) sends ``Last-Event-ID:`` with nothing, and starts over.
        """
        last_id = (last_event_id or "").strip()
        start = 0
        if last_id:
            problem = f"header 'last-event-id' must be a non-negative integer, got {last_id[:32]!r}"
            if not (last_id.isascii() and last_id.isdigit()):
                raise BadRequestException(problem)
            try:
                start = int(last_id) + 1
            except ValueError:
                # More digits than Python parses (sys.get_int_max_str_digits(), 4300): a 400
                # like any other malformed id, not a 500.
                raise BadRequestException(problem) from None
        for i in range(start, 100):
            yield SseEvent(data={"count": i}, id=str(i), retry=3000)
            await trio.sleep(TICK)

    @Sse("data", events={"start": Status, "data": Item, "error": Failure, "end": Status})
    async def data(self) -> AsyncIterator[SseEvent]:
        """Errors become an event, and the stream still says goodbye.

        The event is named ``error`` as in the Dwex guide; in a browser that name also calls
        the EventSource's ``onerror`` (docs/clients.md says how to tell the two apart).
        """
        try:
            yield SseEvent(data={"status": "started"}, event="start")
            async with aclosing(self.data_service.stream()) as items:
                async for item in items:
                    yield SseEvent(data=item, event="data")
        except Exception as error:
            yield SseEvent(data={"error": str(error)}, event="error")
        finally:
            yield SseEvent(data={"status": "ended"}, event="end")


# -- Live server metrics: /monitoring/metrics ------------------------------------------------


def peak_rss() -> int:
    """The most RAM the process has held at once so far, in bytes (``getrusage``'s maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # kilobytes, except on macOS


def current_rss() -> int:
    """The RAM the process holds now (its resident set size), in bytes.

    Read from ``/proc/self/statm`` (Linux); where there is none, the peak is the closest
    figure available.
    """
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


class CpuTime(TypedDict):
    """Seconds of CPU time the process has used since it started."""

    user: float
    system: float


class Memory(TypedDict):
    """Bytes of RAM: ``rss`` is the resident set now, ``maxRss`` the peak so far."""

    rss: int
    maxRss: int


class Metrics(TypedDict):
    cpu: CpuTime
    memory: Memory
    #: Seconds since the process started.
    uptime: float


@Controller("monitoring")
class MonitoringController:
    @Sse("metrics", events={"metrics": Metrics})
    def metrics(self) -> SseStream:
        stream = SseStream()

        async def report() -> None:
            for count in itertools.count(1):
                await trio.sleep(TICK)
                usage = resource.getrusage(resource.RUSAGE_SELF)
                metrics = {
                    # Seconds of CPU time the process has used since it started.
                    "cpu": {"user": usage.ru_utime, "system": usage.ru_stime},
                    # Bytes of RAM: "rss" is the resident set now, "maxRss" the peak so far.
                    "memory": {"rss": current_rss(), "maxRss": peak_rss()},
                    "uptime": time.monotonic() - STARTED,
                }
                await stream.send(SseEvent(data=metrics, event="metrics", id=str(now_ms())))
                if count % 30 == 0:
                    await stream.send_comment("keep-alive")

        stream.start_soon(report)
        return stream


# -- Progress tracking: /jobs/progress/:jobId ---------------------------------------------------


class Started(TypedDict):
    status: Literal["started"]
    progress: int


class Progress(TypedDict):
    jobId: str
    #: Percent done, 0 to 100.
    progress: int
    status: Literal["running", "completed"]


@Controller("jobs")
class JobsController:
    @Sse("progress/:jobId", events={"start": Started, "progress": Progress, "complete": Progress})
    async def progress(self, job_id: Annotated[str, Param("jobId")]) -> AsyncIterator[SseEvent]:
        # The id becomes part of event ids: refuse what could not travel in one (CR, LF, NUL).
        if not JOB_ID.fullmatch(job_id):
            raise BadRequestException("jobId must be 1-64 letters, digits, '.', '_' or '-'")
        yield SseEvent(data={"status": "started", "progress": 0}, event="start")
        for progress in range(0, 101, 10):
            yield SseEvent(
                data={"jobId": job_id, "progress": progress, "status": "running"},
                event="progress",
                id=f"{job_id}-{progress}",
            )
            await trio.sleep(TICK / 2)
        yield SseEvent(
            data={"jobId": job_id, "progress": 100, "status": "completed"}, event="complete"
        )


# -- Event-driven updates: POST /activity fans out to every GET /activity/stream -------------

ActivityHandler = Callable[[SseEvent], object]


@Injectable()
class ActivityService:
    """An in-process event emitter, as in the guide.

    It emits the event itself, built once per activity, rather than the guide's plain object
    that every listener turns into an event of its own: one payload in memory however many
    streams listen, and a value that cannot be encoded fails in ``track_activity``'s caller,
    not in some listener's stream.
    """

    def __init__(self) -> None:
        self._handlers: list[ActivityHandler] = []

    def on(self, handler: ActivityHandler) -> None:
        self._handlers.append(handler)

    def off(self, handler: ActivityHandler) -> None:
        self._handlers.remove(handler)

    @property
    def listener_count(self) -> int:
        return len(self._handlers)

    def track_activity(self, user_id: str, activity: str) -> int:
        timestamp = now_ms()
        event = SseEvent(
            data={"userId": user_id, "activity": activity, "timestamp": timestamp},
            event="activity",
            id=str(timestamp),
        )
        for handler in list(self._handlers):
            handler(event)
        return len(self._handlers)


@dataclass
class ActivityIn:
    userId: str
    activity: str


class Activity(TypedDict):
    userId: str
    activity: str
    timestamp: int


@Controller("activity")
class ActivityController:
    def __init__(self, activity: ActivityService) -> None:
        self.activity = activity

    @Sse("stream", events={"activity": Activity})
    def stream(self) -> SseStream:
        stream = SseStream()
        # Every stream queues the same event: its bytes were encoded once, when it was built.
        handler = stream.send_nowait
        self.activity.on(handler)
        stream.on_close(lambda: self.activity.off(handler))
        return stream

    @Post()
    def track(self, body: Annotated[ActivityIn, Body()]) -> dict[str, int]:
        return {"delivered": self.activity.track_activity(body.userId, body.activity)}


# -- Users: who holds which bearer token ----------------------------------------------------


@dataclass(frozen=True)
class User:
    id: str
    #: May post to any user's feed; every other user may post only to their own.
    admin: bool = False


def guide_users() -> dict[str, User]:
    """The guide's users by bearer token: ``GUIDE_TOKEN`` and ``GUIDE_ADMIN_TOKEN``."""
    return {
        os.environ.get("GUIDE_TOKEN", "secret-token"): User("user-1"),
        os.environ.get("GUIDE_ADMIN_TOKEN", "admin-token"): User("admin", admin=True),
    }


@dataclass(frozen=True)
class GuideConfig:
    #: Each bearer token and the user it authenticates.
    users: Mapping[str, User] = field(default_factory=guide_users)


@Injectable()
class AuthGuard:
    """Authenticates the bearer token and leaves its user on ``request.user``.

    The user a handler acts for comes from here, never from the request's own say-so (a query
    parameter, a body field): those are the client's claims, which handlers check against it.
    """

    #: The OpenAPI document marks the routes this guard protects as needing a bearer token.
    security_scheme = "bearer"

    def __init__(self, config: GuideConfig) -> None:
        self.users = {token.encode(): user for token, user in config.users.items()}

    def can_activate(self, context: ExecutionContext) -> bool:
        request = context.request
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user = self._user_for(token.encode("latin-1")) if scheme.lower() == "bearer" else None
        if user is None:
            raise UnauthorizedException(
                "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        request.user = user
        return True

    def _user_for(self, token: bytes) -> User | None:
        found = None
        for known, user in self.users.items():
            # Constant time, every token compared: the time taken tells nothing of a guess.
            if secrets.compare_digest(known, token):
                found = user
        return found


# -- DI with a lifespan-owned service: /notifications/stream?userId=U -------------------------


@dataclass(frozen=True)
class Notification:
    id: str
    title: str
    body: str
    timestamp: int


@Injectable()
class NotificationService:
    """Delivers notifications to each user's open streams.

    An async context manager: the app enters it at startup, and its nursery owns the demo
    task that notifies every subscribed user every few ticks, so nothing is left running
    after shutdown.
    """

    DEMO_EVERY_TICKS = 3
    BUFFER = 16

    def __init__(self) -> None:
        self._subscribers: dict[str, set[trio.MemorySendChannel[SseEvent]]] = {}
        self._ids = itertools.count(1)
        self._exit_stack = AsyncExitStack()

    async def __aenter__(self) -> NotificationService:
        # The service's nursery lives from startup to shutdown, inside the app's lifespan.
        self._nursery = await self._exit_stack.enter_async_context(trio.open_nursery())
        self._nursery.start_soon(self._demo)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._nursery.cancel_scope.cancel()
        return await self._exit_stack.__aexit__(exc_type, exc, tb)

    async def _demo(self) -> None:
        while True:
            await trio.sleep(self.DEMO_EVERY_TICKS * TICK)
            for user_id in list(self._subscribers):
                self.notify(user_id, "Demo", f"A demo notification for {user_id}")

    def notify(self, user_id: str, title: str, body: str) -> int:
        """Queue a notification for the user's open streams; returns how many got it.

        The event is built here, once for all of them: a value that cannot be sent raises
        ``ValueError`` to the caller, and no stream of the user ever sees it.
        """
        notification = Notification(str(next(self._ids)), title, body, now_ms())
        event = SseEvent(data=notification, event="notification", id=notification.id)
        delivered = 0
        for channel in list(self._subscribers.get(user_id, ())):
            try:
                channel.send_nowait(event)
                delivered += 1
            except trio.WouldBlock:
                pass  # that stream is far behind; it keeps what it has, and this one is skipped
        return delivered

    @asynccontextmanager
    async def subscribe(self, user_id: str) -> AsyncIterator[trio.MemoryReceiveChannel[SseEvent]]:
        """The user's notification events, for as long as the ``async with`` block runs."""
        send, receive = trio.open_memory_channel[SseEvent](self.BUFFER)
        self._subscribers.setdefault(user_id, set()).add(send)
        try:
            yield receive
        finally:
            self._subscribers[user_id].discard(send)
            if not self._subscribers[user_id]:
                del self._subscribers[user_id]

    def subscriber_count(self, user_id: str) -> int:
        return len(self._subscribers.get(user_id, ()))


@dataclass
class NotificationIn:
    userId: str
    title: str
    body: str


async def notification_events(
    service: NotificationService, user_id: str
) -> AsyncIterator[SseEvent]:
    async with service.subscribe(user_id) as notifications:
        # Subscribed before saying hello: a client that saw "connected" misses nothing.
        yield SseEvent(data={"message": "Connected"}, event="connected")
        async for event in notifications:
            yield event


@Controller("notifications")
@UseGuards(AuthGuard)
class NotificationsController:
    """The guide's DI example, with the checks a per-user feed needs.

    The guide reads ``userId`` from the query and trusts it, so anyone could read anyone's
    notifications, and post into them. Here the guard authenticates the caller, and the
    ``userId`` a request names must be the caller's own, except that an admin may post to
    anyone.
    """

    def __init__(self, notifications: NotificationService) -> None:
        self.notifications = notifications

    @Sse("stream", events={"connected": Message, "notification": Notification})
    def stream(
        self, user_id: Annotated[str, Query("userId")], req: Annotated[Request, Req()]
    ) -> AsyncIterator[SseEvent]:
        # A plain function returning the generator, so that this refusal is a 403 before any
        # stream opens.
        if user_id != req.user.id:
            raise ForbiddenException("a user's notifications are theirs alone to read")
        return notification_events(self.notifications, user_id)

    @Post()
    def send(
        self, body: Annotated[NotificationIn, Body()], req: Annotated[Request, Req()]
    ) -> dict[str, int]:
        user: User = req.user
        if body.userId != user.id and not user.admin:
            raise ForbiddenException("only an admin may notify another user")
        return {"delivered": self.notifications.notify(body.userId, body.title, body.body)}


# -- Guards: /private/notifications -----------------------------------------------------------


@Controller("private")
class PrivateEventsController:
    def __init__(self, notifications: NotificationService) -> None:
        self.notifications = notifications

    @Sse("notifications", events={"connected": Message, "notification": Notification})
    @UseGuards(AuthGuard)
    def notifications_for_user(self, req: Annotated[Request, Req()]) -> AsyncIterator[SseEvent]:
        return notification_events(self.notifications, req.user.id)


# -- The front page: GET / --------------------------------------------------------------------


@Controller()
class WelcomeController:
    @Get()
    def welcome(self) -> HTMLResponse:
        """The demo's front page: it lists the app's streams (from ``/openapi.json``) and shows
        each one live (``examples/guide_static/``)."""
        return HTMLResponse((STATIC / "index.html").read_text())


#: The broadcast hub's URL for the activity example; unset: the in-process emitter.
BROADCAST = os.environ.get("GUIDE_BROADCAST") or None


def guide_module(broadcast: str | None = None) -> type:
    """The guide's root module; with ``broadcast``, its activity example is on that hub."""
    activity: list[Any] = [ActivityController]
    activity_providers: list[Any] = [ActivityService]
    if broadcast is not None:
        from examples import activity_broadcast
        from trio_dwex.broadcast import Broadcast

        hub_url = broadcast
        activity = [activity_broadcast.ActivityController]
        activity_providers = [
            activity_broadcast.ActivityService,
            # A factory: the app enters the hub it makes at startup and exits it at shutdown.
            Provider(Broadcast, use_factory=lambda: Broadcast.from_url(hub_url)),
        ]

    @Module(
        controllers=[
            EventsController,
            MonitoringController,
            JobsController,
            *activity,
            NotificationsController,
            PrivateEventsController,
            WelcomeController,
        ],
        providers=[
            DataService,
            *activity_providers,
            NotificationService,
            AuthGuard,
            Provider(GuideConfig, use_value=GuideConfig()),
        ],
    )
    class AppModule:
        pass

    return AppModule


def make_app(broadcast: str | None = None) -> DwexApp:
    """The guide app; ``broadcast`` (a hub URL) puts its activity example on the hub.

    Each call makes a new app: two apps on one Redis URL behave like two worker processes.
    """
    return create_app(guide_module(broadcast), settings=guide_settings(), mounts=guide_mounts())


def guide_settings() -> Settings:
    """Any origin may read the streams; the OpenAPI document says who the API is."""
    return Settings(
        cors=CorsSettings(allow_origins=("*",)),
        openapi=OpenAPISettings(
            title="trio-dwex guide",
            version="1.0.0",
            description="Every example of the SSE guide, each stream with its declared events.",
            security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        ),
    )


def guide_mounts() -> dict[str, StaticFiles]:
    """The front page's script, stylesheet and icon, under ``/static``."""
    return {"/static": StaticFiles(STATIC)}


AppModule = guide_module(BROADCAST)
app = create_app(AppModule, settings=guide_settings(), mounts=guide_mounts())


def main(argv: list[str] | None = None) -> None:
    """``python -m examples.guide [--broadcast URL] [--host H] [--port P]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Every example of the SSE guide, as one app.")
    parser.add_argument(
        "--broadcast",
        default=BROADCAST,
        help="the activity example on the broadcast hub at this URL (redis://host:port/db or "
        "memory://); default: GUIDE_BROADCAST, else the in-process emitter",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9929)
    args = parser.parse_args(argv)
    from trio_dwex import run

    run(make_app(args.broadcast), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
