"""One request's providers: those declared ``scope="request"``, made and entered per request.

A :class:`RequestScope` lives as long as the request's response. ``Inject()`` parameters ask it
for providers; a per-request one is created with its dependencies (app-wide ones are the app's
instances, per-request ones are this request's), entered if it is an async context manager,
and exited in reverse order by :meth:`RequestScope.release`: those marked
``release="headers"`` when the response's headers are sent, the others when it has ended.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, cast

from .._errors import ProviderNotFound
from ._di import Container
from ._params import Release

__all__ = ["RequestScope"]


class RequestScope:
    """The per-request providers of one request, and when to exit them."""

    # Slots, and dicts made when first needed: a stream's request holds its scope for as long
    # as the stream lives, and most requests inject nothing per request.
    __slots__ = ("_container", "_instances", "_stacks")

    def __init__(self, container: Container) -> None:
        self._container = container
        self._instances: dict[object, object] | None = None
        self._stacks: dict[Release, AsyncExitStack] | None = None

    def holds(self, when: Release) -> bool:
        """Whether a provider is waiting to be exited ``when``."""
        return self._stacks is not None and when in self._stacks

    async def get(self, token: object, release: Release = "response") -> object:
        """The instance of ``token`` for this request (the app's, for an app-wide provider).

        A per-request provider is made once per request: a second ``Inject()`` of the same type
        gets the same instance, released when the first asked.
        """
        if self._instances is None:
            self._instances = {}
        elif token in self._instances:
            return self._instances[token]
        provider = self._container.provider_of(token)
        if provider is None or provider.scope != "request":
            return self._container.get(cast(type, token))
        kwargs: dict[str, object] = {}
        for name, dependency, has_default, optional in self._container.dependencies_of(provider):
            if self._container.provider_of(dependency) is not None:
                kwargs[name] = await self.get(dependency, release)
            elif optional and not has_default:
                kwargs[name] = None
            elif not has_default:  # create_app checked this; a provider removed since?
                named = getattr(dependency, "__qualname__", dependency)
                raise ProviderNotFound(f"no provider for {named}")
        factory = cast(Any, provider.target)
        instance = factory(**kwargs)
        if hasattr(instance, "__aenter__") and hasattr(instance, "__aexit__"):
            if self._stacks is None:
                self._stacks = {}
            stack = self._stacks.setdefault(release, AsyncExitStack())
            instance = await stack.enter_async_context(instance)
        self._instances[token] = instance
        return instance

    async def release(self, when: Release) -> None:
        """Exit the providers released ``when``; ``"response"`` exits every one left."""
        releases: tuple[Release, ...] = ("headers", "response") if when == "response" else (when,)
        if self._stacks is None:
            return
        for release in releases:
            stack = self._stacks.pop(release, None)
            if stack is not None:
                await stack.aclose()
