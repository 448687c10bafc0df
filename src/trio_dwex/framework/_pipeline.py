"""Guards and interceptors: what runs around a handler, NestJS-style, in Trio terms.

**Guards** decide whether the handler runs at all. They run in order (controller-level first,
then method-level; within one ``@UseGuards`` in the order written); the first that answers
``False`` stops the request with a 403, and an :class:`~trio_dwex._errors.HttpException` a
guard raises (a 401, say) is answered as is. A rejected SSE request therefore gets a JSON
error and never opens a stream.

**Interceptors** wrap the call like an onion (NestJS ``interceptors-consumer.ts``): the first
listed is the outermost, controller-level ones wrap method-level ones. Each gets
``call_next``, an async zero-argument callable returning the handler's result; it may act
before and after, replace the result, or (on SSE routes) wrap the event iterator with
:func:`map_events`.

**Cancellation.** Guards and interceptors run inside the request's (or stream's) cancel
scope. They must not catch ``trio.Cancelled`` (no bare ``except BaseException`` without
re-raising): swallowing it would keep a disconnected client's work running and break
shutdown. Catch ``Exception`` for error handling; cleanup belongs in ``finally``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

from .._errors import ForbiddenException
from ..streams._iterators import aclose_iterator
from ..streams._lease import StreamLease

__all__ = [
    "CallNext",
    "CanActivate",
    "ExecutionContext",
    "Interceptor",
    "map_events",
    "run_guards",
    "run_interceptors",
]

T = TypeVar("T")
R = TypeVar("R")

CallNext = Callable[[], Awaitable[Any]]
"""What an interceptor calls to run the rest of the onion; returns the handler's result."""


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What guards and interceptors know about the call they are deciding on or wrapping.

    ``request`` is the request object (the ASGI layer's ``Request``; ``Req()`` injects the
    same object, so a guard can leave data on it for the handler). ``controller_class`` and
    ``handler`` (the unbound function) let a guard read metadata a custom decorator put on
    them, as NestJS's ``Reflector`` does.
    """

    #: The request being handled.
    request: Any
    #: The controller class the route belongs to.
    controller_class: type
    #: The handler function, unbound (as defined in the class).
    handler: Callable[..., Any]

    @property
    def lease(self) -> StreamLease:
        """The request's `StreamLease`: a guard sets whose the stream is and until when."""
        lease = getattr(self.request, "lease", None)
        if not isinstance(lease, StreamLease):
            raise TypeError(f"this request ({type(self.request).__name__}) carries no StreamLease")
        return lease

    def get_class(self) -> type:
        """The controller class (NestJS ``context.getClass()``)."""
        return self.controller_class

    def get_handler(self) -> Callable[..., Any]:
        """The unbound handler function (NestJS ``context.getHandler()``)."""
        return self.handler


@runtime_checkable
class CanActivate(Protocol):
    """A guard: ``can_activate`` returns (or awaits to) ``True`` to let the request through."""

    def can_activate(self, ctx: ExecutionContext) -> bool | Awaitable[bool]:
        """Whether the handler may run; raise an HttpException for another status than 403."""
        ...


@runtime_checkable
class Interceptor(Protocol):
    """An interceptor: wraps the call, ``return await call_next()`` being the identity."""

    def intercept(self, ctx: ExecutionContext, call_next: CallNext) -> Awaitable[Any]:
        """Run code around ``call_next()``; return the (possibly replaced) result."""
        ...


async def run_guards(guards: Sequence[CanActivate], ctx: ExecutionContext) -> None:
    """Run ``guards`` in order; return if all allow, else raise.

    Raises:
        ForbiddenException: the first guard that answers ``False``; later guards do not run.
        HttpException: whatever a guard raises, unchanged (e.g. UnauthorizedException).
        TypeError: a guard answered something other than a bool (most often ``None``, from a
            forgotten ``return``); refusing is safer than guessing.
    """
    for guard in guards:
        answer: object = guard.can_activate(ctx)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, bool):
            raise TypeError(
                f"{type(guard).__name__}.can_activate() returned {answer!r}; "
                "it must return True or False"
            )
        if not answer:
            raise ForbiddenException("Forbidden resource")


async def run_interceptors(
    interceptors: Sequence[Interceptor],
    ctx: ExecutionContext,
    call_handler: Callable[[], Awaitable[T]],
) -> Any:
    """Call ``call_handler`` wrapped by ``interceptors``; the first listed is the outermost.

    ``call_handler`` solves the parameters and calls the handler. Each interceptor's
    ``call_next`` runs the next interceptor, the last one's runs ``call_handler``. Calling
    ``call_next`` again runs the rest again (a retry); not calling it skips the handler.
    """

    async def call_from(index: int) -> Any:
        if index == len(interceptors):
            return await call_handler()

        async def call_next() -> Any:
            return await call_from(index + 1)

        result: Any = interceptors[index].intercept(ctx, call_next)
        if inspect.isawaitable(result):
            result = await result
        return result

    return await call_from(0)


@overload
def map_events(
    source: AsyncIterable[T], fn: Callable[[T], Awaitable[R]]
) -> AsyncGenerator[R, None]: ...
@overload
def map_events(source: AsyncIterable[T], fn: Callable[[T], R]) -> AsyncGenerator[R, None]: ...


async def map_events(source: AsyncIterable[T], fn: Callable[[T], Any]) -> AsyncGenerator[Any, None]:
    """Yield ``fn(item)`` for each item of ``source``; ``fn`` may be sync or async.

    For interceptors on SSE routes: ``return map_events(await call_next(), add_timestamp)``.
    When this generator is closed early (the client left, the stream was closed), it closes
    ``source``'s iterator explicitly (`aclose_iterator`), so the handler's
    ``finally`` blocks run now, inside the stream's cancel scope, rather than whenever the
    garbage collector gets to them. An `SseStream` ``source`` is run by the response that
    runs this generator: its tasks and ``on_close`` callbacks are that response's.
    """
    iterator = aiter(source)
    try:
        async for item in iterator:
            result = fn(item)
            if inspect.isawaitable(result):
                result = await result
            yield result
    finally:
        # Not plain aclose(): it raises if the handler's generator yields in its finally.
        await aclose_iterator(iterator)
