"""`Settings`: everything an app can tune, in one typed, immutable object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..streams._settings import StreamSettings
from ..wire._sse import Serializer, json_serializer
from ._request import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_SIZE

__all__ = ["DEFAULT_MAX_STREAMS", "CorsSettings", "OpenAPISettings", "Settings"]


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Cross-origin access, for browsers whose page comes from another origin.

    An ``EventSource`` on another origin is the guide's main client, so this is one setting
    rather than a middleware to find.

    Attributes:
        allow_origins: origins allowed to read responses, e.g. ``("https://app.example",)``;
            ``("*",)`` allows any origin (with credentials, the request's origin is echoed).
        allow_credentials: whether cookies and ``withCredentials`` EventSources are allowed.
        allow_methods: methods a preflight may ask for.
        allow_headers: request headers a preflight may ask for; ``("*",)`` allows any.
        expose_headers: response headers the page's script may read.
        max_age: seconds a browser may cache a preflight answer.
    """

    allow_origins: Sequence[str] = ()
    allow_credentials: bool = False
    allow_methods: Sequence[str] = ("GET", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: Sequence[str] = ("authorization", "content-type", "last-event-id")
    expose_headers: Sequence[str] = ()
    max_age: int = 600

    def __post_init__(self) -> None:
        for name in ("allow_origins", "allow_methods", "allow_headers", "expose_headers"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise ValueError(
                    f"CorsSettings.{name} must be a sequence of strings, got {value!r}"
                    ' (write ("...",) for one item)'
                )
        if not isinstance(self.max_age, int) or self.max_age < 0:
            raise ValueError(
                f"CorsSettings.max_age must be a non-negative int, got {self.max_age!r}"
            )


@dataclass(frozen=True, slots=True)
class OpenAPISettings:
    """The app's OpenAPI 3.2 document and its interactive page (docs/openapi.md).

    The document is built once, by ``create_app``, from the routes, their parameters, body and
    return types, guards and declared events.

    Attributes:
        title: ``info.title``.
        version: ``info.version``: the version of your API, not of trio-dwex.
        description: ``info.description`` (CommonMark).
        servers: where the API is served: URLs (``("https://api.example",)``) or OpenAPI
            Server Objects (mappings with ``url``, ``description``...). Empty: the document
            says nothing, which clients read as "the server that served the document".
        security_schemes: OpenAPI Security Scheme Objects by name, e.g.
            ``{"bearer": {"type": "http", "scheme": "bearer"}}`` or ``{"session": {"type":
            "apiKey", "in": "cookie", "name": "sid"}}``. A guard whose class sets
            ``security_scheme = "bearer"`` marks the routes it guards as needing that scheme;
            ``"bearer"`` and ``"basic"`` (HTTP authentication) need no entry here.
        path: where the document is served; ``None`` to serve none (it is still built, and
            available as ``app.openapi``).
        docs_path: where the interactive page is served (its scripts and styles below it, all
            from this server); ``None`` to serve none.
    """

    title: str = "API"
    version: str = "0.1.0"
    description: str | None = None
    servers: Sequence[str | Mapping[str, Any]] = ()
    security_schemes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    path: str | None = "/openapi.json"
    docs_path: str | None = "/docs"

    def __post_init__(self) -> None:
        for name in ("title", "version"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"OpenAPISettings.{name} must be a str, got {value!r}")
        if isinstance(self.servers, str) or not all(
            isinstance(server, str) or (isinstance(server, Mapping) and "url" in server)
            for server in self.servers
        ):
            raise ValueError(
                "OpenAPISettings.servers must be a sequence of URLs or of mappings with a "
                f"'url', got {self.servers!r}"
            )
        if not isinstance(self.security_schemes, Mapping) or not all(
            isinstance(scheme, Mapping) and "type" in scheme
            for scheme in self.security_schemes.values()
        ):
            raise ValueError(
                "OpenAPISettings.security_schemes must map names to Security Scheme Objects "
                f"(mappings with a 'type'), got {self.security_schemes!r}"
            )
        for name in ("path", "docs_path"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, str) or not value.startswith("/") or value == "/"
            ):
                raise ValueError(
                    f"OpenAPISettings.{name} must be a path below / (such as '/docs') or None, "
                    f"got {value!r}"
                )
        if self.path is not None and self.path == self.docs_path:
            raise ValueError("OpenAPISettings.path and docs_path must differ")


#: Open streams an app allows by default: as many as our server's connections
#: (``ServerLimits.max_connections``), which at about 35 KiB an idle stream is ~350 MiB; a
#: crowd past it gets 503 with ``Retry-After`` rather than exhausting memory or descriptors.
DEFAULT_MAX_STREAMS = 10_000


@dataclass(frozen=True, slots=True)
class Settings:
    """App-wide settings, given to ``create_app(AppModule, settings=Settings(...))``.

    Attributes:
        streams: the defaults of every SSE route (keep-alive, send timeout, buffer size and
            overflow policy, ...); ``@Sse(...)`` arguments override them per route.
        serializer: turns non-string event data and JSON responses into text; compact stdlib
            JSON by default. ``orjson.dumps`` or ``msgspec.json.encode`` plug in as they are.
        cors: cross-origin access; ``None`` (the default) adds no CORS headers.
        max_streams: open SSE streams allowed at once (`DEFAULT_MAX_STREAMS`); beyond it new
            ones are answered 503 with ``Retry-After``. ``None``: no limit but the server's
            (``ServerLimits.max_connections``) and the OS's.
        max_streams_per_owner: open streams allowed per owner (`StreamLease.owner`, which a
            guard sets: a user, an API key); beyond it the owner's new streams are answered
            429 with ``Retry-After``. ``None`` (the default): no cap; a stream without an
            owner is never counted.
        max_streams_per_client: open streams allowed per client address; beyond it 429 with
            ``Retry-After``. ``None`` by default, since many users may share an address (a
            NAT, an office) and, behind a proxy, every stream comes from the proxy's.
        retry_after: seconds announced in ``Retry-After`` when streams are refused.
        max_body_size: largest request body read, in bytes; larger ones are answered 413
            (a declared ``Content-Length`` over it before any byte is read, so a client
            that sent ``Expect: 100-continue`` is not asked for the body).
        body_timeout: seconds a request body may take to arrive in full, from the moment
            a handler asks for it; a slower one is answered 408 and its connection closed
            (nginx's ``client_body_timeout``, which bounds a body sent a byte at a time).
        openapi: the OpenAPI document and the ``/docs`` page; ``None`` serves neither.
        drain_window: seconds over which a shutdown ends the open streams, each at a random
            moment, so that their clients do not all reconnect in the same second; keep it
            below the server's graceful timeout (5 s by default). ``0``: all at once.
        readiness_path: a path answering ``200 {"ready": true}`` while the app takes
            streams and ``503 {"ready": false}`` from the moment shutdown starts, for a load
            balancer's readiness probe; ``None`` (the default) serves none.
        metrics_path: the path of the Prometheus metrics (``GET``: open streams, ends by
            reason, events and bytes sent, stream durations, time to first event, dropped
            events, broadcast replays and resets; see docs/operations.md). ``None`` serves
            none. Anyone who reaches the app reads it: keep it off the public side of your
            proxy.
        metrics_interval: seconds between a worker's updates of the metrics that all workers
            share under ``--workers N``; a scrape sees the other workers' counts this late.
        tracing: give each stream an OpenTelemetry span (opened, first event, closed with
            its reason) when ``opentelemetry-api`` is installed; without it, or with
            ``False``, nothing is traced.
        check_events: check every event of a route that declares its events
            (``@Sse(events=...)``) against that declaration, and end the stream with
            ``EventContractError`` when one does not fit. ``False`` skips the check.
    """

    streams: StreamSettings = field(default_factory=StreamSettings)
    serializer: Serializer = json_serializer
    cors: CorsSettings | None = None
    max_streams: int | None = DEFAULT_MAX_STREAMS
    max_streams_per_owner: int | None = None
    max_streams_per_client: int | None = None
    retry_after: int = 5
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    openapi: OpenAPISettings | None = field(default_factory=OpenAPISettings)
    check_events: bool = True
    drain_window: float = 2.0
    readiness_path: str | None = None
    metrics_path: str | None = "/metrics"
    metrics_interval: float = 1.0
    tracing: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.streams, StreamSettings):
            raise ValueError(f"Settings.streams must be a StreamSettings, got {self.streams!r}")
        if self.cors is not None and not isinstance(self.cors, CorsSettings):
            raise ValueError(f"Settings.cors must be a CorsSettings or None, got {self.cors!r}")
        if self.openapi is not None and not isinstance(self.openapi, OpenAPISettings):
            raise ValueError(
                f"Settings.openapi must be an OpenAPISettings or None, got {self.openapi!r}"
            )
        window = self.drain_window
        if (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not 0 <= window < 3600
        ):
            raise ValueError(f"Settings.drain_window must be seconds >= 0, got {window!r}")
        for name in ("readiness_path", "metrics_path"):
            path = getattr(self, name)
            if path is not None and (not isinstance(path, str) or not path.startswith("/")):
                raise ValueError(f"Settings.{name} must be a path or None, got {path!r}")
        interval = self.metrics_interval
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval < 3600
        ):
            raise ValueError(
                f"Settings.metrics_interval must be seconds, above 0, got {interval!r}"
            )
        if not isinstance(self.tracing, bool):
            raise ValueError(f"Settings.tracing must be a bool, got {self.tracing!r}")
        if not isinstance(self.check_events, bool):
            raise ValueError(f"Settings.check_events must be a bool, got {self.check_events!r}")
        if not callable(self.serializer):
            raise ValueError(f"Settings.serializer must be callable, got {self.serializer!r}")
        for name in ("max_streams", "max_streams_per_owner", "max_streams_per_client"):
            limit = getattr(self, name)
            if limit is not None and (
                not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
            ):
                raise ValueError(f"Settings.{name} must be a positive int or None, got {limit!r}")
        timeout = self.body_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")
        ):
            raise ValueError(
                f"Settings.body_timeout must be a positive number of seconds, got {timeout!r}"
            )
        for name in ("retry_after", "max_body_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Settings.{name} must be a non-negative int, got {value!r}")
