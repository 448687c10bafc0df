"""``@Module``, the walk over the module graph, and :func:`compile_application`.

A module lists its ``controllers``, its ``providers`` and the modules it ``imports``. The
graph may have cycles (two feature modules importing each other): each module is visited
once. Python needs a class defined before it can be named, so for such a cycle one side
lists the other lazily, as a zero-argument callable: ``imports=[lambda: UsersModule]``.

:func:`compile_application` is the one place where the recorded specs are read and checked
against each other, so every wiring mistake raises
:class:`~trio_dwex._errors.ConfigurationError` there, before the server takes a request. Its
result is plain, immutable data, plus the container whose ``lifespan()`` the ASGI layer runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .._errors import ConfigurationError
from ._controllers import app_enhancers, compile_controller
from ._di import Container, Provider
from ._routing import RoutePlan, Router

__all__ = [
    "ApplicationPlan",
    "Module",
    "ModuleSpec",
    "collect_modules",
    "compile_application",
    "module_spec",
]

C = TypeVar("C", bound=type)

_MODULE: Final = "__dwex_module__"


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """What ``@Module(...)`` records on a class."""

    #: Controller classes (each decorated with ``@Controller``).
    controllers: tuple[type, ...]
    #: ``@Injectable()`` classes and ``Provider(...)`` entries.
    providers: tuple[object, ...]
    #: Module classes, or zero-argument callables returning one (for import cycles).
    imports: tuple[object, ...]


def module_spec(cls: object) -> ModuleSpec | None:
    """The ``@Module`` spec of ``cls`` itself, or None if it is not a module."""
    if not isinstance(cls, type):
        return None
    spec = vars(cls).get(_MODULE)
    return spec if isinstance(spec, ModuleSpec) else None


def Module(
    *,
    controllers: Sequence[type] = (),
    providers: Sequence[object] = (),
    imports: Sequence[object] = (),
) -> Callable[[C], C]:
    """Declare a module: ``@Module(controllers=[...], providers=[...], imports=[...])``.

    Every provider of every module reachable through ``imports`` is visible app-wide (see
    :mod:`trio_dwex.framework._di`). Pass the root module to ``create_app``.
    """
    for field, value in (
        ("controllers", controllers),
        ("providers", providers),
        ("imports", imports),
    ):
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ConfigurationError(f"@Module({field}=...) takes a list, got {value!r}")
    spec = ModuleSpec(tuple(controllers), tuple(providers), tuple(imports))

    def decorate(cls: C) -> C:
        if not isinstance(cls, type):
            raise ConfigurationError(f"@Module(...) decorates a class, got {cls!r}")
        setattr(cls, _MODULE, spec)
        return cls

    return decorate


def collect_modules(root: object) -> list[tuple[type, ModuleSpec]]:
    """Every module reachable from ``root`` through ``imports``, each once, root first.

    Raises:
        ConfigurationError: ``root`` or an import is not an ``@Module`` class (nor a
            zero-argument callable returning one).
    """
    root_spec = module_spec(root)
    if root_spec is None:
        raise ConfigurationError(
            f"{_describe(root)} is not a module; decorate it with @Module(controllers=[...], "
            "providers=[...]) and pass that class"
        )
    assert isinstance(root, type)
    seen: dict[type, ModuleSpec] = {root: root_spec}
    pending: list[type] = [root]
    while pending:
        current = pending.pop(0)
        for entry in seen[current].imports:
            imported = _resolve_import(current, entry)
            if imported in seen:
                continue
            spec = module_spec(imported)
            assert spec is not None
            seen[imported] = spec
            pending.append(imported)
    return list(seen.items())


def _resolve_import(owner: type, entry: object) -> type:
    target = entry
    if not isinstance(entry, type) and callable(entry) and _takes_no_arguments(entry):
        target = entry()
    if module_spec(target) is None:
        raise ConfigurationError(
            f"{owner.__name__} imports {_describe(target)}, which is not a module; "
            "imports=[...] lists @Module classes (or `lambda: SomeModule` for a cycle)"
        )
    assert isinstance(target, type)
    return target


def _takes_no_arguments(fn: Callable[..., Any]) -> bool:
    try:
        inspect.signature(fn).bind()
    except (TypeError, ValueError):
        return False
    return True


def _describe(value: object) -> str:
    return value.__name__ if isinstance(value, type) else repr(value)


@dataclass(frozen=True, slots=True)
class ApplicationPlan:
    """Everything ``create_app`` needs, compiled once from the root module."""

    #: The module passed to :func:`compile_application`.
    root_module: type
    #: Every module reachable from the root, each once, root first.
    modules: tuple[type, ...]
    #: The providers' singletons; run :meth:`lifespan` around serving.
    container: Container
    #: Every route, in declaration order (modules, then controllers, then methods).
    routes: tuple[RoutePlan, ...]
    #: Matches requests to ``routes``.
    router: Router[RoutePlan]

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Shorthand for ``container.lifespan()``: enter providers at startup, exit at shutdown."""
        return self.container.lifespan()


def compile_application(
    root_module: type,
    *,
    overrides: Sequence[object] = (),
    guards: Sequence[object] = (),
    interceptors: Sequence[object] = (),
    builtins: Sequence[Provider[Any]] = (),
) -> ApplicationPlan:
    """Walk ``root_module``'s graph, create providers and controllers, compile the routes.

    ``builtins`` are what the app itself offers every module to inject (its `StreamTracker`):
    the app's own, in place of any provider of the same type a module lists.

    ``overrides`` are providers that replace the modules' own for the same type (a test's
    fake clock, a config pointing at a test database), wherever those are listed. ``guards``
    and ``interceptors`` apply to every route, before (outside) the controllers' own.

    Raises:
        ConfigurationError: anything wired wrong: a non-module import, a controller without
            ``@Controller``, a missing provider or a cycle (``ProviderNotFound`` shows the
            chain), a handler parameter without a marker, a ``Param`` the route's path does
            not capture, two routes for one method and path, a guard without
            ``can_activate``...
    """
    modules = collect_modules(root_module)
    container = Container()
    for override in (*overrides, *builtins):
        container.override(override)
    for module, spec in modules:
        for provider in spec.providers:
            container.register(provider, origin=module.__name__)
    # Controllers first: a missing provider or a cycle that a controller needs is reported
    # with the controller at the head of the chain ("EventsController -> Egg -> Chicken ->
    # Egg"), which says where to look. Providers no controller needs are created after.
    app_guards, app_interceptors = app_enhancers(container, tuple(guards), tuple(interceptors))
    routes: list[RoutePlan] = []
    seen_controllers: set[type] = set()
    for module, spec in modules:
        for controller_class in spec.controllers:
            if controller_class in seen_controllers:
                continue
            seen_controllers.add(controller_class)
            routes.extend(
                compile_controller(
                    container,
                    module,
                    controller_class,
                    app_guards=app_guards,
                    app_interceptors=app_interceptors,
                )
            )
    container.instantiate_all()
    return ApplicationPlan(
        root_module=root_module,
        modules=tuple(module for module, _ in modules),
        container=container,
        routes=tuple(routes),
        router=Router(routes),
    )
