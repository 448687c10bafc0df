"""An OpenAI-compatible chat completions server, with a deterministic "echo" model.

``POST /v1/chat/completions`` answers as OpenAI's API does, so the official ``openai`` client
(and anything else that speaks the protocol) can be pointed at it unchanged. The model replies
with the last user message's content, word by word: with ``"stream": true`` as an event
stream of ``chat.completion.chunk`` objects ending with ``data: [DONE]``; without it, as one
``chat.completion``. ``GET /`` is a page that streams the reply in a browser (``fetch()``
and a ``ReadableStream``: ``EventSource`` can only send GETs).

Run it and ask::

    trio-dwex run examples.chat:app
    curl -N localhost:9929/v1/chat/completions -H "Authorization: Bearer sk-test" \\
        -H "Content-Type: application/json" -d '{"model": "echo", "stream": true,
        "messages": [{"role": "user", "content": "Hi there"}]}'

or from Python::

    client = openai.OpenAI(base_url="http://localhost:9929/v1", api_key="sk-test")
    for chunk in client.chat.completions.create(model="echo", messages=[...], stream=True): ...

Environment: ``CHAT_API_KEY`` is the one key accepted (default ``sk-test``), as
``Authorization: Bearer <key>``; ``CHAT_TOKEN_DELAY`` is the seconds the model takes per word
(default 0.02), so that a stream can be watched, or held open by a test; ``CHAT_RUNS`` is where
answers are kept while they run (default ``memory://``; ``redis://host:port/db`` for several
workers or hosts).

**An answer outlives its connection.** A streamed answer is a run (`Runs`): the model goes on
when the client leaves, and the response says which run it is (``X-Run-Id``); every event has an
id. ``GET /v1/runs/{id}/events`` (with ``Last-Event-ID``) picks the answer up where the client
lost it, on any worker; ``POST /v1/runs/{id}/cancel`` stops it; ``GET /v1/runs/{id}`` tells how
it is going. ``"stream_options": {"resumable": false}`` ties the answer to its connection
instead: the model stops when the client leaves, and waits when the client reads slowly
(docs/runs.md says when to choose which).

The route is one ``@Sse(..., method="POST")`` handler that returns either the events (an async
generator) or the completion (a ``JSONResponse``): see docs/streaming-any-method.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import trio

from trio_dwex import (
    Body,
    CallNext,
    Constraint,
    Controller,
    DwexApp,
    EventSourceResponse,
    ExecutionContext,
    Get,
    Headers,
    HttpException,
    Injectable,
    JSONResponse,
    Module,
    Param,
    Post,
    Provider,
    Req,
    Request,
    Response,
    Settings,
    Sse,
    SseEvent,
    UseGuards,
    UseInterceptors,
    create_app,
)
from trio_dwex.broadcast import RESET_EVENT, RUN_ENDED_EVENT, RUN_ID_PATTERN, RunInfo, Runs

#: The model this server serves (any name is accepted, and echoed back).
MODEL = "echo"
#: The browser page served at ``GET /``.
PAGE = Path(__file__).with_name("chat.html")


@dataclass(frozen=True)
class ChatConfig:
    """The server's settings, read from the environment by `from_env`."""

    #: The API key clients send as ``Authorization: Bearer <key>``.
    api_key: str = "sk-test"
    #: Seconds the model takes per word.
    token_delay: float = 0.02
    #: Where answers are kept while they run: ``memory://``, or ``redis://host:port/db``.
    runs_url: str = "memory://"
    #: Answers one key may have running at once, per worker; more are answered 429.
    max_runs_per_key: int = 100
    #: Seconds a finished answer can still be read again (``GET /v1/runs/{id}/events``).
    keep_answers: float = 300.0
    #: Seconds an answer may take; a longer one is stopped, and fails.
    max_answer_seconds: float = 900.0

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("the API key must not be empty")
        if not self.token_delay >= 0:  # also refuses NaN
            raise ValueError(f"the token delay must be >= 0 seconds, got {self.token_delay}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ChatConfig:
        """``CHAT_API_KEY``, ``CHAT_TOKEN_DELAY`` and ``CHAT_RUNS``, with the defaults above."""
        delay = environ.get("CHAT_TOKEN_DELAY", str(cls.token_delay))
        try:
            token_delay = float(delay)
        except ValueError:
            raise ValueError(f"CHAT_TOKEN_DELAY must be seconds, got {delay!r}") from None
        return cls(
            api_key=environ.get("CHAT_API_KEY", cls.api_key),
            token_delay=token_delay,
            runs_url=environ.get("CHAT_RUNS", cls.runs_url),
        )


# -- what the API sends, as types (for the OpenAPI document and the event check) -----------------


class ChunkDelta(TypedDict, total=False):
    role: str
    content: str


class ChunkChoice(TypedDict):
    index: int
    delta: ChunkDelta
    logprobs: None
    finish_reason: Literal["stop"] | None


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionChunk(TypedDict):
    """One ``chat.completion.chunk`` of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[Usage]


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(TypedDict):
    """OpenAI's error body."""

    error: ErrorDetail


#: The errors the API answers in OpenAI's shape (see `OpenAIErrors`), for the document.
OPENAI_ERRORS: dict[int, object] = dict.fromkeys((400, 401, 408, 413, 415), OpenAIErrorBody)


# -- errors in OpenAI's shape --------------------------------------------------------------------


class OpenAIError(HttpException):
    """An HTTP error whose body is OpenAI's: ``{"error": {"message", "type", "param", "code"}}``.

    Clients of the API (the ``openai`` package among them) read the message from there.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.type = type
        self.param = param
        self.code = code

    def to_json(self) -> dict[str, object]:
        """OpenAI's error body."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": error}


@Injectable()
class OpenAIErrors:
    """Answers the framework's own errors (a body that is not JSON, too large, or not sent as
    JSON) in OpenAI's shape too, so a client finds every message where it looks."""

    async def intercept(self, context: ExecutionContext, call_next: CallNext) -> Any:
        try:
            return await call_next()
        except OpenAIError:
            raise
        except HttpException as error:
            raise OpenAIError(error.status, error.message, headers=error.headers) from error


@Injectable()
class ApiKeyGuard:
    """Lets a request through only with ``Authorization: Bearer <the API key>``.

    A wrong or missing key is a 401 in OpenAI's shape, before any stream starts.
    """

    def __init__(self, config: ChatConfig) -> None:
        self.key = config.api_key.encode()

    def can_activate(self, context: ExecutionContext) -> bool:
        scheme, _, key = context.request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise OpenAIError(
                401,
                "no API key was given; send it as 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )
        # Constant time: how long the comparison takes says nothing about a guess.
        if not secrets.compare_digest(key.strip().encode("latin-1"), self.key):
            raise OpenAIError(401, "the API key is not valid", code="invalid_api_key")
        # Whose runs these are: a digest of the key, never the key itself (it is stored with
        # each run, in Redis perhaps).
        context.lease.owner = "key-" + hashlib.sha256(self.key).hexdigest()[:16]
        return True


# -- the model -------------------------------------------------------------------------------


def words_of(text: str) -> list[str]:
    """``text`` cut into words, each with the spaces that follow it: joined, they give it back.

    Spaces before the first word stay with it, and text without a word is one piece (no piece
    at all if it is empty).
    """
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


@dataclass
class ModelStats:
    """What the model has done; the tests read it to see that a cancelled reply stopped."""

    #: Replies being generated now.
    active: int = 0
    #: Replies generated to their end.
    finished: int = 0
    #: Replies stopped before their end (the client left, the server shut down).
    stopped: int = 0
    #: Words produced, over all replies.
    words: int = 0


@Injectable()
class EchoModel:
    """A deterministic model: its reply is the prompt, one word every ``token_delay`` seconds."""

    def __init__(self, config: ChatConfig) -> None:
        self.token_delay = config.token_delay
        self.stats = ModelStats()

    async def generate(self, prompt: str) -> AsyncGenerator[str, None]:
        """The reply, word by word (see `words_of`); its ``finally`` runs however it ends."""
        self.stats.active += 1
        finished = False
        try:
            for word in words_of(prompt):
                await trio.sleep(self.token_delay)
                self.stats.words += 1
                yield word
            finished = True
        finally:
            self.stats.active -= 1
            if finished:
                self.stats.finished += 1
            else:
                self.stats.stopped += 1


# -- the request -----------------------------------------------------------------------------

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True)
class ChatRequest:
    """The part of a chat completion request this server reads; other fields are ignored, as
    a server that does not implement a sampling option ignores it."""

    model: str
    #: The last user message's text: the echo model's reply.
    prompt: str
    #: Words in every message, a stand-in for the prompt's token count.
    prompt_words: int
    stream: bool = False
    include_usage: bool = False
    #: A streamed answer is a run that outlives its connection, unless the request says
    #: ``"stream_options": {"resumable": false}``.
    resumable: bool = True
    #: When the request was made, as the ``created`` of every object of its answer.
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = field(default_factory=lambda: f"chatcmpl-{secrets.token_hex(12)}")

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ChatRequest:
        """Read a request body; a field that is missing or wrong is a 400 naming it."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("model", "'model' is required: a model name such as 'echo'")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages", "'messages' must be a non-empty array of messages")
        texts = [_message_text(message, index) for index, message in enumerate(messages)]
        users = [
            text for message, text in zip(messages, texts, strict=True) if message["role"] == "user"
        ]
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _invalid("stream", "'stream' must be true or false")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise _invalid("stream_options", "'stream_options' must be an object")
        include_usage = (options or {}).get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise _invalid("stream_options", "'stream_options.include_usage' must be a bool")
        resumable = (options or {}).get("resumable", True)
        if not isinstance(resumable, bool):
            raise _invalid("stream_options", "'stream_options.resumable' must be a bool")
        if body.get("n", 1) != 1:
            raise _invalid("n", "this server makes one choice per request: 'n' must be 1")
        return cls(
            model=model,
            prompt=users[-1] if users else "",
            prompt_words=sum(len(words_of(text)) for text in texts),
            stream=bool(stream),
            include_usage=include_usage,
            resumable=resumable,
        )


def _invalid(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, message, param=param)


def _message_text(message: object, index: int) -> str:
    """A message's text: its ``content`` string, or the text parts of a content array."""
    where = f"messages[{index}]"
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise _invalid(where, f"{where} must be an object with a role ({', '.join(sorted(ROLES))})")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    raise _invalid(f"{where}.content", f"{where}.content must be a string or an array of parts")


# -- the API ---------------------------------------------------------------------------------


class RunView(TypedDict):
    """A run, as ``GET /v1/runs/{id}`` and its cancel answer it."""

    id: str
    status: Literal["running", "completed", "cancelled", "failed"]
    error: str | None


#: The errors of the runs' routes: no such run (or another key's), expired, bad Last-Event-ID.
RUN_ERRORS: dict[int, object] = dict.fromkeys((404, 410), OpenAIErrorBody)


#: A run's id in a path: anything else is a 400 before the handler runs.
RunId = Annotated[str, Param(), Constraint(pattern=RUN_ID_PATTERN)]

#: What a streamed answer sends: chunks, then the text "[DONE]" as is (OpenAI's stream mixes
#: JSON and text), or an error in OpenAI's shape if the run was cancelled or failed; and a
#: ``reset`` if a ``Last-Event-ID`` is older than what the run keeps.
ANSWER_EVENTS: dict[str, object] = {
    "message": ChatCompletionChunk | Literal["[DONE]"] | OpenAIErrorBody,
    RESET_EVENT: dict[str, Any],
}


@Controller("v1")
@UseGuards(ApiKeyGuard)
@UseInterceptors(OpenAIErrors)
class ChatController:
    def __init__(self, model: EchoModel, runs: Runs) -> None:
        self.model = model
        self.runs = runs

    @Sse("chat/completions", method="POST", events=ANSWER_EVENTS, responses=OPENAI_ERRORS)
    async def completions(
        self, body: Annotated[dict[str, Any], Body()], request: Annotated[Request, Req()]
    ) -> AsyncIterator[SseEvent] | EventSourceResponse | JSONResponse:
        """A chat completion: streamed if the request says ``"stream": true``, else JSON.

        A streamed answer runs on its own (``X-Run-Id`` names the run), unless the request
        says ``"stream_options": {"resumable": false}``.
        """
        chat_request = ChatRequest.parse(body)
        if chat_request.stream and not chat_request.resumable:
            return self.chunks(chat_request)  # tied to this connection
        if chat_request.stream:
            run_id = await self.runs.start(self.chunks(chat_request), owner=request.lease.owner)
            return answer_stream(run_id, await self.runs.events(run_id))
        async with aclosing(self.model.generate(chat_request.prompt)) as words:
            reply = "".join([word async for word in words])
        return JSONResponse(
            {
                "id": chat_request.id,
                "object": "chat.completion",
                "created": chat_request.created,
                "model": chat_request.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage(chat_request, len(words_of(reply))),
            }
        )

    @Sse("runs/{run_id}/events", events=ANSWER_EVENTS, responses=OPENAI_ERRORS | RUN_ERRORS)
    async def run_events(
        self,
        run_id: RunId,
        request: Annotated[Request, Req()],
        last_event_id: Annotated[str | None, Headers("last-event-id")] = None,
    ) -> EventSourceResponse:
        """A streamed answer again: from its start, or after ``Last-Event-ID``."""
        events = await self.runs.events(
            run_id, last_event_id=last_event_id, owner=request.lease.owner
        )
        return answer_stream(run_id, events)

    @Get("runs/{run_id}", responses=OPENAI_ERRORS | RUN_ERRORS)
    async def run_status(self, run_id: RunId, request: Annotated[Request, Req()]) -> RunView:
        """How a streamed answer is going: ``running``, ``completed``, ``cancelled``, ``failed``."""
        return run_view(await self.runs.status(run_id, owner=request.lease.owner))

    @Post("runs/{run_id}/cancel", responses=OPENAI_ERRORS | RUN_ERRORS)
    async def cancel_run(self, run_id: RunId, request: Annotated[Request, Req()]) -> RunView:
        """Stop a streamed answer: the model stops, its readers get an error and their end."""
        return run_view(await self.runs.cancel(run_id, owner=request.lease.owner))

    async def chunks(self, request: ChatRequest) -> AsyncIterator[SseEvent]:
        """The streamed answer: the role, a chunk per word, the finish reason, then ``[DONE]``."""

        def chunk(delta: dict[str, str], finish_reason: str | None = None) -> SseEvent:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return SseEvent(data=completion_chunk(request, [choice]))

        yield chunk({"role": "assistant", "content": ""})
        count = 0
        # aclosing: if the client leaves mid-answer, the model's generator is closed now
        # (its finally runs), not whenever the garbage collector finds it.
        async with aclosing(self.model.generate(request.prompt)) as words:
            async for word in words:
                count += 1
                yield chunk({"content": word})
        yield chunk({}, "stop")
        if request.include_usage:
            yield SseEvent(data={**completion_chunk(request, []), "usage": usage(request, count)})
        yield SseEvent(data="[DONE]")  # a str is sent as is: the end marker OpenAI clients wait for

    @Get("models", responses=OPENAI_ERRORS)
    def models(self) -> dict[str, Any]:
        """The one model, as ``GET /v1/models`` lists models."""
        entry = {"id": MODEL, "object": "model", "created": 0, "owned_by": "trio-dwex"}
        return {"object": "list", "data": [entry]}


def run_view(info: RunInfo) -> RunView:
    return {"id": info.id, "status": info.status, "error": info.error}


def answer_stream(run_id: str, events: AsyncIterator[SseEvent]) -> EventSourceResponse:
    """A run's events as OpenAI's stream, with the run's id in ``X-Run-Id``."""
    return EventSourceResponse(as_openai_stream(events), headers={"X-Run-Id": run_id})


async def as_openai_stream(events: AsyncIterator[SseEvent]) -> AsyncIterator[SseEvent]:
    """A run's events, each with its id, its ``run.ended`` event said as OpenAI would: nothing
    after a completed answer (``[DONE]`` was its last word), an error otherwise."""
    async with aclosing(events):  # type: ignore[type-var]  # an async generator
        async for event in events:
            if event.event != RUN_ENDED_EVENT:
                yield event
                continue
            ended = json.loads(str(event.data))
            if ended["status"] != "completed":
                message = f"the answer was {ended['status']}: {ended['error']}"
                error = {"message": message, "type": "server_error", "param": None, "code": None}
                yield SseEvent(data={"error": error}, id=event.id)


def completion_chunk(request: ChatRequest, choices: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object; every chunk of one answer shares its id and time."""
    return {
        "id": request.id,
        "object": "chat.completion.chunk",
        "created": request.created,
        "model": request.model,
        "choices": choices,
    }


def usage(request: ChatRequest, completion_words: int) -> dict[str, int]:
    """Token counts, with words standing in for tokens."""
    return {
        "prompt_tokens": request.prompt_words,
        "completion_tokens": completion_words,
        "total_tokens": request.prompt_words + completion_words,
    }


@Controller()
class PageController:
    @Get()
    def page(self) -> Response:
        """The chat page: a form that streams the reply with fetch() (examples/chat.html)."""
        return Response(PAGE.read_bytes(), media_type="text/html; charset=utf-8")


def build_app(config: ChatConfig | None = None, *, settings: Settings | None = None) -> DwexApp:
    """The chat app; ``config`` defaults to `ChatConfig.from_env`."""
    config = config or ChatConfig.from_env()

    @Module(
        controllers=[ChatController, PageController],
        providers=[
            EchoModel,
            ApiKeyGuard,
            OpenAIErrors,
            Provider(ChatConfig, use_value=config),
            Provider(
                Runs,
                use_factory=lambda: Runs.from_url(
                    config.runs_url,
                    max_runs_per_owner=config.max_runs_per_key,
                    keep_finished=config.keep_answers,
                    max_duration=config.max_answer_seconds,
                ),
            ),
        ],
    )
    class ChatModule:
        pass

    return create_app(ChatModule, settings=settings)


app = build_app()
