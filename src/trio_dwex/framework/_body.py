"""A JSON request body decoded and converted to the annotated type, or a 400 that says why."""

from __future__ import annotations

import collections.abc
import json
from typing import Any, Final

from .._errors import HttpException, RequestValidationError, clip
from ._convert import ConversionError, JsonConverter, describe_json_error

__all__ = ["MAX_BODY_DEPTH", "body_problems", "check_json_media_type", "decode_json_body"]

#: The deepest nesting of arrays and objects a JSON body may have. Deeper bodies are answered
#: with a 400: real payloads are shallow, and a deep one is an attempt to exhaust the stack.
MAX_BODY_DEPTH: Final = 64


def decode_json_body(raw: bytes, converter: JsonConverter) -> Any:
    """Parse ``raw`` (a non-blank body) as JSON and convert it with ``converter``.

    Raises:
        RequestValidationError: the body is not JSON, is nested deeper than
            :data:`MAX_BODY_DEPTH`, or does not convert; every problem, each with its place in
            the document (``body field 'owner.name' must be a string, got 3``).
    """
    too_deep = f"is nested too deeply (the limit is {MAX_BODY_DEPTH} levels)"
    try:
        document = json.loads(raw)
    except RecursionError:
        raise _whole_body(too_deep) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _whole_body(f"is not valid JSON: {exc}") from None
    if _depth_exceeds(document, MAX_BODY_DEPTH):
        raise _whole_body(too_deep)
    try:
        return converter(document, "")
    except ConversionError as exc:
        raise RequestValidationError(body_problems(exc)) from None


def body_problems(error: ConversionError) -> list[tuple[str, str, str]]:
    """A body's conversion problems as ``(location, message, sentence)`` triples."""
    problems = []
    for field, problem in error.problems:
        single = ConversionError(problem, field)
        # A field's path holds the client's keys, which may be kilobytes long: clipped.
        shown = clip(field)
        location = f"body.{shown}" if field and not field.startswith("[") else f"body{shown}"
        problems.append((location, problem, describe_json_error(single)))
    return problems


def _whole_body(problem: str) -> RequestValidationError:
    return RequestValidationError([("body", problem, f"request body {problem}")])


def check_json_media_type(content_type: str | None) -> None:
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
