"""A Model Context Protocol server over the Streamable HTTP transport, at ``/mcp``.

Written on trio-dwex directly (not on the MCP SDK's server), so that every part of the transport
shows: JSON-RPC messages arrive as ``POST /mcp``; a request is answered with JSON, or with an
event stream when it has something to say before its result (a tool's progress); ``GET /mcp``
is the stream on which the server speaks unasked (log messages); ``DELETE /mcp`` ends a session.

Two tools: ``add(a, b)`` returns the sum as text; ``countdown(n)`` sends ``n`` progress
notifications, one per step, then its result. Run it and point any MCP client at it::

    trio-dwex run examples.mcp_server:app
    # then, in Python:  async with mcp.Client("http://127.0.0.1:9929/mcp") as client: ...

What the server does, and why:

- **Protocol versions**: those negotiated with ``initialize`` (2025-03-26, 2025-06-18 and
  2025-11-25), each with sessions. A client that first probes for the stateless 2026-07-28
  protocol (``server/discover``, sent without a session) is told that a session is required
  and falls back to ``initialize``, as the official SDK's ``mode="auto"`` does.
- **Sessions**: ``initialize`` makes one; its id comes back as ``Mcp-Session-Id`` and every
  later request must carry it (400 without, 404 once the session is gone). ``DELETE`` ends one;
  so does ``session_idle_timeout`` without a request or an open stream.
- **Resumable streams**: a streamed answer's events are numbered and kept in the session, and
  the tool runs in the server's nursery, not the request's. If the stream drops (the network,
  or ``stream_window``: a server may close long streams to free connections, telling the client
  to come back after ``retry``), the client resends ``GET`` with ``Last-Event-ID`` and gets the
  rest: no gap, no duplicate. A tool call stops with its session, or when the client sends
  ``notifications/cancelled``.
- **Origin**: a browser page on another site must not reach a server on this machine through
  DNS rebinding, so a request whose ``Origin`` is not a loopback origin (or one listed in
  ``allowed_origins``) is refused with 403. Comparing with ``Host`` would not do: a rebound
  name sends its own ``Host``.
- **Accept**: a ``POST`` that accepts neither JSON nor an event stream is a 406; a tool call
  whose client accepts only JSON is run to its end and answered once, without progress.

Environment: ``MCP_STEP_DELAY`` (seconds per countdown step, default 0.05) and
``MCP_STREAM_WINDOW`` (seconds a response stream stays open, default: until it ends).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Annotated, Any, Literal, NotRequired, TypedDict
from urllib.parse import urlsplit

import trio

from trio_dwex import (
    CallNext,
    Controller,
    Delete,
    DwexApp,
    EventSourceResponse,
    ExecutionContext,
    Headers,
    HttpException,
    Injectable,
    JSONResponse,
    Module,
    Provider,
    Req,
    Request,
    Response,
    Settings,
    Sse,
    SseEvent,
    UseInterceptors,
    create_app,
)

#: Protocol versions negotiated with ``initialize``, oldest first; the last is offered.
PROTOCOL_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
#: From this version on, a stream starts with an empty event carrying its first id.
PRIMING_SINCE = "2025-11-25"
SERVER_INFO = {"name": "trio-dwex-example", "version": "1.0.0"}

# JSON-RPC error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNSUPPORTED_PROTOCOL_VERSION = -32022

logger = logging.getLogger(__name__)

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "mcp-protocol-version"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


@dataclass(frozen=True)
class McpConfig:
    """The server's settings; `from_env` reads the two that a deployment tunes."""

    #: Seconds ``countdown`` waits between steps.
    step_delay: float = 0.05
    #: Seconds a response stream stays open before the server closes it and the client resumes
    #: with ``Last-Event-ID``; ``None``: open until the answer is complete.
    stream_window: float | None = None
    #: Milliseconds a client waits before resuming a closed stream (the events' ``retry``).
    retry_ms: int = 1000
    #: Sessions at once; an ``initialize`` beyond it is a 503.
    max_sessions: int = 1000
    #: Seconds a session lives without a request or an open stream.
    session_idle_timeout: float = 600.0
    #: Messages kept for replay on the ``GET`` stream (a response stream keeps all of its own).
    replay_limit: int = 100
    #: The largest ``n`` that ``countdown`` accepts.
    max_countdown: int = 1000
    #: Origins allowed besides loopback ones, as ``scheme://host[:port]``.
    allowed_origins: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.step_delay >= 0:  # also refuses NaN
            raise ValueError(f"step_delay must be >= 0 seconds, got {self.step_delay}")
        if self.stream_window is not None and not self.stream_window > 0:
            raise ValueError(f"stream_window must be > 0 seconds or None, got {self.stream_window}")
        for name in ("retry_ms", "max_sessions", "replay_limit", "max_countdown"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.session_idle_timeout > 0:
            raise ValueError(f"session_idle_timeout must be > 0, got {self.session_idle_timeout}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> McpConfig:
        """``MCP_STEP_DELAY`` and ``MCP_STREAM_WINDOW``, with the defaults above."""
        step_delay = _seconds(environ, "MCP_STEP_DELAY")
        return cls(
            step_delay=cls.step_delay if step_delay is None else step_delay,
            stream_window=_seconds(environ, "MCP_STREAM_WINDOW"),
        )


def _seconds(environ: Mapping[str, str], name: str) -> float | None:
    text = environ.get(name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be seconds, got {text!r}") from None


# -- JSON-RPC ------------------------------------------------------------------------------------

Message = dict[str, Any]


def result_message(request_id: object, result: Mapping[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "result": dict(result)}


def error_message(request_id: object, code: int, message: str, data: object = None) -> Message:
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def notification(method: str, params: Mapping[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "method": method, "params": dict(params)}


class ErrorObject(TypedDict):
    code: int
    message: str
    data: NotRequired[Any]


class JsonRpcError(TypedDict):
    """A JSON-RPC error: what the transport's own refusals answer, with ``id`` null."""

    jsonrpc: Literal["2.0"]
    id: str | int | None
    error: ErrorObject


#: The statuses the transport answers itself, each with a JSON-RPC error body.
TRANSPORT_ERRORS: dict[int, object] = dict.fromkeys(
    (400, 403, 404, 406, 408, 409, 413, 503), JsonRpcError
)
#: What a stream of this transport carries: JSON-RPC messages, and the empty priming event.
STREAM_EVENTS: dict[str, object] = {"message": dict[str, Any] | Literal[""]}


class RpcError(Exception):
    """A JSON-RPC error answering one request (the HTTP exchange itself went well)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransportError(HttpException):
    """An HTTP error of the transport (no session, bad JSON, a foreign Origin...), with a
    JSON-RPC error as its body, as MCP clients expect to find it."""

    def __init__(
        self, status: int, message: str, *, code: int = INVALID_REQUEST, data: object = None
    ) -> None:
        super().__init__(status, message)
        self.code = code
        self.data = data

    def to_json(self) -> dict[str, object]:
        return error_message(None, self.code, self.message, self.data)


@Injectable()
class TransportErrors:
    """Gives the framework's own refusals (a body too large or too slow) the same shape."""

    async def intercept(self, context: ExecutionContext, call_next: CallNext) -> Any:
        try:
            return await call_next()
        except TransportError:
            raise
        except HttpException as error:
            raise TransportError(error.status, error.message) from error


@dataclass(frozen=True)
class Incoming:
    """One JSON-RPC message from the client, sorted: a request, a notification or a response."""

    method: str | None
    params: Mapping[str, Any]
    #: The request's id; ``None`` for a notification or a response.
    id: str | int | None

    @classmethod
    def parse(cls, body: bytes) -> Incoming:
        """Read a message; anything that is not one is a 400 (batches are not supported)."""
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise TransportError(400, "the body is not valid JSON", code=PARSE_ERROR) from None
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise TransportError(400, "the body must be one JSON-RPC 2.0 message (an object)")
        method = message.get("method")
        params = message.get("params", {})
        request_id = message.get("id")
        if method is None:
            if "result" in message or "error" in message:
                return cls(None, {}, None)  # a response: this server sends no requests
            raise TransportError(400, "a message needs a 'method', or a 'result' or 'error'")
        if not isinstance(method, str) or not isinstance(params, dict):
            raise TransportError(400, "'method' must be a string and 'params' an object")
        if "id" in message and (
            isinstance(request_id, bool) or not isinstance(request_id, str | int)
        ):
            raise TransportError(400, "a request's 'id' must be a string or an integer")
        return cls(method, params, request_id)

    @property
    def is_request(self) -> bool:
        return self.method is not None and self.id is not None


# -- event logs and sessions ---------------------------------------------------------------------


class EventLog:
    """The numbered messages of one stream, kept so that a client can resume after any of them.

    Position ``p`` is the ``p``-th message (from 1); the event id of position ``p`` is
    ``"<stream>-<p>"``, so ``Last-Event-ID`` names the stream and where in it to go on. At most
    ``limit`` messages are kept; a resume from before them starts at the oldest kept.
    """

    def __init__(self, stream: str, limit: int | None = None) -> None:
        self.stream = stream
        self._messages: deque[Message] = deque(maxlen=limit)
        self._end = 0  # positions given so far
        self._closed = False
        self._changed = trio.Event()

    @property
    def end(self) -> int:
        """The last position given (0 before the first message)."""
        return self._end

    @property
    def closed(self) -> bool:
        """True once the stream has nothing more to say."""
        return self._closed

    def event_id(self, position: int) -> str:
        return f"{self.stream}-{position}"

    def append(self, message: Message) -> None:
        if self._closed:
            raise RuntimeError(f"stream {self.stream} is closed; nothing can follow its end")
        self._messages.append(message)
        self._end += 1
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def after(self, position: int) -> list[tuple[int, Message]]:
        """The kept messages after ``position``, with their positions."""
        first = self._end - len(self._messages) + 1
        start = max(position + 1, first)
        return [(p, self._messages[p - first]) for p in range(start, self._end + 1)]

    def response(self) -> Message | None:
        """The stream's last message if it answers a request (has a result or an error)."""
        if self._messages and ("result" in self._messages[-1] or "error" in self._messages[-1]):
            return self._messages[-1]
        return None

    async def wait_beyond(self, position: int) -> None:
        """Return once there is a message after ``position`` or the stream is closed."""
        if position >= self._end and not self._closed:
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@dataclass(eq=False)
class Session:
    """One client's session: its version, its streams, the tool calls it has running."""

    id: str
    protocol_version: str
    #: The stream for messages the server sends unasked (``GET /mcp``), stream ``"0"``.
    standalone: EventLog
    #: Response streams of tool calls, by stream id, oldest first.
    calls: dict[str, EventLog] = field(default_factory=dict)
    #: The cancel scope of each running call, by the request id that started it.
    running: dict[str | int, trio.CancelScope] = field(default_factory=dict)
    log_level: str = "info"
    open_streams: int = 0
    standalone_open: bool = False
    ended: bool = False
    last_seen: float = field(default_factory=trio.current_time)
    _next_stream: int = 1

    #: Completed calls' streams kept for resumption; older ones are forgotten.
    KEPT_CALLS = 64

    def new_call_log(self) -> EventLog:
        log = EventLog(str(self._next_stream))
        self._next_stream += 1
        self.calls[log.stream] = log
        done = [stream for stream, kept in self.calls.items() if kept.closed]
        for stream in done[: max(0, len(self.calls) - self.KEPT_CALLS)]:
            del self.calls[stream]
        return log

    def log_named(self, stream: str) -> EventLog | None:
        return self.standalone if stream == self.standalone.stream else self.calls.get(stream)

    def priming(self) -> bool:
        return self.protocol_version >= PRIMING_SINCE

    def wants_log(self, level: str) -> bool:
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(self.log_level)

    def end(self) -> None:
        """End the session: its tool calls are cancelled and its streams end."""
        self.ended = True
        for scope in self.running.values():
            scope.cancel()
        self.standalone.close()


# -- tools -----------------------------------------------------------------------------------------

TOOLS: list[dict[str, Any]] = [
    {
        "name": "add",
        "description": "Add two numbers; the sum comes back as text.",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
    {
        "name": "countdown",
        "description": "Count down from n, with one progress notification per step.",
        "inputSchema": {
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 0}},
            "required": ["n"],
        },
    },
]


class ToolError(Exception):
    """A tool's failure, reported to the model as a result with ``isError`` (not a crash)."""


def text_result(text: str, *, is_error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def _number(arguments: Mapping[str, Any], name: str) -> float:
    value = arguments.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ToolError(f"argument {name!r} must be a finite number, got {value!r}")
    return value


def _integer(arguments: Mapping[str, Any], name: str, *, low: int, high: int) -> int:
    value = arguments.get(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ToolError(f"argument {name!r} must be an integer from {low} to {high}, got {value!r}")
    return value


@dataclass
class McpStats:
    """What the server has done; the tests read it."""

    sessions_opened: int = 0
    calls_started: int = 0
    #: Calls stopped before their answer (``notifications/cancelled``, session end, shutdown).
    calls_cancelled: int = 0
    #: Streams resumed with ``Last-Event-ID``.
    resumed: int = 0


# -- the server ------------------------------------------------------------------------------------


@Injectable()
class McpServer:
    """Sessions, their streams and their tool calls; the protocol without HTTP.

    An async context manager, entered at the app's startup: its nursery owns every tool call
    (a call outlives the request that started it, so that a dropped stream can be resumed)
    and the task that ends idle sessions, and it cancels them all at shutdown.
    """

    def __init__(self, config: McpConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.stats = McpStats()
        self._nursery: trio.Nursery | None = None
        self._exit_stack = AsyncExitStack()

    async def __aenter__(self) -> McpServer:
        self._nursery = await self._exit_stack.enter_async_context(trio.open_nursery())
        self._nursery.start_soon(self._end_idle_sessions)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        for session in list(self.sessions.values()):
            self.end_session(session)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        return await self._exit_stack.__aexit__(exc_type, exc, tb)

    # -- sessions

    def open_session(self, requested_version: object) -> Session:
        if len(self.sessions) >= self.config.max_sessions:
            raise TransportError(503, "too many sessions; try again later")
        version = requested_version if requested_version in PROTOCOL_VERSIONS else None
        session = Session(
            id=secrets.token_urlsafe(24),
            protocol_version=str(version or PROTOCOL_VERSIONS[-1]),
            standalone=EventLog("0", self.config.replay_limit),
        )
        self.sessions[session.id] = session
        self.stats.sessions_opened += 1
        return session

    def session_for(self, request: Request) -> Session:
        """The request's session: 400 without ``Mcp-Session-Id``, 404 if it is not (or no
        longer) one of ours."""
        return self.session(request.headers.get(SESSION_HEADER.lower()))

    def session(self, session_id: str | None) -> Session:
        """The session of this id; 400 without one, 404 for one that is not (or no longer)
        ours."""
        if session_id is None:
            raise TransportError(
                400, f"the {SESSION_HEADER} header is required; send initialize first"
            )
        session = self.sessions.get(session_id)
        if session is None:
            raise TransportError(404, "the session has ended or never existed; initialize anew")
        session.last_seen = trio.current_time()
        return session

    def end_session(self, session: Session) -> None:
        session.end()
        self.sessions.pop(session.id, None)

    async def _end_idle_sessions(self) -> None:
        timeout = self.config.session_idle_timeout
        while True:
            await trio.sleep(min(timeout / 2, 30.0))
            now = trio.current_time()
            for session in list(self.sessions.values()):
                busy = session.open_streams or session.running
                if not busy and now - session.last_seen > timeout:
                    self.end_session(session)

    # -- requests

    def answer(self, session: Session, message: Incoming) -> Message:
        """The answer to a request that needs no stream."""
        try:
            return result_message(message.id, self._quick(session, message))
        except RpcError as error:
            return error_message(message.id, error.code, error.message)

    def _quick(self, session: Session, message: Incoming) -> Mapping[str, Any]:
        if message.method == "ping":
            return {}
        if message.method == "tools/list":
            return {"tools": TOOLS}
        if message.method == "logging/setLevel":
            level = message.params.get("level")
            if level not in LOG_LEVELS:
                raise RpcError(INVALID_PARAMS, f"'level' must be one of {', '.join(LOG_LEVELS)}")
            session.log_level = level
            return {}
        raise RpcError(METHOD_NOT_FOUND, f"method {message.method!r} is not supported")

    def initialize_result(self, session: Session) -> dict[str, Any]:
        return {
            "protocolVersion": session.protocol_version,
            "capabilities": {"tools": {"listChanged": False}, "logging": {}},
            "serverInfo": SERVER_INFO,
        }

    def notify(self, session: Session, message: Incoming) -> None:
        """A notification from the client: only a cancellation needs doing."""
        if message.method == "notifications/cancelled":
            request_id = message.params.get("requestId")
            if isinstance(request_id, str | int) and request_id in session.running:
                session.running[request_id].cancel()

    def start_call(self, session: Session, message: Incoming) -> EventLog:
        """Start a ``tools/call`` in the server's nursery; its messages go to the log returned."""
        assert self._nursery is not None
        assert message.id is not None
        if message.id in session.running:
            raise TransportError(400, f"request id {message.id!r} is already running")
        log = session.new_call_log()
        scope = trio.CancelScope()
        session.running[message.id] = scope
        self.stats.calls_started += 1
        self._nursery.start_soon(self._run_call, session, message, log, scope)
        return log

    async def call(self, session: Session, message: Incoming, log: EventLog | None) -> Message:
        """Run a ``tools/call`` to its answer; progress goes to ``log`` if there is one."""
        params = message.params
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            return error_message(message.id, INVALID_PARAMS, "'arguments' must be an object")
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        try:
            if name == "add":
                total = _number(arguments, "a") + _number(arguments, "b")
                result = text_result(f"{total:g}")
            elif name == "countdown":
                result = await self._countdown(arguments, token if log else None, log)
            else:
                return error_message(message.id, INVALID_PARAMS, f"unknown tool {name!r}")
        except ToolError as error:
            result = text_result(str(error), is_error=True)
        self._log(session, "info", f"{name} answered: {result['content'][0]['text']}")
        return result_message(message.id, result)

    async def _countdown(
        self, arguments: Mapping[str, Any], token: object, log: EventLog | None
    ) -> dict[str, Any]:
        n = _integer(arguments, "n", low=0, high=self.config.max_countdown)
        for step in range(1, n + 1):
            await trio.sleep(self.config.step_delay)
            if log is not None and token is not None:
                params = {"progressToken": token, "progress": step, "total": n}
                params["message"] = f"{n - step} to go"
                log.append(notification("notifications/progress", params))
        return text_result(f"counted down from {n}")

    async def _run_call(
        self, session: Session, message: Incoming, log: EventLog, scope: trio.CancelScope
    ) -> None:
        assert message.id is not None
        try:
            with scope:
                try:
                    answer = await self.call(session, message, log)
                except Exception:
                    # A bug in a tool ends its call, not the server: the client gets an error,
                    # the log gets the traceback.
                    logger.exception("tools/call %r failed", message.params.get("name"))
                    answer = error_message(message.id, INTERNAL_ERROR, "the tool failed")
                log.append(answer)
        finally:
            if log.response() is None:
                self.stats.calls_cancelled += 1
            del session.running[message.id]
            log.close()

    def _log(self, session: Session, level: str, text: str) -> None:
        """A log message on the session's ``GET`` stream, if its level is wanted."""
        if session.wants_log(level) and not session.standalone.closed:
            params = {"level": level, "logger": "tools", "data": text}
            session.standalone.append(
                {"jsonrpc": "2.0", "method": "notifications/message", "params": params}
            )

    # -- streams

    async def follow(self, session: Session, log: EventLog, after: int) -> AsyncIterator[SseEvent]:
        """The events of ``log`` after position ``after``, then each new one until it closes."""
        standalone = log is session.standalone
        session.open_streams += 1
        session.standalone_open |= standalone
        try:
            if session.priming():
                # An id before any data: a client that loses the stream now can still resume.
                yield SseEvent(data="", id=log.event_id(after), retry=self.config.retry_ms)
            position = after
            while True:
                for kept, message in log.after(position):
                    yield SseEvent(data=message, id=log.event_id(kept))
                    position = kept
                if log.closed:
                    return
                await log.wait_beyond(position)
        finally:
            session.open_streams -= 1
            session.standalone_open &= not standalone
            session.last_seen = trio.current_time()


# -- HTTP --------------------------------------------------------------------------------------


def check_origin(request: Request, allowed: frozenset[str]) -> None:
    """403 for a request from a page of a foreign site (DNS rebinding); no Origin is fine."""
    origin = request.headers.get("origin")
    if origin is None or origin in allowed:
        return
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        host = None
    if host not in LOOPBACK_HOSTS:
        raise TransportError(403, f"requests from origin {origin!r} are not allowed")


def check_version(request: Request) -> None:
    """400 for a protocol version this server does not speak, naming those it does (which
    tells a client probing for a newer protocol to fall back to ``initialize``)."""
    version = request.headers.get(VERSION_HEADER)
    if version is not None and version not in PROTOCOL_VERSIONS:
        raise TransportError(
            400,
            f"unsupported protocol version {version!r}",
            code=UNSUPPORTED_PROTOCOL_VERSION,
            data={"supported": list(PROTOCOL_VERSIONS), "requested": version},
        )


@Controller("mcp")
@UseInterceptors(TransportErrors)
class McpController:
    """The Streamable HTTP transport: ``POST``, ``GET`` and ``DELETE`` on one path."""

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.config = server.config

    @Sse(method="POST", events=STREAM_EVENTS, responses=TRANSPORT_ERRORS)
    async def post(self, request: Annotated[Request, Req()]) -> Response | EventSourceResponse:
        """One JSON-RPC message: a request is answered with JSON or an event stream, anything
        else with 202."""
        check_origin(request, self.config.allowed_origins)
        wants_stream = request.best_match("text/event-stream") is not None
        wants_json = request.best_match("application/json") is not None
        if not (wants_json or wants_stream):
            raise TransportError(406, "accept application/json or text/event-stream (or both)")
        message = Incoming.parse(await request.body())
        if message.method == "initialize" and message.is_request:
            session = self.server.open_session(message.params.get("protocolVersion"))
            answer = result_message(message.id, self.server.initialize_result(session))
            return JSONResponse(answer, headers={SESSION_HEADER: session.id})
        check_version(request)
        session = self.server.session_for(request)
        if not message.is_request:
            self.server.notify(session, message)
            return Response(status=202)
        if message.method != "tools/call":
            return JSONResponse(self.server.answer(session, message))
        if not wants_stream:
            return JSONResponse(await self.server.call(session, message, None))
        log = self.server.start_call(session, message)
        return self._stream(session, log, after=0)

    @Sse(events=STREAM_EVENTS, responses=TRANSPORT_ERRORS)
    async def get(self, request: Annotated[Request, Req()]) -> EventSourceResponse:
        """The server's own stream, or the rest of a dropped one named by ``Last-Event-ID``."""
        check_origin(request, self.config.allowed_origins)
        if request.best_match("text/event-stream") is None:
            raise TransportError(406, "this stream is text/event-stream; accept it")
        check_version(request)
        session = self.server.session_for(request)
        last_event_id = request.headers.get("last-event-id")
        if last_event_id is None:
            if session.standalone_open:
                raise TransportError(409, "this session's stream is already open")
            return self._stream(session, session.standalone, after=session.standalone.end)
        stream, _, position = last_event_id.rpartition("-")
        log = session.log_named(stream)
        if log is None or not position.isdigit() or int(position) > log.end:
            raise TransportError(404, f"no stream of this session has event {last_event_id!r}")
        if log.closed and int(position) >= log.end:
            raise TransportError(404, f"the stream of event {last_event_id!r} has ended")
        if log is session.standalone and session.standalone_open:
            raise TransportError(409, "this session's stream is already open")
        self.server.stats.resumed += 1
        return self._stream(session, log, after=int(position))

    @Delete(responses=TRANSPORT_ERRORS)
    def delete(
        self,
        request: Annotated[Request, Req()],
        session_id: Annotated[str, Headers(SESSION_HEADER)],
    ) -> Response:
        """End the session: its calls stop, its streams end, its id is refused from now on."""
        check_origin(request, self.config.allowed_origins)
        self.server.end_session(self.server.session(session_id))
        return Response(status=204)

    def _stream(self, session: Session, log: EventLog, *, after: int) -> EventSourceResponse:
        events = self.server.follow(session, log, after)
        return EventSourceResponse(events, max_lifetime=self.config.stream_window)


def build_app(config: McpConfig | None = None, *, settings: Settings | None = None) -> DwexApp:
    """The MCP app; ``config`` defaults to `McpConfig.from_env`."""

    @Module(
        controllers=[McpController],
        providers=[
            McpServer,
            TransportErrors,
            Provider(McpConfig, use_value=config or McpConfig.from_env()),
        ],
    )
    class McpModule:
        pass

    return create_app(McpModule, settings=settings)


app = build_app()
