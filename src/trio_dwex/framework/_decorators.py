"""Decorators that record, never register.

``@Controller``, ``@Get``/``@Post``/..., ``@Sse``, ``@UseGuards``, ``@UseInterceptors`` and
``@Injectable`` only attach a frozen spec to the class or function they decorate and return
it unchanged. Nothing is registered anywhere at import time: :func:`compile_application`
reads the specs once, from the root module down, and that is where a mistake in how the specs
fit together (a missing ``@Controller``, a path parameter the handler cannot read...) raises a
:class:`~trio_dwex._errors.ConfigurationError`. Mistakes visible from one decorator alone (a
route decorator on a ``staticmethod``, a negative keep-alive) raise at once.

Because each decorator only adds its own attribute, their order does not matter: the guide
writes ``@Sse(...)`` above ``@UseGuards(...)``, and the other way round means the same thing.
Several ``@UseGuards`` on one target are read top to bottom: the topmost guard runs first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

from .._errors import ConfigurationError
from .._unset import UNSET, Unset
from ..streams._settings import StreamSettings
from ..streams._stream import OverflowPolicy
from ..wire._headers import encode_headers

__all__ = [
    "SSE_METHODS",
    "Controller",
    "ControllerSpec",
    "Delete",
    "Get",
    "Injectable",
    "Patch",
    "Post",
    "Put",
    "RouteKind",
    "RouteSpec",
    "Sse",
    "UseGuards",
    "UseInterceptors",
    "controller_spec",
    "guards_of",
    "interceptors_of",
    "is_injectable",
    "route_specs",
]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
T = TypeVar("T")

RouteKind = Literal["http", "sse"]
"""``"sse"`` for ``@Sse`` routes (answered with an event stream, on any method), else ``"http"``."""

#: The methods an ``@Sse`` route may answer. ``HEAD`` and ``OPTIONS`` are not among them: a
#: stream has no head without a body, and ``OPTIONS`` is the CORS preflight's.
SSE_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")

_CONTROLLER: Final = "__dwex_controller__"
_ROUTES: Final = "__dwex_routes__"
_GUARDS: Final = "__dwex_guards__"
_INTERCEPTORS: Final = "__dwex_interceptors__"
_INJECTABLE: Final = "__dwex_injectable__"


@dataclass(frozen=True, slots=True)
class ControllerSpec:
    """What ``@Controller(prefix)`` records on a class."""

    #: Joined in front of every route path of the controller.
    prefix: str


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What a route decorator records on a handler function."""

    #: The HTTP method in upper case (``@Sse`` routes: ``GET`` unless ``method=`` says).
    method: str
    #: The path as written in the decorator, relative to the controller prefix.
    path: str
    #: Whether the route answers with an event stream.
    kind: RouteKind
    #: SSE options given explicitly on this route (only those given); empty for HTTP routes.
    sse_options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    #: The events an ``@Sse`` route declares (name to data type), or None if it declares none.
    events: Mapping[str, object] | None = None
    #: The status of a plain route's answer when the handler returns a value (not a Response).
    status: int | None = None
    #: Error statuses the handler itself answers, for the OpenAPI document: status to a
    #: description (the usual error body) or to the type of its body.
    responses: Mapping[int, object] = field(default_factory=lambda: MappingProxyType({}))


# -- reading the specs back (used by the compiler) --------------------------------------------


def controller_spec(cls: type) -> ControllerSpec | None:
    """The ``@Controller`` spec of ``cls`` itself (a subclass must be decorated again)."""
    spec = vars(cls).get(_CONTROLLER)
    return spec if isinstance(spec, ControllerSpec) else None


def route_specs(func: object) -> tuple[RouteSpec, ...]:
    """The route specs recorded on ``func``, in reading order (usually one)."""
    return tuple(getattr(func, "__dict__", {}).get(_ROUTES, ()))


def guards_of(target: object) -> tuple[object, ...]:
    """The guards recorded on a controller class or a handler function, in reading order."""
    return tuple(_own_attrs(target).get(_GUARDS, ()))


def interceptors_of(target: object) -> tuple[object, ...]:
    """The interceptors recorded on a controller class or handler function, in reading order."""
    return tuple(_own_attrs(target).get(_INTERCEPTORS, ()))


def is_injectable(cls: type) -> bool:
    """Whether ``cls`` itself is marked with ``@Injectable()``."""
    return bool(vars(cls).get(_INJECTABLE, False))


def injectable_scope(cls: type) -> Literal["app", "request"]:
    """The scope ``@Injectable(scope=...)`` gave ``cls``."""
    return "request" if vars(cls).get(_INJECTABLE) == "request" else "app"


def _own_attrs(target: object) -> Mapping[str, Any]:
    return vars(target) if isinstance(target, type) else getattr(target, "__dict__", {})


# -- class decorators ---------------------------------------------------------------------------


def Controller(prefix: str = "") -> Callable[[C], C]:
    """Mark a class as a controller whose routes live under ``prefix``.

    ``@Controller("events")`` with ``@Sse("updates")`` serves ``/events/updates``; slashes in
    the prefix and path are optional. The controller's constructor is injected like a
    provider's, from its type hints; list the class in ``Module(controllers=[...])``.
    """
    if not isinstance(prefix, str):
        raise ConfigurationError(f"@Controller(prefix) takes a string, got {prefix!r}")

    def decorate(cls: C) -> C:
        _require_class(cls, "@Controller()")
        setattr(cls, _CONTROLLER, ControllerSpec(prefix))
        return cls

    return decorate


def Injectable(*, scope: Literal["app", "request"] = "app") -> Callable[[C], C]:
    """Mark a class as a provider, injected by type.

    Its constructor's parameters are resolved from their type hints. With the default
    ``scope="app"`` there is one instance per application; if it is an async context manager
    it is entered when the app starts and exited when it stops, which is how a long-running
    service owns background tasks (open a nursery in ``__aenter__``). With
    ``scope="request"`` each request that asks for it (``Annotated[T, Inject()]``) gets its
    own instance, entered before the handler runs and exited when the response has ended
    (or once its headers are sent: ``Inject(release="headers")``). List the class in
    ``Module(providers=[...])``.
    """
    if scope not in ("app", "request"):
        raise ConfigurationError(f"@Injectable(scope=...) is 'app' or 'request', got {scope!r}")

    def decorate(cls: C) -> C:
        _require_class(cls, "@Injectable()")
        setattr(cls, _INJECTABLE, scope)
        return cls

    return decorate


def _require_class(target: object, decorator: str) -> None:
    if not isinstance(target, type):
        raise ConfigurationError(f"{decorator} decorates a class, got {target!r}")


# -- route decorators ---------------------------------------------------------------------------


def _record_route(spec: RouteSpec, decorator: str) -> Callable[[F], F]:
    if not isinstance(spec.path, str):
        raise ConfigurationError(f"{decorator} takes a path string, got {spec.path!r}")

    def decorate(func: F) -> F:
        if not inspect.isfunction(func):
            hint = (
                "; remove @staticmethod/@classmethod: a handler is a plain method taking self"
                if isinstance(func, staticmethod | classmethod)
                else ""
            )
            raise ConfigurationError(
                f"{decorator} decorates a function defined in a controller class, "
                f"got {func!r}{hint}"
            )
        func.__dict__[_ROUTES] = (spec, *route_specs(func))
        return func

    return decorate


def _responses(responses: Mapping[int, object] | None) -> Mapping[int, object]:
    if responses is None:
        return MappingProxyType({})
    if not isinstance(responses, Mapping):
        raise ConfigurationError(f"responses= takes a mapping of statuses, got {responses!r}")
    for status in responses:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigurationError(
                f"responses= documents error statuses, ints from 400 to 599; got {status!r}"
            )
    return MappingProxyType(dict(responses))


def _status(status: int | None) -> int | None:
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599
    ):
        raise ConfigurationError(f"a route's status is an int from 200 to 599, got {status!r}")
    return status


def Get(
    path: str = "", *, status: int | None = None, responses: Mapping[int, object] | None = None
) -> Callable[[F], F]:
    """Route ``GET <prefix>/<path>`` to the decorated method; ``:name``/``{name}`` capture.

    ``status`` is the status of the answer when the handler returns a value (``201`` for a
    ``POST`` that creates something); a returned ``Response`` keeps its own. ``responses``
    documents the errors the handler raises itself, for the OpenAPI document:
    ``{404: "no such job"}`` (the usual error body), or ``{404: JsonRpcError}`` (a body of
    that type). The same holds for every method decorator, and ``@Sse``.
    """
    spec = RouteSpec("GET", path, "http", status=_status(status), responses=_responses(responses))
    return _record_route(spec, "@Get()")


def Post(
    path: str = "", *, status: int | None = None, responses: Mapping[int, object] | None = None
) -> Callable[[F], F]:
    """Route ``POST <prefix>/<path>`` to the decorated method."""
    spec = RouteSpec("POST", path, "http", status=_status(status), responses=_responses(responses))
    return _record_route(spec, "@Post()")


def Put(
    path: str = "", *, status: int | None = None, responses: Mapping[int, object] | None = None
) -> Callable[[F], F]:
    """Route ``PUT <prefix>/<path>`` to the decorated method."""
    spec = RouteSpec("PUT", path, "http", status=_status(status), responses=_responses(responses))
    return _record_route(spec, "@Put()")


def Patch(
    path: str = "", *, status: int | None = None, responses: Mapping[int, object] | None = None
) -> Callable[[F], F]:
    """Route ``PATCH <prefix>/<path>`` to the decorated method."""
    spec = RouteSpec("PATCH", path, "http", status=_status(status), responses=_responses(responses))
    return _record_route(spec, "@Patch()")


def Delete(
    path: str = "", *, status: int | None = None, responses: Mapping[int, object] | None = None
) -> Callable[[F], F]:
    """Route ``DELETE <prefix>/<path>`` to the decorated method."""
    spec = RouteSpec(
        "DELETE", path, "http", status=_status(status), responses=_responses(responses)
    )
    return _record_route(spec, "@Delete()")


def Sse(
    path: str = "",
    *,
    method: str = "GET",
    keepalive: float | Unset | None = UNSET,
    send_timeout: float | Unset = UNSET,
    buffer_size: int | Unset = UNSET,
    buffer_bytes: int | Unset = UNSET,
    overflow: OverflowPolicy | Unset = UNSET,
    max_lifetime: float | Unset | None = UNSET,
    compress: bool | Literal["gzip", "br"] | Unset = UNSET,
    merge_window: float | Unset | None = UNSET,
    headers: Mapping[str, str] | Unset = UNSET,
    events: Mapping[str, object] | None = None,
    responses: Mapping[int, object] | None = None,
) -> Callable[[F], F]:
    """Route ``<method> <prefix>/<path>`` to the decorated method, answered with an event stream.

    The handler is an async generator function (each ``yield`` is an event), or a plain or
    async function returning an ``SseStream``, an ``EventSourceResponse`` or any async
    iterable of events. Such a function may instead return a ``Response`` (a ``JSONResponse``
    for JSON), which answers that request once: this is how one route answers JSON or a
    stream, decided per request. Any other value is a mistake (a list is not a stream), which
    the client sees as a 500 and the log explains.

    ``method`` is ``GET`` (what a browser's ``EventSource`` sends) unless given: ``POST``,
    ``PUT``, ``PATCH`` or ``DELETE`` streams the answer to a request with a body, read with
    ``Body()`` as on any route (an LLM's tokens, a tool's progress). Guards, interceptors and
    parameter conversion run before the response headers are sent whatever the method, so a
    refusal or a bad body is a plain HTTP error, never a stream.

    Options given here override the app's settings for this route only; options left out
    follow the app (they are not recorded, so a later change of the app default applies):

    - ``keepalive``: seconds of silence before a ``:`` comment is sent; ``None`` disables it.
    - ``send_timeout``: seconds a client may take to accept bytes before it is dropped.
    - ``buffer_size``: events buffered for a client slower than the producer.
    - ``buffer_bytes``: bytes of events buffered for such a client.
    - ``overflow``: what ``send_nowait`` does when that buffer is full (``OverflowPolicy``).
    - ``max_lifetime``: seconds after which the stream is closed (the client reconnects with
      ``Last-Event-ID``); ``None`` for no limit.
    - ``compress``: gzip (``True``) or brotli (``"br"``, gzip for clients without it) for
      clients that accept it, flushed after every write.
    - ``merge_window``: seconds an unnamed event may wait to share a write with the next
      ones (an LLM's tokens); named events and comments go at once. ``None``: no wait.
    - ``headers``: extra response headers.
    - ``events``: the events the stream sends, by name, each with the type of its ``data``
      (a dataclass, ``TypedDict``, ``msgspec.Struct``, pydantic model, or any annotation the
      framework knows): ``events={"connected": Hello, "update": Update}``; ``"message"``
      names the unnamed events. The OpenAPI document describes the stream from it, and the
      app checks each event against it (``Settings.check_events``).
    """
    verb = method.upper() if isinstance(method, str) else method
    if verb not in SSE_METHODS:
        raise ConfigurationError(
            f"@Sse({path!r}, method={method!r}): an event stream answers "
            f"{', '.join(SSE_METHODS)}; use one of them"
        )
    given = {
        "keepalive": keepalive,
        "send_timeout": send_timeout,
        "buffer_size": buffer_size,
        "buffer_bytes": buffer_bytes,
        "overflow": overflow,
        "max_lifetime": max_lifetime,
        "compress": compress,
        "merge_window": merge_window,
    }
    options: dict[str, object] = {k: v for k, v in given.items() if v is not UNSET}
    try:
        # The same rules as the app's own stream settings, checked now rather than per request.
        StreamSettings(**options)  # type: ignore[arg-type]
        if headers is not UNSET:
            encode_headers(headers)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"@Sse({path!r}): {error}") from None
    if headers is not UNSET:
        options["headers"] = MappingProxyType(dict(headers))
    declared = None if events is None else MappingProxyType(_check_events(path, events))
    spec = RouteSpec(
        verb, path, "sse", MappingProxyType(options), declared, responses=_responses(responses)
    )
    return _record_route(spec, "@Sse()")


def _check_events(path: str, events: object) -> dict[str, object]:
    if not isinstance(events, Mapping) or not events:
        raise ConfigurationError(
            f"@Sse({path!r}, events=...) takes a non-empty mapping of event names to data "
            f"types, e.g. {{'update': Update}}; got {events!r}"
        )
    for name in events:
        if not isinstance(name, str) or not name or any(c in name for c in "\r\n"):
            raise ConfigurationError(
                f"@Sse({path!r}, events=...): event names are non-empty strings on one line, "
                f"got {name!r}"
            )
    return dict(events)


# -- enhancers ----------------------------------------------------------------------------------


def _record_enhancers(attr: str, items: tuple[object, ...], decorator: str) -> Callable[[T], T]:
    if not items:
        raise ConfigurationError(f"{decorator} needs at least one argument")

    def decorate(target: T) -> T:
        if not (isinstance(target, type) or inspect.isfunction(target)):
            raise ConfigurationError(
                f"{decorator} decorates a controller class or a handler method, got {target!r}"
            )
        # Decorators apply bottom-up; putting the new ones first keeps reading order.
        existing = tuple(_own_attrs(target).get(attr, ()))
        setattr(target, attr, (*items, *existing))
        return target

    return decorate


def UseGuards(*guards: object) -> Callable[[T], T]:
    """Run ``guards`` before the handler(s) of the decorated method or controller.

    A guard is a class (instantiated once per app, its constructor injected) or an instance,
    with ``can_activate(ctx) -> bool`` (sync or async). Controller guards run before method
    guards; within one list, in the order written. The first ``False`` answers 403.
    """
    return _record_enhancers(_GUARDS, guards, "@UseGuards()")


def UseInterceptors(*interceptors: object) -> Callable[[T], T]:
    """Wrap the handler(s) of the decorated method or controller with ``interceptors``.

    An interceptor is a class (instantiated once per app, constructor injected) or an
    instance, with ``async intercept(ctx, call_next)``. The first one listed is the outermost;
    controller interceptors wrap method interceptors.
    """
    return _record_enhancers(_INTERCEPTORS, interceptors, "@UseInterceptors()")
