"""A handler's signature, analysed once into a :class:`CallPlan`, solved once per request.

The split follows FastAPI's ``get_dependant`` / ``solve_dependencies``: reading type hints and
``Annotated`` markers is slow and can fail, so it happens when the application is compiled,
and every mistake there is a :class:`~trio_dwex._errors.ConfigurationError` naming
``Controller.method`` and the parameter. What is left for each request is a loop over plain
data: look the value up, convert it, or raise a 400 that names the parameter and its source.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .._errors import BadRequestException, ConfigurationError, HttpException, clip
from ._convert import (
    ConversionError,
    JsonConverter,
    TextConverter,
    UnsupportedType,
    describe_json_error,
    is_optional,
    json_converter,
    strip_optional,
    text_converter,
)
from ._params import ParamMarker, ParamSource, RequestLike

__all__ = [
    "MAX_BODY_DEPTH",
    "CallPlan",
    "CallStyle",
    "ParamPlan",
    "analyse_handler",
    "invoke_endpoint",
    "solve_params",
]

#: The deepest nesting of arrays and objects a JSON body may have. Deeper bodies are answered
#: with a 400: real payloads are shallow, and a deep one is an attempt to exhaust the stack.
MAX_BODY_DEPTH: Final = 64

CallStyle = Literal["sync", "async", "async_gen"]
"""How a handler is called: a plain function, a coroutine function, an async generator function."""


class _NoDefault:
    """The type of :data:`NO_DEFAULT`: "the parameter has no default", distinct from None."""

    _instance: _NoDefault | None = None

    def __new__(cls) -> _NoDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()

_SOURCE_WORDS: Final[Mapping[ParamSource, str]] = {
    "query": "query parameter",
    "path": "path parameter",
    "header": "header",
    "body": "body",
    "request": "request",
}


@dataclass(frozen=True, slots=True)
class ParamPlan:
    """How to obtain one handler argument; plain data, built by :func:`analyse_handler`."""

    #: The Python parameter name: the keyword the handler is called with.
    name: str
    #: Where the value comes from.
    source: ParamSource
    #: The query key, path parameter name, or lower-case header name; None for body/request
    #: and for the whole-header mapping.
    key: str | None
    #: The value when the request has none, or :data:`NO_DEFAULT`.
    default: object
    #: ``T | None``: a missing value becomes None when there is no default.
    optional: bool = False
    #: ``list[T]`` query parameter: every value of a repeated key.
    many: bool = False
    #: Header parameter annotated as a mapping: receives every header.
    whole_mapping: bool = False
    #: Body parameter annotated ``bytes``: receives the raw body, not parsed.
    raw_body: bool = False
    #: Converter for text sources (query, path, header).
    text: TextConverter | None = None
    #: Converter for the parsed JSON body.
    json: JsonConverter | None = None

    @property
    def label(self) -> str:
        """How messages name this parameter: ``query parameter 'count'``."""
        word = _SOURCE_WORDS[self.source]
        return word if self.key is None else f"{word} {self.key!r}"


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything needed to call one handler; built once per handler, solved per request."""

    #: ``Controller.method``, for messages.
    qualname: str
    #: How the handler is called.
    style: CallStyle
    #: One entry per handler parameter after ``self``, in order.
    params: tuple[ParamPlan, ...]

    @property
    def path_param_names(self) -> frozenset[str]:
        """The path parameters the handler reads; each must appear in its route template."""
        return frozenset(p.key for p in self.params if p.source == "path" and p.key)


def _call_style(func: Any) -> CallStyle | Literal["sync_gen"]:
    if inspect.isasyncgenfunction(func):
        return "async_gen"
    if inspect.iscoroutinefunction(func):
        return "async"
    if inspect.isgeneratorfunction(func):
        return "sync_gen"
    return "sync"


def analyse_handler(func: Any, *, qualname: str, sse: bool) -> CallPlan:
    """Read ``func``'s parameters and markers into a :class:`CallPlan`.

    ``func`` is the unbound function defined in the controller class (its first parameter is
    ``self``). ``sse`` says whether it is an ``@Sse`` handler, which decides which kinds of
    function are allowed.

    Raises:
        ConfigurationError: a parameter without a marker, a marker that does not fit its
            annotation, an annotation the framework cannot convert to, or the wrong kind of
            function; the message names ``qualname`` and says what to write instead.
    """
    style = _call_style(func)
    if style == "sync_gen":
        fix = "write `async def` with `yield`" if sse else "use @Sse with an async generator"
        raise ConfigurationError(
            f"{qualname} is a sync generator function, which would block the event loop "
            f"between events; {fix}"
        )
    if style == "async_gen" and not sse:
        raise ConfigurationError(
            f"{qualname} is an async generator function but is routed with an HTTP method "
            "decorator; use @Sse(...) to stream events, or return a value instead of yielding"
        )
    try:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(inspect.unwrap(func), include_extras=True)
    except (NameError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read the signature of {qualname}: {exc}; annotations must name types "
            "importable from the handler's module"
        ) from exc
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ConfigurationError(
            f"{qualname} must be a method taking `self` first; a handler is a plain method of "
            "the controller class (no @staticmethod, no @classmethod)"
        )
    plans = tuple(_analyse_param(p, hints, qualname) for p in parameters[1:])
    if sum(plan.source == "body" for plan in plans) > 1:
        raise ConfigurationError(
            f"{qualname} has more than one Body() parameter; the body is one JSON document, so "
            "take it once (a dataclass or dict) and split it in the handler"
        )
    return CallPlan(qualname=qualname, style=style, params=plans)


def _analyse_param(
    parameter: inspect.Parameter, hints: Mapping[str, Any], qualname: str
) -> ParamPlan:
    where = f"parameter {parameter.name!r} of {qualname}"
    if parameter.kind not in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    ):
        raise ConfigurationError(
            f"{where} is {parameter.kind.description}; handlers are called with keyword "
            "arguments, so use ordinary or keyword-only parameters"
        )
    if isinstance(parameter.default, ParamMarker):
        raise ConfigurationError(
            f"{where} uses {parameter.default!r} as its default; write the marker in the "
            f"annotation instead: `{parameter.name}: Annotated[T, "
            f"{type(parameter.default).__name__}()]`"
        )
    annotation = hints.get(parameter.name, Any)
    markers: list[ParamMarker] = []
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *metadata = typing.get_args(annotation)
        markers = [item for item in metadata if isinstance(item, ParamMarker)]
    if not markers:
        raise ConfigurationError(
            f"{where} says nothing about where its value comes from; annotate it with a "
            f"marker, e.g. `{parameter.name}: Annotated[str, Query()]` (or Param(), "
            "Headers(), Body(), Req())"
        )
    if len(markers) > 1:
        raise ConfigurationError(
            f"{where} has {len(markers)} parameter markers ({markers}); keep exactly one"
        )
    marker = markers[0]
    default = NO_DEFAULT if parameter.default is inspect.Parameter.empty else parameter.default
    try:
        return _plan_for(parameter.name, marker, annotation, default)
    except UnsupportedType as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _is_mapping_type(tp: object) -> bool:
    return tp in (dict, Mapping) or typing.get_origin(tp) in (dict, collections.abc.Mapping)


def _plan_for(name: str, marker: ParamMarker, annotation: object, default: object) -> ParamPlan:
    optional = is_optional(annotation)
    inner = strip_optional(annotation)
    source = marker.source
    if source == "request":
        return ParamPlan(name, source, None, default)
    if source == "body":
        if inner is bytes:
            return ParamPlan(name, source, None, default, optional=optional, raw_body=True)
        return ParamPlan(
            name, source, None, default, optional=optional, json=json_converter(annotation)
        )
    if source == "header" and marker.name is None and _is_mapping_type(inner):
        return ParamPlan(name, source, None, default, optional=optional, whole_mapping=True)
    if source == "header":
        key = marker.name or name.replace("_", "-").lower()
    else:
        key = marker.name or name
    many = typing.get_origin(inner) is list or inner is list
    if many:
        if source != "query":
            raise UnsupportedType(
                f"list[...] is only for query parameters (a repeated key); a {source} value "
                "is a single string"
            )
        args = typing.get_args(inner)
        item = strip_optional(args[0]) if args else str
        return ParamPlan(
            name, source, key, default, optional=optional, many=True, text=text_converter(item)
        )
    return ParamPlan(name, source, key, default, optional=optional, text=text_converter(inner))


# -- per request -------------------------------------------------------------------------------


async def solve_params(plan: CallPlan, request: RequestLike) -> dict[str, Any]:
    """The keyword arguments to call the handler of ``plan`` with, for ``request``.

    Values are converted to the annotated types. A missing value takes the parameter's default;
    without one, ``T | None`` gets None, ``list[T]`` an empty list, and anything else is
    required. A scalar query parameter given several times takes the last value.

    Raises:
        BadRequestException: a value that does not convert, a missing required value, or a
            body that is not JSON (or is empty when required, or nested deeper than
            :data:`MAX_BODY_DEPTH`); the message names the parameter and where it comes from,
            e.g. ``query parameter 'count' must be an integer, got 'abc'``.
        HttpException: 415 for a non-empty body read as JSON whose ``Content-Type`` is not
            ``application/json`` or ``application/*+json`` (or is missing).
    """
    kwargs: dict[str, Any] = {}
    query: dict[str, list[str]] | None = None
    for param in plan.params:
        source = param.source
        if source == "request":
            kwargs[param.name] = request
            continue
        if source == "body":
            kwargs[param.name] = await _solve_body(param, request)
            continue
        if param.whole_mapping:
            kwargs[param.name] = dict(request.headers)
            continue
        assert param.key is not None
        values: list[str]
        if source == "query":
            if query is None:
                query = {}
                for key, value in request.query_params:
                    query.setdefault(key, []).append(value)
            values = query.get(param.key, [])
        elif source == "path":
            found = request.path_params.get(param.key)
            values = [] if found is None else [found]
        else:
            found = request.headers.get(param.key)
            values = [] if found is None else [found]
        if param.many and values:
            kwargs[param.name] = [_convert_text(param, value) for value in values]
        elif values:
            kwargs[param.name] = _convert_text(param, values[-1])
        else:
            kwargs[param.name] = _missing(param)
    return kwargs


def _convert_text(param: ParamPlan, value: str) -> Any:
    assert param.text is not None
    try:
        return param.text(value)
    except ConversionError as exc:
        raise BadRequestException(f"{param.label} {exc.problem}") from None


def _missing(param: ParamPlan) -> Any:
    if param.default is not NO_DEFAULT:
        return param.default
    if param.optional:
        return None
    if param.many:
        return []
    if param.source == "body":
        raise BadRequestException("request body is required; send a JSON document")
    raise BadRequestException(f"{param.label} is required")


async def _solve_body(param: ParamPlan, request: RequestLike) -> Any:
    raw = await request.body()
    if param.raw_body:
        # An empty body is a valid raw body, unless the handler gave a default for that case.
        if raw or (param.default is NO_DEFAULT and not param.optional):
            return raw
        return _missing(param)
    if not raw.strip():
        return _missing(param)
    _check_json_media_type(request.headers.get("content-type"))
    try:
        document = json.loads(raw)
    except RecursionError:
        raise BadRequestException(
            f"request body is nested too deeply (the limit is {MAX_BODY_DEPTH} levels)"
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequestException(f"request body is not valid JSON: {exc}") from None
    if _depth_exceeds(document, MAX_BODY_DEPTH):
        raise BadRequestException(
            f"request body is nested too deeply (the limit is {MAX_BODY_DEPTH} levels)"
        )
    assert param.json is not None
    try:
        return param.json(document, "")
    except ConversionError as exc:
        raise BadRequestException(describe_json_error(exc)) from None


def _check_json_media_type(content_type: str | None) -> None:
    """Refuse a JSON body that does not say it is JSON: 415 Unsupported Media Type.

    A browser posts a cross-site form (``text/plain``, ``application/x-www-form-urlencoded``,
    ``multipart/form-data``) without a CORS preflight; were its body parsed as JSON anyway, any
    page could make a visitor's browser call the API with their cookies (FastAPI's
    CVE-2021-32677). A JSON content type is one a form cannot send, so it forces the preflight.
    """
    media_type = (content_type or "").partition(";")[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    if kind == "application" and (subtype == "json" or _is_structured_json(subtype)):
        return
    got = "got none" if content_type is None else f"got {clip(content_type)!r}"
    raise HttpException(
        415,
        "request body must be sent with Content-Type: application/json (or another "
        f"application/*+json type); {got}",
    )


def _is_structured_json(subtype: str) -> bool:
    # RFC 6839's "+json" suffix (application/merge-patch+json), with a name before it.
    return subtype.endswith("+json") and len(subtype) > len("+json")


def _depth_exceeds(document: object, limit: int) -> bool:
    # Iterative, so that checking depth cannot itself exhaust the stack.
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: collections.abc.Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


async def invoke_endpoint(plan: CallPlan, endpoint: Any, kwargs: Mapping[str, Any]) -> Any:
    """Call the bound ``endpoint`` with ``kwargs`` the way its :attr:`CallPlan.style` says.

    A coroutine function is awaited. A sync function is called directly on the event loop (so
    it must not block; move blocking work to ``trio.to_thread.run_sync`` in an async
    handler), and an awaitable it returns is awaited. An async generator function is *called*,
    not iterated: the result is the async generator, for the SSE runner to drive and close.
    """
    if plan.style == "async_gen":
        return endpoint(**kwargs)
    result = endpoint(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
