"""The framework layer: declarations, plans and the pipeline, with no ASGI and no sockets.

- :mod:`._decorators` — ``@Controller``, ``@Get``... ``@Sse``, ``@UseGuards``,
  ``@UseInterceptors``, ``@Injectable``: they record specs and never register anything.
- :mod:`._params` — the ``Annotated`` markers and :class:`RequestLike`, the request interface.
- :mod:`._analysis` — at startup: a handler's signature analysed once into a :class:`CallPlan`
  (plain data; every mistake a ``ConfigurationError``).
- :mod:`._solving` — per request: :func:`solve_params` turns a plan into the handler's
  keyword arguments (every bad value a 400 naming the parameter).
- :mod:`._body` — per request: a JSON body parsed, depth-checked and converted.
- :mod:`._convert` — the converters, built at startup from annotations, run per request.
- :mod:`._di` — the flat, per-app :class:`Container` and :class:`Provider`.
- :mod:`._pipeline` — :class:`ExecutionContext`, guards, interceptors, :func:`map_events`.
- :mod:`._schema` — annotations as JSON Schemas, and checks of values against them.
- :mod:`._events` — a stream route's declared events (``@Sse(events=...)``) and their check.
- :mod:`._routing` — the pure :class:`Router`.
- :mod:`._controllers` — one controller class compiled into its routes.
- :mod:`._module` — ``@Module`` and :func:`compile_application`.

The ASGI layer calls :func:`compile_application` once, runs ``plan.container.lifespan()``
in its lifespan task, and per request: ``plan.router.match`` → :func:`run_guards` →
:func:`run_interceptors` around :func:`solve_params` and the call of ``route.endpoint``.
"""

from ._analysis import CallPlan, CallStyle, ParamPlan
from ._body import MAX_BODY_DEPTH
from ._constraints import Constraint
from ._decorators import (
    Controller,
    Delete,
    Get,
    Injectable,
    Patch,
    Post,
    Put,
    RouteKind,
    Sse,
    UseGuards,
    UseInterceptors,
)
from ._di import Container, Provider
from ._events import EventContract, EventContractError
from ._module import ApplicationPlan, Module, compile_application
from ._params import Body, Cookie, Headers, Inject, Param, ParamMarker, Query, Req, RequestLike
from ._pipeline import (
    CallNext,
    CanActivate,
    ExecutionContext,
    Interceptor,
    map_events,
    run_guards,
    run_interceptors,
)
from ._routing import RoutePlan, Router
from ._solving import solve_params

__all__ = [
    "MAX_BODY_DEPTH",
    "ApplicationPlan",
    "Body",
    "CallNext",
    "CallPlan",
    "CallStyle",
    "CanActivate",
    "Constraint",
    "Container",
    "Controller",
    "Cookie",
    "Delete",
    "EventContract",
    "EventContractError",
    "ExecutionContext",
    "Get",
    "Headers",
    "Inject",
    "Injectable",
    "Interceptor",
    "Module",
    "Param",
    "ParamMarker",
    "ParamPlan",
    "Patch",
    "Post",
    "Provider",
    "Put",
    "Query",
    "Req",
    "RequestLike",
    "RouteKind",
    "RoutePlan",
    "Router",
    "Sse",
    "UseGuards",
    "UseInterceptors",
    "compile_application",
    "map_events",
    "run_guards",
    "run_interceptors",
    "solve_params",
]
