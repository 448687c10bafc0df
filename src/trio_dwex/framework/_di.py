"""Dependency injection: one flat registry of singletons per application.

**Scope.** Every provider of every module reachable from the root module through
``imports=[...]`` is visible to every controller, guard and interceptor of the app. There is
no per-module encapsulation (NestJS's ``exports``): it keeps the rule to one sentence, and a
missing provider is still caught at startup with the full chain. The same class listed by
several modules is one provider; two *different* recipes for one type are an error.

**Lifetimes.** Each provider is created once, synchronously, when the application is
compiled, dependencies first. Controllers, and guards and interceptors given as classes,
are created the same way (once per app) without having to be listed as providers.

**Startup and shutdown.** Created instances that are async context managers (they define
``__aenter__`` and ``__aexit__``) are entered by :meth:`Container.lifespan`, in creation order
(so a service is entered after everything it depends on), and exited in reverse order (so it
is exited before anything it depends on). The ASGI layer runs ``lifespan()`` inside its
lifespan task; a service that owns background tasks opens its nursery in ``__aenter__`` and
closes it in ``__aexit__``, so nothing is fire-and-forget. Values given with
``Provider(T, use_value=...)`` belong to the caller and are never entered.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast, overload

from .._errors import ConfigurationError, ProviderNotFound
from .._unset import UNSET
from ._convert import is_optional, strip_optional
from ._decorators import injectable_scope, is_injectable

__all__ = ["Container", "Provider"]

T = TypeVar("T")


def _name(token: object) -> str:
    return str(getattr(token, "__qualname__", None) or getattr(token, "__name__", None) or token)


class Provider(Generic[T]):
    """A provider whose recipe is not just "call the class": ``providers=[Provider(...)]``.

    Exactly one of:

    - ``use_value``: inject this object (configuration, a client built elsewhere). It is not
      entered as an async context manager: whoever made it owns its lifetime.
    - ``use_class``: inject an instance of this class (constructor injected) for ``token``,
      e.g. ``Provider(Clock, use_class=FakeClock)`` in tests.
    - ``use_factory``: inject what this function returns; its parameters are injected from
      their type hints like a constructor's.
    """

    __slots__ = ("kind", "scope", "target", "token")

    @overload
    def __init__(self, token: type[T], *, use_value: T) -> None: ...
    @overload
    def __init__(
        self, token: type[T], *, use_class: type[T], scope: Literal["app", "request"] = "app"
    ) -> None: ...
    @overload
    def __init__(
        self,
        token: type[T],
        *,
        use_factory: Callable[..., T],
        scope: Literal["app", "request"] = "app",
    ) -> None: ...

    def __init__(
        self,
        token: type[T],
        *,
        use_value: object = UNSET,
        use_class: object = UNSET,
        use_factory: object = UNSET,
        scope: Literal["app", "request"] = "app",
    ) -> None:
        given = {
            kind: target
            for kind, target in (
                ("value", use_value),
                ("class", use_class),
                ("factory", use_factory),
            )
            if target is not UNSET
        }
        if len(given) != 1:
            raise ConfigurationError(
                f"Provider({_name(token)}, ...) takes exactly one of use_value=, use_class=, "
                f"use_factory=; got {len(given)}"
            )
        if token is None or not isinstance(token, Hashable):
            raise ConfigurationError(f"Provider(token) must be a type, got {token!r}")
        ((kind, target),) = given.items()
        if kind == "class" and not isinstance(target, type):
            raise ConfigurationError(
                f"Provider({_name(token)}, use_class=...) takes a class, got {target!r}"
            )
        if kind == "factory" and not callable(target):
            raise ConfigurationError(
                f"Provider({_name(token)}, use_factory=...) takes a callable, got {target!r}"
            )
        if kind == "value" and isinstance(token, type):
            try:
                mismatch = not isinstance(target, token)
            except TypeError:  # a Protocol that is not runtime-checkable, a generic alias...
                mismatch = False
            if mismatch:
                raise ConfigurationError(
                    f"Provider({_name(token)}, use_value=...) got a {type(target).__name__}, "
                    f"which is not a {_name(token)}"
                )
        if scope not in ("app", "request"):
            raise ConfigurationError(
                f"Provider({_name(token)}, scope=...) is 'app' or 'request', got {scope!r}"
            )
        if scope == "request" and kind == "value":
            raise ConfigurationError(
                f"Provider({_name(token)}, use_value=..., scope='request'): a value is one "
                "object for the whole app; give use_class= or use_factory= to make one per request"
            )
        self.token: object = token
        self.kind: Literal["value", "class", "factory"] = cast(Any, kind)
        self.target: object = target
        #: ``"app"``: one instance for the app; ``"request"``: one per request that asks.
        self.scope: Literal["app", "request"] = scope

    def same_recipe(self, other: Provider[Any]) -> bool:
        """Whether ``other`` provides the same token the same way (listing twice is fine)."""
        same = (self.token, self.kind, self.scope) == (other.token, other.kind, other.scope)
        return same and self.target is other.target

    def __repr__(self) -> str:
        scope = ", scope='request'" if self.scope == "request" else ""
        return f"Provider({_name(self.token)}, use_{self.kind}={self.target!r}{scope})"


@dataclass(frozen=True, slots=True)
class _Registration:
    provider: Provider[Any]
    origin: str


@dataclass(frozen=True, slots=True)
class _Dependency:
    name: str
    token: object
    has_default: bool
    optional: bool


class Container:
    """The application's providers and their singletons; see the module docstring for scope.

    Built by :func:`compile_application`; the ASGI layer only calls :meth:`lifespan` (and
    :meth:`get` if it needs a provider itself, e.g. settings).
    """

    def __init__(self) -> None:
        self._registry: dict[object, _Registration] = {}
        self._instances: dict[object, object] = {}
        self._unlisted: dict[type, object] = {}
        self._created: list[object] = []
        self._running = False
        self._overridden: set[object] = set()

    # -- building --------------------------------------------------------------------------

    def register(self, provider: object, *, origin: str) -> None:
        """Add one entry of a module's ``providers=[...]``; ``origin`` names the module.

        Raises:
            ConfigurationError: the entry is neither an ``@Injectable()`` class nor a
                :class:`Provider`, or the same type has two different recipes.
        """
        if isinstance(provider, type):
            if not is_injectable(provider):
                raise ConfigurationError(
                    f"{origin} lists {provider.__name__} in providers=[...] but it is not "
                    f"marked @Injectable(); decorate the class, or list "
                    f"Provider({provider.__name__}, use_class={provider.__name__})"
                )
            provider = Provider(provider, use_class=provider, scope=injectable_scope(provider))
        if not isinstance(provider, Provider):
            raise ConfigurationError(
                f"{origin} lists {provider!r} in providers=[...]; an entry is an "
                "@Injectable() class or a Provider(token, use_value=/use_class=/use_factory=)"
            )
        if provider.token in self._overridden:
            return  # an override replaces the modules' own provider of this type
        existing = self._registry.get(provider.token)
        if existing is not None:
            if existing.provider.same_recipe(provider):
                return
            raise ConfigurationError(
                f"{_name(provider.token)} is provided twice, differently: {existing.provider!r} "
                f"in {existing.origin} and {provider!r} in {origin}; keep one (the registry "
                "is flat: one provider per type for the whole app)"
            )
        self._registry[provider.token] = _Registration(provider, origin)

    def override(self, provider: object) -> None:
        """Register ``provider`` in place of whatever the modules list for its type.

        Call it before the modules' providers are registered: their entries for an overridden
        type are then skipped. Overriding a class that no module lists (a guard, a
        controller's dependency created unlisted) works too.

        Raises:
            ConfigurationError: ``provider`` is not a provider, or its type is overridden twice.
        """
        token = provider.token if isinstance(provider, Provider) else provider
        if token in self._overridden:
            raise ConfigurationError(f"{_name(token)} is overridden twice; keep one override")
        self.register(provider, origin="create_app(overrides=...)")
        self._overridden.add(token)

    def instantiate_all(self) -> None:
        """Create every app-wide provider now, dependencies first, so errors surface early;
        check that a per-request provider's dependencies have providers."""
        for token, registration in list(self._registry.items()):
            if registration.provider.scope == "request":
                self._check_request_scoped(token, (token,))
            else:
                self._get(token, ())

    def provider_of(self, token: object) -> Provider[Any] | None:
        """The provider registered for ``token``, if any."""
        registration = self._registry.get(token)
        return None if registration is None else registration.provider

    def dependencies_of(self, provider: Provider[Any]) -> list[tuple[str, object, bool, bool]]:
        """``(name, token, has_default, optional)`` for each injected parameter of a provider's
        class or factory (none for a value)."""
        if provider.kind == "value":
            return []
        target = cast(Callable[..., object], provider.target)
        return [
            (dep.name, dep.token, dep.has_default, dep.optional)
            for dep in _dependencies(target, self._names())
        ]

    def _check_request_scoped(self, token: object, chain: tuple[object, ...]) -> None:
        provider = self._registry[token].provider
        for _, dependency, has_default, optional in self.dependencies_of(provider):
            found = self._registry.get(dependency)
            if found is None:
                if not (has_default or optional):
                    self._get(dependency, chain)  # raises ProviderNotFound with the chain
            elif found.provider.scope == "request":
                if dependency in chain:
                    self._get(dependency, chain)  # raises the cycle error
                self._check_request_scoped(dependency, (*chain, dependency))
            else:
                self._get(dependency, chain)

    def instantiate(self, cls: type[T]) -> T:
        """The app's single instance of ``cls``, a controller, guard or interceptor class.

        A registered provider of ``cls`` is used if there is one; otherwise ``cls`` is created
        once with its constructor injected, and the same instance is returned next time.

        Raises:
            ProviderNotFound: a constructor parameter has no provider (message shows the chain).
            ConfigurationError: a dependency cycle, or a constructor that cannot be analysed.
        """
        if cls in self._registry:
            return cast(T, self._get(cls, ()))
        if cls not in self._unlisted:
            self._unlisted[cls] = self._construct(cls, (cls,))
        return cast(T, self._unlisted[cls])

    # -- using -------------------------------------------------------------------------------

    def get(self, token: type[T]) -> T:
        """The singleton registered for ``token``.

        Raises:
            ProviderNotFound: no module provides ``token``.
        """
        return cast(T, self._get(token, ()))

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Enter the async-context-manager providers at startup, exit them at shutdown.

        Entered in creation order (dependencies first), exited in reverse, through one
        :class:`~contextlib.AsyncExitStack`: if entering one fails, those already entered are
        exited before the error propagates. Run it once per app, inside the ASGI lifespan
        task, around the time the app serves requests.
        """
        if self._running:
            raise RuntimeError(
                "Container.lifespan() is already running; an app's providers are entered once"
            )
        self._running = True
        try:
            async with AsyncExitStack() as stack:
                for instance in self._created:
                    if hasattr(instance, "__aenter__") and hasattr(instance, "__aexit__"):
                        await stack.enter_async_context(cast(Any, instance))
                yield
        finally:
            self._running = False

    # -- internals ---------------------------------------------------------------------------

    def _names(self) -> dict[str, object]:
        # Registered classes by name, to resolve string hints that the defining module's
        # globals cannot (classes defined inside a function, under `from __future__ import
        # annotations`). A name two providers share is left out rather than guessed.
        names: dict[str, object] = {}
        shared: set[str] = set()
        for token in self._registry:
            name = getattr(token, "__name__", None)
            if isinstance(name, str):
                if name in names and names[name] is not token:
                    shared.add(name)
                names[name] = token
        for name in shared:
            del names[name]
        return names

    def _get(self, token: object, path: tuple[object, ...]) -> object:
        if token in self._instances:
            return self._instances[token]
        chain = (*path, token)
        if token in path:
            loop = chain[path.index(token) :]
            raise ConfigurationError(
                f"cannot resolve {' -> '.join(map(_name, chain))}: dependency cycle "
                f"({' -> '.join(map(_name, loop))}); break it, e.g. move what both need into "
                "a third provider, or pass one of them as a method argument"
            )
        registration = self._registry.get(token)
        if registration is None:
            raise ProviderNotFound(
                f"cannot resolve {' -> '.join(map(_name, chain))}: no provider for "
                f"{_name(token)}; add it to providers=[...] of a module"
                + ("" if path else " (or list the module that provides it in imports=[...])")
            )
        provider = registration.provider
        if provider.scope == "request":
            needs = _name(path[-1]) if path else "the app"
            raise ConfigurationError(
                f"cannot resolve {' -> '.join(map(_name, chain))}: {_name(token)} lives per "
                f"request (scope='request'), and {needs} is created once for the app; take it "
                f"in a handler instead: `Annotated[{_name(token)}, Inject()]`"
            )
        if provider.kind == "value":
            instance = provider.target
        else:
            instance = self._construct(cast(Callable[..., object], provider.target), chain)
        self._instances[token] = instance
        return instance

    def _construct(self, target: Callable[..., object], chain: tuple[object, ...]) -> object:
        kwargs: dict[str, object] = {}
        for dep in _dependencies(target, self._names()):
            if dep.token in self._registry or dep.token in self._instances:
                kwargs[dep.name] = self._get(dep.token, chain)
            elif dep.has_default:
                continue
            elif dep.optional:
                kwargs[dep.name] = None
            else:
                self._get(dep.token, chain)  # raises ProviderNotFound with the chain
        try:
            instance = target(**kwargs)
        except Exception as exc:
            exc.add_note(f"while creating {' -> '.join(map(_name, chain))} for the app")
            raise
        self._created.append(instance)
        return instance


def _dependencies(
    target: Callable[..., object], localns: Mapping[str, object]
) -> list[_Dependency]:
    where = _name(target)
    if isinstance(target, type):
        init = target.__init__  # type: ignore[misc]  # read, not called on an instance
        if init is object.__init__:
            return []
        hinted: object = init
        where += ".__init__"
    else:
        hinted = target
    try:
        signature = inspect.signature(target)
        hints: Mapping[str, Any] = typing.get_type_hints(hinted, localns=dict(localns))
    except (NameError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read the type hints of {where}: {exc}; constructor annotations must name "
            "provider classes or types importable from its module"
        ) from exc
    dependencies = []
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        has_default = parameter.default is not inspect.Parameter.empty
        if parameter.name not in hints:
            if has_default:
                continue
            raise ConfigurationError(
                f"parameter {parameter.name!r} of {where} has no type hint, so nothing can be "
                "injected; annotate it with the provider's class"
            )
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigurationError(
                f"parameter {parameter.name!r} of {where} is positional-only; injection passes "
                "keyword arguments"
            )
        hint = hints[parameter.name]
        dependencies.append(
            _Dependency(parameter.name, strip_optional(hint), has_default, is_optional(hint))
        )
    return dependencies
