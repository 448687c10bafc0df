"""trio-dwex: a Trio-native, structured-concurrency web framework with first-class SSE.

This namespace holds what an app author writes: controllers and their decorators, parameter
markers, guards and interceptors, `SseEvent` and `SseStream`, settings, responses, errors,
`create_app`, `run` and `serve`, and `UNSET`, the value for "not given" where ``None`` means
something (``SseEvent(data=UNSET)``, the default, sends no data line). The rest lives in three
more public namespaces:

- ``trio_dwex.broadcast``: the pub/sub hub with replay (`Broadcast`, its backends);
- ``trio_dwex.testing``: a real-server fixture, the `EventSource` client and its decoder;
- ``trio_dwex.lowlevel``: the stream runner, tracker, stats and process tuning.

The subpackages ``wire``, ``streams``, ``framework``, ``asgi`` and ``serving`` are the layers
of the implementation (docs/architecture.md); their contents may change between releases.
"""

from ._errors import (
    BadRequestException,
    ConfigurationError,
    ConflictException,
    DwexError,
    ForbiddenException,
    GoneException,
    HttpException,
    InternalServerErrorException,
    MethodNotAllowedException,
    NotFoundException,
    ProviderNotFound,
    RequestValidationError,
    ServiceUnavailableException,
    StreamClosed,
    TooManyRequestsException,
    UnauthorizedException,
    UnprocessableEntityException,
)
from ._unset import UNSET
from .asgi._app import DwexApp, create_app
from .asgi._files import FileResponse, StaticFiles
from .asgi._request import Request
from .asgi._responses import (
    EventSourceResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from .asgi._settings import CorsSettings, OpenAPISettings, Settings
from .asgi._types import ASGIApp
from .framework import (
    Body,
    CallNext,
    Constraint,
    Controller,
    Cookie,
    Delete,
    EventContractError,
    ExecutionContext,
    Get,
    Headers,
    Inject,
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
from .serving import H2Limits, ServerLimits, run, serve
from .streams._lease import StreamLease
from .streams._settings import StreamSettings
from .streams._stream import OverflowPolicy, SseStream
from .wire._sse import SseEvent

__all__ = [
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
    "HttpException",
    "Inject",
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
