"""The framework layer: declarations, plans and the pipeline, with no ASGI and no sockets.

- :mod:`.decorators` — ``@Controller``, ``@Get``... ``@Sse``, ``@UseGuards``,
  ``@UseInterceptors``, ``@Injectable``: they record specs and never register anything.
- :mod:`.params` — the ``Annotated`` markers and :class:`RequestLike`, the request interface.
- :mod:`.signature` — a handler analysed once into a :class:`CallPlan`, solved per request.
- :mod:`.di` — the flat, per-app :class:`Container` and :class:`Provider`.
- :mod:`.pipeline` — :class:`ExecutionContext`, guards, interceptors, :func:`map_events`.
- :mod:`.routing` — the pure :class:`Router`.
- :mod:`.controllers` — one controller class compiled into its routes.
- :mod:`.module` — ``@Module`` and :func:`compile_application`.

The ASGI layer calls :func:`compile_application` once, runs ``plan.container.lifespan()``
in its lifespan task, and per request: ``plan.router.match`` → :func:`run_guards` →
:func:`run_interceptors` around :func:`solve_params` and the call of ``route.endpoint``.
"""

from ._decorators import (
    UNSET,
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
from ._module import ApplicationPlan, Module, compile_application
from ._params import Body, Headers, Param, ParamMarker, Query, Req, RequestLike
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
from ._signature import (
    MAX_BODY_DEPTH,
    CallPlan,
    CallStyle,
    ParamPlan,
    solve_params,
)

__all__ = [
    "MAX_BODY_DEPTH",
    "UNSET",
    "ApplicationPlan",
    "Body",
    "CallNext",
    "CallPlan",
    "CallStyle",
    "CanActivate",
    "Container",
    "Controller",
    "Delete",
    "ExecutionContext",
    "Get",
    "Headers",
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
