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
(default 0.02), so that a stream can be watched, or held open by a test.

The route is one ``@Sse(..., method="POST")`` handler that returns either the events (an async
generator) or the completion (a ``JSONResponse``): see docs/streaming-any-method.md.
"""

from __future__ import annotations

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
    Controller,
    DwexApp,
    ExecutionContext,
    Get,
    HttpException,
    Injectable,
    JSONResponse,
    Module,
    Provider,
    Response,
    Settings,
    Sse,
    SseEvent,
    UseGuards,
    UseInterceptors,
    create_app,
)

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

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("the API key must not be empty")
        if not self.token_delay >= 0:  # also refuses NaN
            raise ValueError(f"the token delay must be >= 0 seconds, got {self.token_delay}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ChatConfig:
        """``CHAT_API_KEY`` and ``CHAT_TOKEN_DELAY``, with the defaults above."""
        delay = environ.get("CHAT_TOKEN_DELAY", str(cls.token_delay))
        try:
            token_delay = float(delay)
        except ValueError:
            raise ValueError(f"CHAT_TOKEN_DELAY must be seconds, got {delay!r}") from None
        return cls(api_key=environ.get("CHAT_API_KEY", cls.api_key), token_delay=token_delay)


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
        if body.get("n", 1) != 1:
            raise _invalid("n", "this server makes one choice per request: 'n' must be 1")
        return cls(
            model=model,
            prompt=users[-1] if users else "",
            prompt_words=sum(len(words_of(text)) for text in texts),
            stream=bool(stream),
            include_usage=include_usage,
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


@Controller("v1")
@UseGuards(ApiKeyGuard)
@UseInterceptors(OpenAIErrors)
class ChatController:
    def __init__(self, model: EchoModel) -> None:
        self.model = model

    @Sse(
        "chat/completions",
        method="POST",
        # Chunks, then the text "[DONE]" as is: OpenAI's stream mixes JSON and text.
        events={"message": ChatCompletionChunk | Literal["[DONE]"]},
        responses=OPENAI_ERRORS,
    )
    async def completions(
        self, body: Annotated[dict[str, Any], Body()]
    ) -> AsyncIterator[SseEvent] | JSONResponse:
        """A chat completion: streamed if the request says ``"stream": true``, else JSON."""
        request = ChatRequest.parse(body)
        if request.stream:
            return self.chunks(request)
        async with aclosing(self.model.generate(request.prompt)) as words:
            reply = "".join([word async for word in words])
        return JSONResponse(
            {
                "id": request.id,
                "object": "chat.completion",
                "created": request.created,
                "model": request.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage(request, len(words_of(reply))),
            }
        )

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

    @Module(
        controllers=[ChatController, PageController],
        providers=[
            EchoModel,
            ApiKeyGuard,
            OpenAIErrors,
            Provider(ChatConfig, use_value=config or ChatConfig.from_env()),
        ],
    )
    class ChatModule:
        pass

    return create_app(ChatModule, settings=settings)


app = build_app()
