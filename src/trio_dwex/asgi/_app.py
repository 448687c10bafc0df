"""The ASGI application: `create_app(AppModule)` compiles the modules and serves their routes.

Per request, in this order: CORS preflight; route match (404, 405); guards (before any handler
code, so a rejected SSE request never opens a stream); the stream limit for SSE routes; the
interceptors around parameter conversion and the handler; then the handler's result becomes
a response. Lifespan startup enters the providers that are async context managers, and
shutdown closes every open stream before it exits them.

What a result becomes does not depend on the method: a stream (an `SseStream`, an async
iterable, an `EventSourceResponse` built by the handler) is an event stream on any route,
counted by the app and ended at its shutdown, and a `Response` is sent as it is. On a plain
route anything else is JSON (text for ``str``, 204 for ``None``); on an ``@Sse`` route it is a
mistake (a 500, logged), since answering once there is a decision the handler states by
returning a `Response`. ``@Sse`` declares that a route streams, so its limit is checked before
the handler runs and its stream options apply; a plain route whose handler returns a stream is
checked when it does, under the app's options.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import trio

from .._errors import (
    ConfigurationError,
    HttpException,
    ServiceUnavailableException,
    TooManyRequestsException,
)
from ..framework._di import Provider
from ..framework._module import ApplicationPlan, compile_application
from ..framework._params import Release
from ..framework._pipeline import ExecutionContext, run_guards, run_interceptors
from ..framework._routing import RoutePlan
from ..framework._scope import RequestScope
from ..framework._solving import solve_params
from ..streams._lease import StreamLease
from ..streams._settings import StreamSettings
from ..streams._stream import SseStream
from ..streams._tracker import StreamStats, StreamTracker
from ..wire._paths import below_root, below_root_raw
from ..wire._sse import current_serializer, use_serializer
from ._cors import Cors, origin_of
from ._docs import OpenAPIPages
from ._files import FileResponse
from ._metrics import StreamMetrics
from ._mounts import Mounts
from ._openapi import build_document
from ._request import Request
from ._responses import EventSourceResponse, JSONResponse, Response, error_response
from ._settings import Settings
from ._tracing import trace_streams
from ._types import (
    SERVER_EXTENSION,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    scope_header,
    without_foreign_direct_write,
)

__all__ = ["DwexApp", "create_app"]

logger = logging.getLogger("trio_dwex.asgi")

_Answer = Response | EventSourceResponse | FileResponse


def create_app(
    root_module: type,
    *,
    settings: Settings | None = None,
    mounts: Mapping[str, ASGIApp] | None = None,
    overrides: Sequence[object] = (),
    guards: Sequence[object] = (),
    interceptors: Sequence[object] = (),
) -> DwexApp:
    r"""Build the ASGI application for ``root_module`` and the modules it imports.

    Every mistake of wiring (a missing provider, a cycle, a bad route or parameter) raises
    `ConfigurationError` here, before the server takes a request. The OpenAPI document is
    built here too (`Settings.openapi`).

    ``mounts`` serves other ASGI apps under path prefixes, ahead of the routes:
    ``{"/static": StaticFiles("static")}``, or another framework's app. Their lifespans run
    inside the app's (see docs/responses.md).

    Any provider or controller can inject the app's `StreamTracker` (from
    ``trio_dwex.lowlevel``), to close a user's streams at logout (`StreamTracker.close_where`).

    ``guards`` and ``interceptors`` apply to every route (classes are created through the
    container, like ``@UseGuards`` entries), before the controllers' own. ``overrides`` are
    ``Provider`` entries (or ``@Injectable()`` classes) that replace the modules' providers of the
    same type: how a test swaps a config or a clock (docs/testing.md).
    """
    if settings is not None and not isinstance(settings, Settings):
        raise TypeError(f"create_app(settings=...) takes a Settings, got {settings!r}")
    try:
        mounted = Mounts(mounts or {})
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    # The app's tracker is injectable (`StreamTracker`): a logout handler closes a user's
    # streams with it.
    tracker = StreamTracker()
    plan = compile_application(
        root_module,
        overrides=overrides,
        guards=guards,
        interceptors=interceptors,
        builtins=[Provider(StreamTracker, use_value=tracker)],
    )
    return DwexApp(plan, settings or Settings(), mounted, tracker)


class DwexApp:
    """An ASGI 3 application (HTTP and lifespan) made by `create_app`.

    Serve it with ``trio-dwex run module:app``, ``serve(app)`` or ``hypercorn --worker-class
    trio module:app``.

    Attributes:
        settings: the app's `Settings`.
        streams: counts open streams and their outcomes, and closes them all at shutdown.
        openapi: the app's OpenAPI 3.2 document (JSON-able data), or None when
            ``Settings(openapi=None)``.
        metrics: what ``GET /metrics`` serves (a `StreamMetrics`), or None when
            ``Settings(metrics_path=None)``.
        spans: the span per stream (OpenTelemetry), or None without ``opentelemetry-api`` or
            with ``Settings(tracing=False)``.
    """

    def __init__(
        self,
        plan: ApplicationPlan,
        settings: Settings,
        mounts: Mounts | None = None,
        tracker: StreamTracker | None = None,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.mounts = mounts or Mounts({})
        self.streams = tracker or StreamTracker()
        self._cors = None if settings.cors is None else Cors(settings.cors)
        # Streams admitted whose handler runs, not yet registered with the tracker: in total,
        # and by ("owner", owner) and ("client", address) for the per-owner and client caps.
        self._starting_streams = 0
        self._starting_by: Counter[tuple[str, str]] = Counter()
        # Each SSE route's stream settings (app-wide ones with the route's ``@Sse`` overrides)
        # are built and checked once, here, rather than per request. Keyed by identity: the
        # plan holds its routes for the app's lifetime.
        self._route_streams: dict[int, tuple[StreamSettings, Any]] = {
            id(route): _stream_options(settings.streams, route)
            for route in plan.routes
            if route.kind == "sse"
        }
        self.metrics = None if settings.metrics_path is None else StreamMetrics(self.streams)
        self.spans = trace_streams(self.streams) if settings.tracing else None
        # The paths the app answers itself, ahead of mounts and routes.
        self._own_paths = {settings.readiness_path, settings.metrics_path} - {None}
        _check_not_shadowed(plan, settings)
        self.openapi = None if settings.openapi is None else build_document(plan, settings)
        self._pages = (
            None
            if self.openapi is None or settings.openapi is None
            else OpenAPIPages(self.openapi, settings.openapi, plan.router)
        )

    def stats(self) -> StreamStats:
        """Open streams and totals (opened, closed by reason): JSON-able, for metrics."""
        return self.streams.stats()

    def drain(self, window: float | None = None) -> None:
        """Begin a graceful shutdown: refuse new streams (and say so at ``readiness_path``),
        and end the open ones over ``window`` seconds (default ``Settings.drain_window``), each
        at a random moment, each told when to reconnect (``StreamSettings.farewell_retry``).
        `serve` calls it as soon as the server is told to stop."""
        spread = self.settings.drain_window if window is None else window
        self.streams.close_all(spread=spread)

    def close_streams(self) -> None:
        """Close every open stream (their cleanup runs) and refuse new ones: the first step of
        a graceful shutdown. `serve` calls it as soon as the server is told to stop."""
        self.streams.close_all()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        serializer = self.settings.serializer
        if scope["type"] == "http" and serializer is current_serializer():
            # Already in force (the default, or an enclosing app's): setting it again would
            # hold a setting and a context for as long as a stream lives.
            answer = await self._http(without_foreign_direct_write(scope, send), receive, send)
            await answer
            return
        with use_serializer(serializer):
            if scope["type"] == "http":
                answer = await self._http(without_foreign_direct_write(scope, send), receive, send)
                await answer
            elif scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            elif scope["type"] == "websocket":
                # Not served: closing before accepting answers the handshake with 403.
                await receive()
                await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Route a request: what answers it, to be awaited by the caller.

        Returned rather than awaited here, so that this frame is gone while the answer runs:
        a stream's answer runs for as long as its client stays, and every frame it waits
        under costs memory per open stream and a step per resumption of its writer.
        """
        path = _app_path(scope)
        if path in self._own_paths and scope["method"] in ("GET", "HEAD"):
            if path == self.settings.readiness_path:
                return self._readiness()(scope, receive, send)
            if self.metrics is not None:
                return self.metrics.response()(scope, receive, send)
        mount = self.mounts.find(path) if self.mounts.apps else None
        if mount is not None:
            prefix, mounted = mount
            return mounted(self.mounts.scope_for(scope, prefix), receive, send)
        origin = origin_of(scope) if self._cors is not None else None
        if self._cors is not None and origin is not None:
            asked = scope_header(scope, b"access-control-request-method")
            if scope["method"] == "OPTIONS" and asked is not None:
                requested = scope_header(scope, b"access-control-request-headers") or ""
                return self._cors.preflight(origin, asked, requested)(scope, receive, send)
            send = self._cors.wrap_send(origin, send)
        providers = RequestScope(self.plan.container)
        try:
            answer = await self._dispatch(scope, path, receive, providers)
        except Exception as exc:
            if not isinstance(exc, HttpException):
                logger.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            answer = error_response(exc)
        except BaseException:
            await self._release(providers, "response")
            raise
        if isinstance(answer, Response):
            # Complete already: released before it is sent, so that a client's next request
            # finds the connection back in its pool.
            await self._release(providers, "response")
            return answer(scope, receive, send)
        if not (providers.holds("response") or providers.holds("headers")):
            return answer(scope, receive, send)
        return self._answer_then_release(answer, providers, scope, receive, send)

    async def _answer_then_release(
        self, answer: _Answer, providers: RequestScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Send ``answer``, a stream, with the request's providers released as they say:
        those held until the headers as the headers go, the others once it has ended."""
        if providers.holds("headers"):
            send = self._releasing_at_start(send, providers)
        try:
            await answer(scope, receive, send)
        finally:
            await self._release(providers, "response")

    def _readiness(self) -> Response:
        if self.streams.shutting_down:
            retry = {"Retry-After": str(self.settings.retry_after)}
            return JSONResponse({"ready": False}, 503, retry)
        return JSONResponse({"ready": True})

    def _releasing_at_start(self, send: Send, providers: RequestScope) -> Send:
        """``send`` that exits the providers injected with ``release="headers"`` as the
        response's headers are committed: just before they are sent, so that a client that
        has them knows the resource is free."""

        async def release_then_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._release(providers, "headers")
            await send(message)

        return release_then_send

    async def _release(self, providers: RequestScope, when: Release) -> None:
        # Shielded: a client that left must not stop a connection going back to its pool;
        # bounded by close_timeout, as a stream's own cleanup is.
        if providers.holds(when) or (when == "response" and providers.holds("headers")):
            with trio.CancelScope(shield=True) as shield:
                shield.deadline = trio.current_time() + self.settings.streams.close_timeout
                await providers.release(when)

    async def _dispatch(
        self, scope: Scope, path: str, receive: Receive, providers: RequestScope
    ) -> _Answer:
        """The answer to a request for ``path`` (below the app's ``root_path``)."""
        if self._pages is not None:
            page = self._pages.answer(scope["method"], path, str(scope.get("root_path") or ""))
            if page is not None:
                return page
        sent = _sent_path(scope)
        # An error names the path the client sent, a mount's prefix included.
        route, path_params = self.plan.router.match(
            scope["method"], _routed_path(scope, sent, path), shown_path=sent
        )
        request = Request(
            scope,
            receive,
            path_params,
            max_body_size=self.settings.max_body_size,
            body_timeout=self.settings.body_timeout,
        )
        context = ExecutionContext(request, route.controller_class, route.handler)
        await run_guards(route.guards, context)
        if route.kind != "sse":
            result = await self._call(route, request, context, providers)
            if not is_stream(result):
                return _to_response(result, route.status)
            # Only now is it known to stream: the limit is checked here, with no await between
            # this check and the stream's registration, as below.
            await self._admit_late(result, request.lease)
            return self._to_stream(route, result, request.lease)
        with self._admitting(request.lease):
            result = await self._call(route, request, context, providers)
            if isinstance(result, Response | FileResponse):
                return result  # the handler chose to answer this request once
            return self._to_stream(route, result, request.lease)

    async def _call(
        self,
        route: RoutePlan,
        request: Request,
        context: ExecutionContext,
        providers: RequestScope,
    ) -> Any:
        """Run the interceptors around the handler; what they returned."""

        async def call_handler() -> Any:
            arguments = await solve_params(route.call_plan, request, providers)
            result = route.endpoint(**arguments)
            if inspect.isawaitable(result):
                result = await result
            return result

        return await run_interceptors(route.interceptors, context, call_handler)

    @contextmanager
    def _admitting(self, lease: StreamLease) -> Iterator[None]:
        """Admit a stream (or raise 503/429) and count it as starting while its handler runs.

        The stream registers with the tracker as soon as its response runs, with no await
        between the end of this block and that, so no limit is exceeded by requests in flight.
        """
        self._check_stream_limit(lease)
        keys = _cap_keys(lease)
        self._starting_streams += 1
        self._starting_by.update(keys)
        try:
            yield
        finally:
            self._starting_streams -= 1
            self._starting_by.subtract(keys)
            for key in keys:
                if self._starting_by[key] <= 0:
                    del self._starting_by[key]

    def _check_stream_limit(self, lease: StreamLease) -> None:
        settings = self.settings
        retry = {"Retry-After": str(settings.retry_after)}
        if self.streams.shutting_down:
            raise ServiceUnavailableException("the server is shutting down", headers=retry)
        limit = settings.max_streams
        if limit is not None and self.streams.open_count + self._starting_streams >= limit:
            raise ServiceUnavailableException(
                f"too many open event streams (max_streams={limit}); retry later", headers=retry
            )
        # 429, not 503: the server has room, this owner (or address) has used its share. The
        # message names the setting, never the owner or address.
        if self._over_cap("owner", lease.owner, settings.max_streams_per_owner):
            raise TooManyRequestsException(
                "too many open event streams for this user "
                f"(max_streams_per_owner={settings.max_streams_per_owner}); close one or retry "
                "later",
                headers=retry,
            )
        if self._over_cap("client", lease.client, settings.max_streams_per_client):
            raise TooManyRequestsException(
                "too many open event streams from this address "
                f"(max_streams_per_client={settings.max_streams_per_client}); close one or "
                "retry later",
                headers=retry,
            )

    def _over_cap(self, kind: str, key: str | None, cap: int | None) -> bool:
        """Whether one more stream for ``key`` (an owner or a client) would pass ``cap``."""
        if key is None or cap is None:
            return False
        open_now = self.streams.open_for(**{kind: key})
        return open_now + self._starting_by[kind, key] >= cap

    async def _admit_late(self, result: object, lease: StreamLease) -> None:
        """The stream limits for a stream that a plain route returned; a refused one is let go."""
        try:
            self._check_stream_limit(lease)
        except HttpException:
            await _let_go(result)
            raise

    def _to_stream(
        self, route: RoutePlan, result: object, lease: StreamLease
    ) -> EventSourceResponse:
        stream_settings, headers = self._route_streams.get(id(route), (self.settings.streams, None))
        if isinstance(result, EventSourceResponse):
            # Built by the handler: counted and ended at shutdown like any stream of the app,
            # and the options it was not given are the route's and the app's.
            result.track(self.streams, defaults=stream_settings, headers=headers, lease=lease)
            return result
        if not isinstance(result, SseStream | AsyncIterable):
            raise TypeError(
                f"SSE handler {route.name} returned {type(result).__name__}; yield events or "
                "return an SseStream (or return a Response, such as a JSONResponse, to answer "
                "this request once)"
            )
        if route.events is not None and self.settings.check_events:
            # Checked as the stream reads each event (framework/_events.py); a returned
            # SseStream is run by this response when the check iterates its events.
            result = route.events.checked(result)
        # An interceptor may have wrapped the handler's SseStream: the stream is run by this
        # response when its events are iterated (see streams/_stream.py).
        return EventSourceResponse(
            result, settings=stream_settings, headers=headers, tracker=self.streams, lease=lease
        )

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        if SERVER_EXTENSION not in (scope.get("extensions") or {}):
            logger.warning(
                "this app is not served by trio-dwex's server (plain `hypercorn`?), so some "
                "clients that leave are never noticed: a client that sends a byte after its "
                "request and goes keeps its stream and socket open, and a client that stops "
                "reading can pin a write for ever. Serve it with `trio-dwex run module:app` "
                "or `trio_dwex.serve(app)`; see docs/troubleshooting.md"
            )
        self.streams.accept_new()
        started = False
        try:
            async with (
                self.plan.container.lifespan(),
                self.mounts.lifespan(),
                trio.open_nursery() as nursery,
            ):
                # Wakes idle streams for their keep-alives (``streams/_clock.py``).
                await nursery.start(self.streams.clock.run)
                metrics = self.metrics
                if metrics is not None and metrics.multiprocess:
                    nursery.start_soon(metrics.flush_every, self.settings.metrics_interval)
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
                self.close_streams()
                nursery.cancel_scope.cancel()
        except Exception as exc:
            phase = "shutdown" if started else "startup"
            logger.error("application %s failed", phase, exc_info=exc)
            await send({"type": f"lifespan.{phase}.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})


def _check_not_shadowed(plan: ApplicationPlan, settings: Settings) -> None:
    """A route at the readiness or metrics path would never be reached: say so at startup."""
    for name in ("readiness_path", "metrics_path"):
        path = getattr(settings, name)
        if path is None:
            continue
        try:
            route, _ = plan.router.match("GET", path)
        except HttpException:
            continue
        raise ConfigurationError(
            f"route {route.name} (GET {path}) is hidden by Settings.{name}={path!r}, which the "
            f"app answers itself; set {name} to another path, or to None"
        )


def _cap_keys(lease: StreamLease) -> list[tuple[str, str]]:
    """The keys a stream counts under for the per-owner and per-client caps."""
    keys = []
    if lease.owner is not None:
        keys.append(("owner", lease.owner))
    if lease.client is not None:
        keys.append(("client", lease.client))
    return keys


def _stream_options(app_wide: StreamSettings, route: RoutePlan) -> tuple[StreamSettings, Any]:
    """A route's stream settings and extra headers: ``app_wide`` with its ``@Sse`` overrides."""
    options: dict[str, Any] = dict(route.sse_options)
    headers = options.pop("headers", None)
    return (replace(app_wide, **options) if options else app_wide), headers


def is_stream(result: object) -> bool:
    """Whether a handler's result is answered with an event stream, on whatever route."""
    return isinstance(result, SseStream | EventSourceResponse | AsyncIterable)


async def _let_go(stream: object) -> None:
    """Close a stream that will never run, so that no generator is left to the collector.

    It never started: an async generator's body has not run (closing it runs no ``finally``),
    and an `SseStream`'s tasks were never started.
    """
    source = stream.source if isinstance(stream, EventSourceResponse) else stream
    if isinstance(source, SseStream):
        source.close()
        return
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


def _to_response(result: object, status: int | None) -> Response | FileResponse:
    """A plain route's return value as a response; ``status`` is the route's, if it set one."""
    if isinstance(result, Response | FileResponse):
        return result
    if result is None:
        return Response(b"", status or 204)
    if isinstance(result, str):
        return Response(result, status or 200)
    if isinstance(result, bytes):
        return Response(result, status or 200, media_type="application/octet-stream")
    return JSONResponse(result, status or 200)


def _app_path(scope: Scope) -> str:
    """The request's path below ``root_path``, where this app is mounted (`below_root`)."""
    root = scope.get("root_path")
    return below_root(str(scope["path"]), str(root)) if root else str(scope["path"])


def _sent_path(scope: Scope) -> str:
    """The path as the client sent it: still percent-encoded (``raw_path``, so that ``%2F``
    stays inside a parameter), without the query string."""
    raw = scope.get("raw_path")
    return str(raw.decode("latin-1").partition("?")[0]) if raw else str(scope["path"])


def _routed_path(scope: Scope, sent: str, path: str) -> str:
    """``sent`` (`_sent_path`) below the prefix that ``path`` (`_app_path`) is below, if any
    (`below_root_raw`: the client may have percent-encoded characters of the prefix)."""
    if len(path) == len(str(scope["path"])):
        return sent  # no prefix, or the server took it off already
    if not scope.get("raw_path"):
        return path  # ``sent`` is the decoded path
    return below_root_raw(sent, str(scope["root_path"]))
