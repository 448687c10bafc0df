r"""One controller class compiled into its :class:`~trio_dwex.framework._routing.RoutePlan`\ s.

Reads the specs the decorators recorded on the class and its methods, checks them against
each other (a ``Param`` the path does not capture, a guard without ``can_activate``...), and
creates the controller and its guards and interceptors through the container. Every mistake
is a :class:`~trio_dwex._errors.ConfigurationError` naming ``Controller.method``.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator
from typing import Any

from .._errors import ConfigurationError
from ..wire._paths import compile_path, join_paths
from ._analysis import CallPlan, analyse_handler
from ._decorators import RouteSpec, controller_spec, guards_of, interceptors_of, route_specs
from ._di import Container
from ._events import compile_events
from ._pipeline import CanActivate, Interceptor
from ._routing import RoutePlan

__all__ = ["app_enhancers", "compile_controller"]


def compile_controller(
    container: Container,
    module: type,
    controller_class: object,
    *,
    app_guards: tuple[CanActivate, ...] = (),
    app_interceptors: tuple[Interceptor, ...] = (),
) -> Iterator[RoutePlan]:
    """The routes of ``controller_class``, listed in ``module``'s ``controllers=[...]``.

    Routes come in declaration order, inherited ones first. The controller, and guards and
    interceptors given as classes, are created through ``container`` (once per app).
    ``app_guards`` and ``app_interceptors`` (see `app_enhancers`) run before the controller's.
    """
    if not isinstance(controller_class, type):
        raise ConfigurationError(
            f"{module.__name__} lists {controller_class!r} in controllers=[...]; list classes "
            "decorated with @Controller(...)"
        )
    spec = controller_spec(controller_class)
    if spec is None:
        raise ConfigurationError(
            f"{module.__name__} lists {controller_class.__name__} in controllers=[...] but it "
            "is not decorated with @Controller(...); add @Controller('prefix') to the class"
        )
    controller: object = container.instantiate(controller_class)
    where = f"@UseGuards on {controller_class.__name__}"
    class_guards = app_guards + _guards(container, guards_of(controller_class), where)
    where = f"@UseInterceptors on {controller_class.__name__}"
    class_interceptors = app_interceptors + _interceptors(
        container, interceptors_of(controller_class), where
    )
    handlers = _handlers(controller_class)
    if not handlers:
        raise ConfigurationError(
            f"{controller_class.__name__} is a controller without routes; decorate its "
            "methods with @Get(), @Post(), @Sse()... (or remove it from controllers=[...])"
        )
    for attribute, func in handlers.items():
        qualname = f"{controller_class.__name__}.{attribute}"
        guards = class_guards + _guards(container, guards_of(func), f"@UseGuards on {qualname}")
        interceptors = class_interceptors + _interceptors(
            container, interceptors_of(func), f"@UseInterceptors on {qualname}"
        )
        plans: dict[bool, CallPlan] = {}
        for route in route_specs(func):
            sse = route.kind == "sse"
            if not sse and inspect.isasyncgenfunction(func):
                raise ConfigurationError(_streaming_hint(qualname, route))
            if sse not in plans:
                plans[sse] = analyse_handler(func, qualname=qualname, sse=sse)
                _check_injected(container, plans[sse])
            yield _route_plan(
                route,
                spec.prefix,
                controller_class,
                controller,
                func,
                plans[sse],
                guards,
                interceptors,
            )


def _check_injected(container: Container, plan: CallPlan) -> None:
    """Every ``Inject()`` parameter names a provider: a missing one fails now, not per request."""
    for param in plan.params:
        if param.source == "inject" and container.provider_of(param.token) is None:
            name = getattr(param.token, "__qualname__", repr(param.token))
            raise ConfigurationError(
                f"parameter {param.name!r} of {plan.qualname} injects {name}, which no module "
                "provides; add it to providers=[...] of a module"
            )


def _streaming_hint(qualname: str, route: RouteSpec) -> str:
    """What to write instead of a plain route decorator on an async generator function."""
    written = f"@{route.method.capitalize()}({route.path!r})"
    method = "" if route.method == "GET" else f", method={route.method!r}"
    return (
        f"{qualname} is an async generator function routed with {written}, which answers "
        f"once; to stream its events, write @Sse({route.path!r}{method}) instead (or return "
        "a value rather than yield)"
    )


def _route_plan(
    route: RouteSpec,
    prefix: str,
    controller_class: type,
    controller: object,
    func: Callable[..., Any],
    plan: CallPlan,
    guards: tuple[CanActivate, ...],
    interceptors: tuple[Interceptor, ...],
) -> RoutePlan:
    try:
        template = compile_path(join_paths(prefix, route.path))
    except ValueError as exc:
        raise ConfigurationError(f"{plan.qualname}: {exc}") from None
    missing = sorted(plan.path_param_names - set(template.param_names))
    if missing:
        captured = ", ".join(template.param_names) or "none"
        raise ConfigurationError(
            f"{plan.qualname} reads path parameter {missing[0]!r} but its route "
            f"{route.method} {template.template} captures {captured}; fix the Param(...) name "
            "or add :name to the path"
        )
    events = None
    if route.events is not None:
        label = f"{plan.qualname} ({route.method} {template.template})"
        events = compile_events(route.events, label)
    return RoutePlan(
        method=route.method,
        path=template.template,
        kind=route.kind,
        controller_class=controller_class,
        controller=controller,
        handler=func,
        endpoint=types.MethodType(func, controller),
        call_plan=plan,
        guards=guards,
        interceptors=interceptors,
        sse_options=route.sse_options,
        template=template,
        events=events,
        status=route.status,
        responses=route.responses,
    )


def _handlers(controller_class: type) -> dict[str, Callable[..., Any]]:
    # Base classes first, so inherited routes come before the subclass's own; a subclass
    # attribute of the same name (decorated or not) replaces the inherited one.
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(controller_class.__mro__):
        for attribute, value in vars(klass).items():
            found.pop(attribute, None)
            if route_specs(value):
                found[attribute] = value
    return found


def _enhancer(container: Container, item: object) -> object:
    return container.instantiate(item) if isinstance(item, type) else item


def app_enhancers(
    container: Container, guards: tuple[object, ...], interceptors: tuple[object, ...]
) -> tuple[tuple[CanActivate, ...], tuple[Interceptor, ...]]:
    """The app-wide guards and interceptors (classes created through ``container``, or
    instances), checked as ``@UseGuards`` and ``@UseInterceptors`` entries are."""
    return (
        _guards(container, guards, "create_app(guards=...)"),
        _interceptors(container, interceptors, "create_app(interceptors=...)"),
    )


def _guards(container: Container, items: tuple[object, ...], where: str) -> tuple[CanActivate, ...]:
    guards = []
    for item in items:
        guard = _enhancer(container, item)
        if not callable(getattr(guard, "can_activate", None)):
            raise ConfigurationError(
                f"{_label(item)} in {where} is not a guard: it has no can_activate(ctx) method"
            )
        guards.append(guard)
    return tuple(guards)  # type: ignore[arg-type]  # checked structurally above


def _interceptors(
    container: Container, items: tuple[object, ...], where: str
) -> tuple[Interceptor, ...]:
    interceptors = []
    for item in items:
        interceptor = _enhancer(container, item)
        method = getattr(interceptor, "intercept", None)
        if not callable(method):
            raise ConfigurationError(
                f"{_label(item)} in {where} is not an interceptor: it has no "
                "intercept(ctx, call_next) method"
            )
        if inspect.isasyncgenfunction(method):
            raise ConfigurationError(
                f"{_label(item)}.intercept in {where} is an async generator; make it "
                "`async def` returning a value (wrap streams with map_events)"
            )
        interceptors.append(interceptor)
    return tuple(interceptors)  # type: ignore[arg-type]  # checked structurally above


def _label(item: object) -> str:
    return item.__name__ if isinstance(item, type) else repr(item)
