"""Parameter markers, and the small request interface they read from.

A handler says where each argument comes from with an ``Annotated`` marker::

    async def progress(
        self,
        job_id: Annotated[str, Param("jobId")],
        verbose: Annotated[bool, Query()] = False,
        last_id: Annotated[str | None, Headers("last-event-id")] = None,
    ) -> ...

The markers are inert, frozen values: ``_analysis`` reads them once per handler into a plan
when the app is built, and ``_solving`` solves that plan once per request against any object
that implements :class:`RequestLike`. Keeping the interface a :class:`~typing.Protocol` is
what lets the framework layer stay free of ASGI: the ASGI layer's ``Request`` implements it,
and tests use a plain fake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Body",
    "Cookie",
    "Headers",
    "Inject",
    "Param",
    "ParamMarker",
    "ParamSource",
    "Query",
    "Release",
    "Req",
    "RequestLike",
]

ParamSource = Literal["query", "path", "header", "cookie", "body", "request", "inject"]
"""Where a marker takes its value from; also the word used in 400 messages."""


@runtime_checkable
class RequestLike(Protocol):
    """What the framework layer needs from a request; the ASGI ``Request`` implements it.

    Read-only properties, so an implementation may use plain attributes or properties.

    - ``path_params``: the values captured by the route template, already percent-decoded,
      keyed by the parameter name as written in the template (``jobId``).
    - ``query_params``: the decoded ``(key, value)`` pairs of the query string, in order, with
      repeated keys kept (``?tag=a&tag=b`` → ``[("tag", "a"), ("tag", "b")]``), and blank
      values kept as ``""``. A sequence of pairs is the least an implementation must build
      (``urllib.parse.parse_qsl(query, keep_blank_values=True)``), and it loses nothing.
    - ``headers``: header names in lower case; a header sent several times is one value,
      joined with ``", "`` as RFC 9110 allows.
    - ``cookies``: the ``Cookie`` header's pairs by name (the first of a repeated name).
    - ``body()``: the whole request body (``b""`` when there is none). The framework calls it
      at most once per request.
    """

    @property
    def path_params(self) -> Mapping[str, str]:
        """Values captured by the route's path template."""
        ...

    @property
    def query_params(self) -> Sequence[tuple[str, str]]:
        """Decoded query-string pairs, in order, repeats kept."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers, names in lower case."""
        ...

    @property
    def cookies(self) -> Mapping[str, str]:
        """The request's cookies by name."""
        ...

    async def body(self) -> bytes:
        """Read the whole request body."""
        ...


@dataclass(frozen=True, slots=True)
class ParamMarker:
    """Base of the parameter markers; use one of its subclasses inside ``Annotated``."""

    #: Where the value comes from (set by each subclass).
    source: ParamSource
    #: The key to look up, or ``None`` to derive it from the Python parameter name.
    name: str | None = None


def _check_name(marker: str, name: object) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"{marker}(name) takes a non-empty string or nothing, got {name!r}")


class Query(ParamMarker):
    """A query-string value: ``Annotated[int, Query()]`` reads ``?count=3``.

    ``name`` defaults to the Python parameter name. Annotate with ``list[T]`` to receive every
    value of a repeated key (an empty list when the key is absent).
    """

    __slots__ = ()

    def __init__(self, name: str | None = None) -> None:
        _check_name("Query", name)
        super().__init__("query", name)


class Param(ParamMarker):
    """A value captured by the route template: ``Param("jobId")`` for ``progress/:jobId``.

    ``name`` defaults to the Python parameter name. The name must appear in the route's
    template; that is checked when the application is compiled.
    """

    __slots__ = ()

    def __init__(self, name: str | None = None) -> None:
        _check_name("Param", name)
        super().__init__("path", name)


class Headers(ParamMarker):
    """A request header, or all of them.

    ``Headers("last-event-id")`` reads one header (case-insensitive). Without a name, a
    parameter annotated as a ``Mapping``/``dict`` receives every header (lower-case names);
    any other annotation reads the header named after the parameter with ``_`` turned into
    ``-`` (``x_request_id`` reads ``X-Request-Id``).
    """

    __slots__ = ()

    def __init__(self, name: str | None = None) -> None:
        _check_name("Headers", name)
        super().__init__("header", None if name is None else name.lower())


class Cookie(ParamMarker):
    """A cookie's value: ``Annotated[str | None, Cookie("session")] = None``.

    ``name`` defaults to the Python parameter name. The value is converted like a query value;
    a missing cookie takes the default, and without one is a 400 naming it.
    """

    __slots__ = ()

    def __init__(self, name: str | None = None) -> None:
        _check_name("Cookie", name)
        super().__init__("cookie", name)


class Body(ParamMarker):
    """The request body, parsed as JSON and converted to the annotated type.

    ``bytes`` receives the raw body; a dataclass is built from a JSON object (fields checked
    by type; unknown fields rejected); ``dict``, ``list`` or ``Any`` receive the parsed JSON.
    Annotate ``T | None`` with a default to make the body optional.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("body", None)


Release = Literal["response", "headers"]
"""When a per-request provider is exited: when the response has ended, or once its headers
are sent (for a stream, before its events: setup-only resources)."""


class Inject(ParamMarker):
    """A provider, by the parameter's type: ``db: Annotated[DbSession, Inject()]``.

    For an app-wide provider it is the app's instance. A provider declared with
    ``scope="request"`` is made for this request: created (with its own dependencies) before
    the handler runs, entered if it is an async context manager, and exited when the response
    has ended, which for a stream is when the stream ends. ``release="headers"`` exits it as
    soon as the response's headers are sent instead: for a stream, a resource used to set it
    up (a database session that loads the first page) is not held while the stream runs.
    """

    __slots__ = ("release",)

    def __init__(self, *, release: Release = "response") -> None:
        if release not in ("response", "headers"):
            raise TypeError(f"Inject(release=...) is 'response' or 'headers', got {release!r}")
        super().__init__("inject", None)
        #: When a per-request provider is exited.
        self.release: Release
        object.__setattr__(self, "release", release)

    def __repr__(self) -> str:
        return f"Inject(release={self.release!r})"

    # typing caches Annotated[...] by its metadata's equality: two Inject()s that differ only
    # in release must not compare equal, or one handler would get the other's.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Inject) and other.release == self.release

    def __hash__(self) -> int:
        return hash(("inject", self.release))


class Req(ParamMarker):
    """The request object itself, as the ASGI layer built it (``Annotated[Request, Req()]``).

    Prefer the specific markers: they convert and validate, and say what the handler reads.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("request", None)
