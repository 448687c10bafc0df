"""The names ``trio_dwex`` exports: adding or removing one is a decision, made here on purpose."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

import pytest

import trio_dwex
import trio_dwex.broadcast
import trio_dwex.lowlevel
import trio_dwex.serving
import trio_dwex.testing

ROOT = [
    "UNSET",
    "ASGIApp",
    "BadRequestException",
    "Body",
    "CallNext",
    "ConfigurationError",
    "ConflictException",
    "Constraint",
    "Controller",
    "Cookie",
    "CorsSettings",
    "Delete",
    "DwexApp",
    "DwexError",
    "EventContractError",
    "EventSourceResponse",
    "ExecutionContext",
    "FileResponse",
    "ForbiddenException",
    "Get",
    "GoneException",
    "H2Limits",
    "HTMLResponse",
    "Headers",
    "Inject",
    "HttpException",
    "Injectable",
    "InternalServerErrorException",
    "JSONResponse",
    "MethodNotAllowedException",
    "Module",
    "NotFoundException",
    "OpenAPISettings",
    "OverflowPolicy",
    "Param",
    "Patch",
    "Post",
    "Provider",
    "ProviderNotFound",
    "Put",
    "Query",
    "RedirectResponse",
    "Req",
    "Request",
    "RequestValidationError",
    "Response",
    "ServerLimits",
    "ServiceUnavailableException",
    "Settings",
    "Sse",
    "SseEvent",
    "SseStream",
    "StaticFiles",
    "StreamClosed",
    "StreamLease",
    "StreamSettings",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
    "UseGuards",
    "UseInterceptors",
    "create_app",
    "map_events",
    "run",
    "serve",
]
BROADCAST = [
    "RESET_EVENT",
    "RUN_ENDED_EVENT",
    "RUN_ID_PATTERN",
    "Broadcast",
    "BroadcastBackend",
    "BroadcastUnavailable",
    "Deliver",
    "EndTopic",
    "EventTooLarge",
    "MemoryBackend",
    "RedisBackend",
    "Replay",
    "ResetReason",
    "RunInfo",
    "RunStatus",
    "Runs",
    "Subscription",
]
TESTING = [
    "DEFAULT_RECONNECT_DELAY",
    "STALL_RECEIVE_BUFFER",
    "TEST_GRACEFUL_TIMEOUT",
    "Comment",
    "EventSource",
    "EventSourceError",
    "MessageEvent",
    "RawStream",
    "ServerFactory",
    "SseDecoder",
    "StopReason",
    "open_raw_stream",
    "open_stalled_stream",
    "run_test_server",
    "serve_app",
    "server_config",
]
LOWLEVEL = [
    "DEFAULT_GC_THRESHOLD",
    "CloseReason",
    "DroppedWrites",
    "EventSink",
    # What a sink may offer so that producers write events themselves (issue 15).
    "ImmediateWriter",
    # The tracker's clock, which the app's lifespan runs (issue 15).
    "KeepaliveClock",
    # The type of ``SseStream.state``: a stream's lifecycle is readable (issue 12).
    "StreamState",
    "StreamStats",
    "StreamTracker",
    "aclose_iterator",
    "dropped_writes",
    "json_serializer",
    "run_stream",
    "to_event",
    "tune_gc",
]


@pytest.mark.parametrize(
    ("namespace", "names"),
    [
        (trio_dwex, ROOT),
        (trio_dwex.broadcast, BROADCAST),
        (trio_dwex.testing, TESTING),
        (trio_dwex.lowlevel, LOWLEVEL),
    ],
    ids=["root", "broadcast", "testing", "lowlevel"],
)
def test_each_public_namespace_is_pinned(namespace: ModuleType, names: list[str]) -> None:
    assert sorted(namespace.__all__) == sorted(names)
    assert all(hasattr(namespace, name) for name in names)


def test_a_name_has_one_public_home() -> None:
    homes = [ROOT, BROADCAST, TESTING, LOWLEVEL]
    everything = [name for names in homes for name in names]
    assert len(everything) == len(set(everything))


def test_implementation_modules_are_private() -> None:
    package = Path(trio_dwex.__file__).parent
    public = {"__init__", "__main__", "lowlevel", "plugin"}
    exposed = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.stem not in public and not path.stem.startswith("_")
    ]
    assert exposed == []


def test_serve_is_async_and_run_is_its_synchronous_entry_point() -> None:
    assert inspect.iscoroutinefunction(trio_dwex.serve)
    assert not inspect.iscoroutinefunction(trio_dwex.run)
    assert trio_dwex.run is trio_dwex.serving.run
    assert trio_dwex.run.__doc__
    assert "trio_dwex.run(app, port=9929)" in trio_dwex.run.__doc__
    assert trio_dwex.serve.__doc__
    assert ":func:`run`" in trio_dwex.serve.__doc__
