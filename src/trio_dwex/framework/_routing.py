"""A pure router: built once from the compiled routes, matched per request, no I/O.

Lookup order: the path is first looked up in a dict of static routes (no parameters), then
tried against the templated routes in declaration order; the first route whose template
matches *and* whose method is the request's wins. If some route matches the path but none
the method, the answer is 405 with an ``Allow`` header; if no route matches the path, 404.

``HEAD`` and ``OPTIONS`` are not implied: a ``HEAD`` request to a ``GET`` route is a 405
listing ``GET``. (The ASGI layer may choose to answer ``HEAD`` for non-SSE ``GET`` routes by
matching ``GET`` and dropping the body.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote

from .._errors import ConfigurationError, MethodNotAllowedException, NotFoundException, clip
from ..wire._paths import PathTemplate, compile_path
from ._analysis import CallPlan
from ._decorators import RouteKind
from ._events import EventContract
from ._pipeline import CanActivate, Interceptor

__all__ = ["RouteLike", "RoutePlan", "Router"]


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """One compiled route: what to call for a matched request, and what runs around it."""

    #: HTTP method, upper case (``@Sse`` routes: ``GET`` unless their ``method=`` says).
    method: str
    #: The normalised template, ``{name}`` syntax: ``/jobs/progress/{jobId}``.
    path: str
    #: ``"sse"`` answers with an event stream, ``"http"`` with a response.
    kind: RouteKind
    #: The controller class the handler is defined on (or inherited by).
    controller_class: type
    #: The app's single instance of ``controller_class``.
    controller: object
    #: The handler function as defined in the class (unbound); guards may read its metadata.
    handler: Callable[..., Any]
    #: ``handler`` bound to ``controller``; call it with the solved keyword arguments.
    endpoint: Callable[..., Any]
    #: How to build the keyword arguments; see ``solve_params``.
    call_plan: CallPlan
    #: Guard instances, controller-level first, then method-level.
    guards: tuple[CanActivate, ...]
    #: Interceptor instances, outermost first (controller-level, then method-level).
    interceptors: tuple[Interceptor, ...]
    #: SSE options given on this route's ``@Sse`` (only those given); empty for HTTP routes.
    sse_options: Mapping[str, object]
    #: The compiled path template (``.match``, ``.param_names``).
    template: PathTemplate
    #: The events an ``@Sse(events=...)`` route declares, compiled; None if it declares none.
    events: EventContract | None = None
    #: The status of a plain route's answer when the handler returns a value; None: 200.
    status: int | None = None
    #: Error statuses the handler answers itself (``responses=`` of its decorator).
    responses: Mapping[int, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``Controller.method``, for logs and messages."""
        return self.call_plan.qualname


class RouteLike(Protocol):
    """What the router needs of a route (``RoutePlan`` has all of it)."""

    @property
    def method(self) -> str:
        """The HTTP method, upper case."""
        ...

    @property
    def path(self) -> str:
        """The path template (either syntax; it is compiled again here)."""
        ...

    @property
    def name(self) -> str:
        """``Controller.method``, for duplicate-route messages."""
        ...


R = TypeVar("R", bound=RouteLike)

_PARAM = re.compile(r"\{[^/]*\}")


def _shape(template: PathTemplate) -> str:
    # "/jobs/{id}" and "/jobs/{jobId}" match the same requests, so they are the same route.
    return _PARAM.sub("{}", template.template)


class Router(Generic[R]):
    """Maps ``(method, path)`` to a route and its path parameters.

    Raises :class:`~trio_dwex._errors.ConfigurationError` when built with two routes of the
    same method and the same template (parameter names aside), or with a template that does
    not compile.
    """

    def __init__(self, routes: Iterable[R]) -> None:
        self._static: dict[str, dict[str, R]] = {}
        self._templated: list[tuple[PathTemplate, dict[str, R]]] = []
        by_shape: dict[str, dict[str, R]] = {}
        for route in routes:
            try:
                template = compile_path(route.path)
            except ValueError as exc:
                raise ConfigurationError(f"route {route.name}: {exc}") from None
            method = route.method.upper()
            methods = by_shape.get(_shape(template))
            if methods is None:
                methods = by_shape[_shape(template)] = {}
                if template.is_static:
                    self._static[template.template] = methods
                else:
                    self._templated.append((template, methods))
            clash = methods.get(method)
            if clash is not None:
                raise ConfigurationError(
                    f"{route.name} and {clash.name} both handle {method} {template.template}; "
                    "change one path or method, or merge the handlers"
                )
            methods[method] = route

    def match(
        self, method: str, path: str, *, shown_path: str | None = None
    ) -> tuple[R, dict[str, str]]:
        """The route for ``method`` and ``path``, and its decoded path parameters.

        ``path`` is the raw, percent-encoded path without the query string (ASGI
        ``raw_path``, decoded as latin-1); a trailing slash is ignored. ``shown_path`` is the
        path an error names, if not ``path``: the whole path the client sent, for an app
        that routes below the prefix it is mounted at.

        Raises:
            NotFoundException: no route has this path (``Cannot GET /nope``, as NestJS says;
                a method or path longer than ``MAX_ECHO`` characters is cut short there, so
                that an error never echoes more of the request than that).
            MethodNotAllowedException: routes have this path, but not this method; its
                ``Allow`` header lists their methods, sorted.
        """
        method = method.upper()
        allowed: set[str] = set()
        static = self._static_lookup(path)
        if static is not None:
            route = static.get(method)
            if route is not None:
                return route, {}
            allowed.update(static)
        for template, methods in self._templated:
            params = template.match(path)
            if params is None:
                continue
            route = methods.get(method)
            if route is not None:
                return route, params
            allowed.update(methods)
        shown = f"Cannot {clip(method)} {clip(path if shown_path is None else shown_path)}"
        if not allowed:
            raise NotFoundException(shown)
        allow = ", ".join(sorted(allowed))
        raise MethodNotAllowedException(f"{shown}; allowed: {allow}", headers={"Allow": allow})

    def _static_lookup(self, path: str) -> Mapping[str, R] | None:
        trimmed = path[:-1] if len(path) > 1 and path.endswith("/") else path
        found = self._static.get(trimmed)
        if found is None and "%" in trimmed:
            segments = [unquote(segment) for segment in trimmed.split("/")]
            if not any("/" in segment for segment in segments):  # %2F never matches a separator
                found = self._static.get("/".join(segments))
        return found
