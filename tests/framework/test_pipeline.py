"""Guards, interceptors and map_events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from trio_dwex._errors import ForbiddenException, UnauthorizedException
from trio_dwex.framework import (
    CallNext,
    CanActivate,
    ExecutionContext,
    map_events,
    run_guards,
    run_interceptors,
)


class Ctl:
    def handler(self) -> None: ...


def make_ctx(request: object = None) -> ExecutionContext:
    return ExecutionContext(request=request, controller_class=Ctl, handler=Ctl.handler)


def test_execution_context_accessors() -> None:
    ctx = make_ctx("req")
    assert ctx.get_class() is Ctl
    assert ctx.get_handler() is Ctl.handler
    assert ctx.request == "req"


class Recorder:
    def __init__(self, log: list[str], name: str, answer: bool = True) -> None:
        self.log = log
        self.name = name
        self.answer = answer


class SyncGuard(Recorder):
    def can_activate(self, ctx: ExecutionContext) -> bool:
        self.log.append(self.name)
        return self.answer


class AsyncGuard(Recorder):
    async def can_activate(self, ctx: ExecutionContext) -> bool:
        await trio.lowlevel.checkpoint()
        self.log.append(self.name)
        return self.answer


async def test_guards_run_in_order_sync_and_async() -> None:
    log: list[str] = []
    guards: list[CanActivate] = [SyncGuard(log, "a"), AsyncGuard(log, "b"), SyncGuard(log, "c")]
    await run_guards(guards, make_ctx())
    assert log == ["a", "b", "c"]


async def test_first_false_is_403_and_stops() -> None:
    log: list[str] = []
    guards: list[CanActivate] = [
        SyncGuard(log, "a"),
        AsyncGuard(log, "b", answer=False),
        SyncGuard(log, "c"),
    ]
    with pytest.raises(ForbiddenException) as info:
        await run_guards(guards, make_ctx())
    assert info.value.status == 403
    assert log == ["a", "b"]


async def test_http_exception_from_a_guard_propagates() -> None:
    class AuthGuard:
        async def can_activate(self, ctx: ExecutionContext) -> bool:
            raise UnauthorizedException("missing token", headers={"WWW-Authenticate": "Bearer"})

    with pytest.raises(UnauthorizedException) as info:
        await run_guards([AuthGuard()], make_ctx())
    assert info.value.status == 401
    assert info.value.headers == {"WWW-Authenticate": "Bearer"}


async def test_a_guard_returning_none_is_a_bug_not_a_pass() -> None:
    class Forgetful:
        def can_activate(self, ctx: ExecutionContext) -> Any:
            return None

    with pytest.raises(TypeError, match=r"Forgetful.can_activate\(\) returned None"):
        await run_guards([Forgetful()], make_ctx())


class Onion:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    async def intercept(self, ctx: ExecutionContext, call_next: CallNext) -> Any:
        self.log.append(f"{self.name} before")
        result = await call_next()
        self.log.append(f"{self.name} after")
        return f"{self.name}({result})"


async def test_interceptor_onion_first_is_outermost() -> None:
    log: list[str] = []

    async def handler() -> str:
        log.append("handler")
        return "h"

    result = await run_interceptors([Onion(log, "a"), Onion(log, "b")], make_ctx(), handler)
    assert result == "a(b(h))"
    assert log == ["a before", "b before", "handler", "b after", "a after"]


async def test_no_interceptors_calls_the_handler() -> None:
    async def handler() -> int:
        return 7

    assert await run_interceptors([], make_ctx(), handler) == 7


async def test_an_interceptor_may_short_circuit() -> None:
    class Cached:
        async def intercept(self, ctx: ExecutionContext, call_next: CallNext) -> Any:
            return "cached"

    async def handler() -> str:
        raise AssertionError("must not run")

    assert await run_interceptors([Cached()], make_ctx(), handler) == "cached"


async def test_map_events_sync_and_async_functions() -> None:
    async def source() -> AsyncIterator[int]:
        for n in range(3):
            yield n

    async def double(n: int) -> int:
        await trio.lowlevel.checkpoint()
        return n * 2

    assert [x async for x in map_events(source(), str)] == ["0", "1", "2"]
    assert [x async for x in map_events(source(), double)] == [0, 2, 4]


async def test_map_events_closes_the_inner_generator_when_closed_early() -> None:
    log: list[str] = []

    async def handler_stream() -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            log.append("inner finally")

    mapped = map_events(handler_stream(), lambda n: n + 100)
    assert await mapped.__anext__() == 100
    assert await mapped.__anext__() == 101
    assert log == []
    await mapped.aclose()
    assert log == ["inner finally"]  # now, not at garbage collection


async def test_map_events_closes_the_inner_generator_when_fn_raises() -> None:
    log: list[str] = []

    async def handler_stream() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2  # pragma: no cover
        finally:
            log.append("inner finally")

    def explode(n: int) -> int:
        raise ValueError("bad event")

    with pytest.raises(ValueError, match="bad event"):
        async for _ in map_events(handler_stream(), explode):
            pass  # pragma: no cover
    assert log == ["inner finally"]


async def test_interceptor_wraps_an_sse_iterator() -> None:
    class Stamp:
        async def intercept(self, ctx: ExecutionContext, call_next: CallNext) -> Any:
            return map_events(await call_next(), lambda event: {"data": event, "stamped": True})

    async def events() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    async def handler() -> AsyncIterator[str]:
        return events()

    wrapped = await run_interceptors([Stamp()], make_ctx(), handler)
    assert [e async for e in wrapped] == [
        {"data": "a", "stamped": True},
        {"data": "b", "stamped": True},
    ]
