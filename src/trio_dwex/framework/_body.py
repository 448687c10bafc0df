"""A JSON request body decoded and converted to the annotated type, or a 400 that says why."""

from __future__ import annotations

import collections.abc
import json
from typing import Any, Final

from .._errors import BadRequestException
from ._convert import ConversionError, JsonConverter, describe_json_error

__all__ = ["MAX_BODY_DEPTH", "decode_json_body"]

#: The deepest nesting of arrays and objects a JSON body may have. Deeper bodies are answered
#: with a 400: real payloads are shallow, and a deep one is an attempt to exhaust the stack.
MAX_BODY_DEPTH: Final = 64


def decode_json_body(raw: bytes, converter: JsonConverter) -> Any:
    """Parse ``raw`` (a non-blank body) as JSON and convert it with ``converter``.

    Raises:
        BadRequestException: the body is not JSON, is nested deeper than
            :data:`MAX_BODY_DEPTH`, or does not convert; the message says which, and where in
            the document (``body field 'owner.name' must be a string, got 3``).
    """
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
    try:
        return converter(document, "")
    except ConversionError as exc:
        raise BadRequestException(describe_json_error(exc)) from None


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
