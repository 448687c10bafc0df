"""A handler's signature, analysed once, when the app is built, into a :class:`CallPlan`.

The split follows FastAPI's ``get_dependant`` / ``solve_dependencies``: reading type hints and
``Annotated`` markers is slow and can fail, so it happens when the application is compiled,
and every mistake here is a :class:`~trio_dwex._errors.ConfigurationError` naming
``Controller.method`` and the parameter. The plan is plain data; ``_solving`` turns it into a
handler's arguments for each request.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from .._errors import ConfigurationError
from .._unset import UNSET
from ._constraints import constraint_of
from ._convert import (
    JsonConverter,
    TextConverter,
    UnsupportedType,
    bounded_text,
    is_optional,
    json_converter,
    strip_optional,
    text_converter,
)
from ._params import Inject, ParamMarker, ParamSource, Release

__all__ = [
    "CallPlan",
    "CallStyle",
    "ParamPlan",
    "analyse_handler",
]

CallStyle = Literal["sync", "async", "async_gen"]
"""How a handler is called: a plain function, a coroutine function, an async generator function."""


_SOURCE_WORDS: Final[Mapping[ParamSource, str]] = {
    "query": "query parameter",
    "path": "path parameter",
    "header": "header",
    "cookie": "cookie",
    "body": "body",
    "request": "request",
    "inject": "provider",
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
    #: The value when the request has none, or `UNSET` if the parameter has no default.
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
    #: The annotation without its marker (``int | None``), for the OpenAPI document.
    annotation: object = Any
    #: ``Inject()``: when a per-request provider is exited.
    release: Release = "response"

    @property
    def token(self) -> object:
        """``Inject()``: the provider's type, the annotation without ``| None``."""
        return strip_optional(self.annotation)

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
            "decorator; use @Sse(...) to stream events (with method='POST' or another for a "
            "method other than GET), or return a value instead of yielding"
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
    metadata: list[object] = []
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
    constraint = constraint_of(metadata) if markers else None
    default = UNSET if parameter.default is inspect.Parameter.empty else parameter.default
    try:
        plan = _plan_for(parameter.name, marker, annotation, default)
    except UnsupportedType as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    if constraint is None:
        return replace(plan, annotation=annotation)
    # Annotated[int, Query(), Constraint(ge=1)]: the bound is checked after the conversion
    # and shown in the document, as a body field's is.
    text = None if plan.text is None else bounded_text(plan.text, constraint)
    return replace(plan, annotation=typing.Annotated[annotation, constraint], text=text)


def _is_mapping_type(tp: object) -> bool:
    return tp in (dict, Mapping) or typing.get_origin(tp) in (dict, collections.abc.Mapping)


def _plan_for(name: str, marker: ParamMarker, annotation: object, default: object) -> ParamPlan:
    optional = is_optional(annotation)
    inner = strip_optional(annotation)
    source = marker.source
    if source == "request":
        return ParamPlan(name, source, None, default)
    if isinstance(marker, Inject):
        return ParamPlan(name, source, None, default, optional=optional, release=marker.release)
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
