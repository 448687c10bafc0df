"""The names ``trio_dwex`` exports: adding or removing one is a decision, made here on purpose."""

from __future__ import annotations

import inspect

import trio_dwex
import trio_dwex.serving


def test_public_names_are_pinned() -> None:
    assert sorted(trio_dwex.__all__) == sorted(
        [
            "NO_DATA",
            "RESET_EVENT",
            "BadRequestException",
            "ASGIApp",
            "Body",
            "Broadcast",
            "BroadcastBackend",
            "BroadcastUnavailable",
            "CallNext",
            "CloseReason",
            "Comment",
            "ConfigurationError",
            "ConflictException",
            "Controller",
            "CorsSettings",
            "Delete",
            "DwexApp",
            "DwexError",
            "EventSourceResponse",
            "ExecutionContext",
            "ForbiddenException",
            "Get",
            "Headers",
            "HttpException",
            "Injectable",
            "InternalServerErrorException",
            "JSONResponse",
            "MemoryBackend",
            "MessageEvent",
            "MethodNotAllowedException",
            "Module",
            "NotFoundException",
            "OverflowPolicy",
            "Param",
            "Patch",
            "Post",
            "Provider",
            "ProviderNotFound",
            "Put",
            "Query",
            "RedisBackend",
            "Req",
            "Request",
            "ResetReason",
            "Response",
            "ServiceUnavailableException",
            "Settings",
            "Sse",
            "SseDecoder",
            "SseEvent",
            "SseStream",
            "StreamClosed",
            "StreamSettings",
            "StreamStats",
            "StreamTracker",
            "Subscription",
            "TooManyRequestsException",
            "UnauthorizedException",
            "UnprocessableEntityException",
            "UseGuards",
            "UseInterceptors",
            "aclose_iterator",
            "create_app",
            "json_serializer",
            "map_events",
            "run",
            "serve",
            "to_event",
            "tune_gc",
        ]
    )
    # RedisBackend is imported lazily (it needs the optional coredis): not checked here.
    assert all(hasattr(trio_dwex, name) for name in trio_dwex.__all__ if name != "RedisBackend")


def test_serve_is_async_and_run_is_its_synchronous_entry_point() -> None:
    assert inspect.iscoroutinefunction(trio_dwex.serve)
    assert not inspect.iscoroutinefunction(trio_dwex.run)
    assert trio_dwex.run is trio_dwex.serving.run
    assert trio_dwex.run.__doc__
    assert "trio_dwex.run(app, port=9929)" in trio_dwex.run.__doc__
    assert trio_dwex.serve.__doc__
    assert ":func:`run`" in trio_dwex.serve.__doc__
