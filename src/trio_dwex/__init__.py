"""trio-dwex: a Trio-native, structured-concurrency web framework with first-class SSE.

Everything a user needs is importable from here; the subpackages are the layers of the
implementation (``wire`` → ``streams`` → ``framework`` → ``asgi`` → ``serving`` → ``testing``),
and their contents may change between releases.
"""

from typing import TYPE_CHECKING

from .asgi.app import DwexApp, create_app
from .asgi.request import Request
from .asgi.responses import EventSourceResponse, JSONResponse, Response
from .asgi.settings import CorsSettings, Settings
from .asgi.types import ASGIApp
from .errors import (
    BadRequestException,
    ConfigurationError,
    ConflictException,
    DwexError,
    ForbiddenException,
    HttpException,
    InternalServerErrorException,
    MethodNotAllowedException,
    NotFoundException,
    ProviderNotFound,
    ServiceUnavailableException,
    StreamClosed,
    TooManyRequestsException,
    UnauthorizedException,
    UnprocessableEntityException,
)
from .framework import (
    Body,
    CallNext,
    Controller,
    Delete,
    ExecutionContext,
    Get,
    Headers,
    Injectable,
    Module,
    Param,
    Patch,
    Post,
    Provider,
    Put,
    Query,
    Req,
    Sse,
    UseGuards,
    UseInterceptors,
    map_events,
)
from .serving.serve import run, serve, tune_gc
from .streams.broadcast import (
    RESET_EVENT,
    Broadcast,
    BroadcastBackend,
    BroadcastUnavailable,
    MemoryBackend,
    ResetReason,
    Subscription,
)
from .streams.runner import (
    CloseReason,
    StreamSettings,
    StreamStats,
    StreamTracker,
    aclose_iterator,
)
from .streams.stream import OverflowPolicy, SseStream
from .wire.decoder import Comment, MessageEvent, SseDecoder
from .wire.sse import NO_DATA, SseEvent, json_serializer, to_event

if TYPE_CHECKING:  # what `__getattr__` below returns, for type checkers: the class, not object
    from .streams.redis_backend import RedisBackend

__all__ = [
    "NO_DATA",
    "RESET_EVENT",
    "ASGIApp",
    "BadRequestException",
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


def __getattr__(name: str) -> object:
    # The Redis backend needs the optional `coredis` (pip install trio-dwex[redis]): import it
    # only when asked for, so that `import trio_dwex` works without it.
    if name == "RedisBackend":
        from .streams.redis_backend import RedisBackend

        return RedisBackend
    raise AttributeError(f"module 'trio_dwex' has no attribute {name!r}")
