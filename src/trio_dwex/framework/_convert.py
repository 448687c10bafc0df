"""Converters from request text and parsed JSON to the types handlers annotate.

Both kinds are built once, when a handler is analysed, from its annotation, so an annotation
the framework cannot convert to fails at startup (:class:`UnsupportedType`) instead of on a
request. At request time a converter either returns the value or raises
:class:`ConversionError` carrying a phrase ("must be an integer, got 'abc'") that the caller
prefixes with where the value came from ("query parameter 'count' ...").

Supported for text (query, path, header values): ``str``, ``int``, ``float``, ``bool``,
``Enum`` subclasses (by value), ``Literal`` of strings or ints, ``Any``/``object`` (the text
as is), and ``T | None``. Supported for JSON (request bodies): the same scalars, ``None``,
``list[T]``, ``dict[str, T]``, dataclasses (recursively), and ``Any``/``object``/bare
``dict``/``list`` (the parsed value as is).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from .._errors import clip

__all__ = [
    "ConversionError",
    "JsonConverter",
    "TextConverter",
    "UnsupportedType",
    "describe_json_error",
    "is_optional",
    "json_converter",
    "strip_optional",
    "text_converter",
    "type_name",
]

TextConverter = Callable[[str], Any]
"""Turns one text value into the annotated type, or raises :class:`ConversionError`."""

JsonConverter = Callable[[Any, str], Any]
"""Turns a parsed JSON value into the annotated type; the second argument is the field path
used in messages (``""`` for the whole body, ``"owner.name"``, ``"items[2]"``)."""


class ConversionError(Exception):
    """A value did not convert; ``problem`` completes a sentence such as "must be an integer".

    ``field`` is the dotted path inside a JSON body where the problem is (``""`` at the top).
    """

    def __init__(self, problem: str, field: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.field = field


class UnsupportedType(Exception):
    """An annotation no converter handles; the analyser turns it into a ConfigurationError."""


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_NONE_TYPE = type(None)


def type_name(tp: object) -> str:
    """A short, readable name for an annotation, for messages."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def _shown(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _json_shown(value: object, limit: int = 40) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):  # pragma: no cover - parsed JSON always dumps
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def is_optional(tp: object) -> bool:
    """True for ``T | None`` and ``Optional[T]``."""
    return _is_union(tp) and _NONE_TYPE in typing.get_args(tp)


def strip_optional(tp: object) -> object:
    """``T`` for ``T | None``; other annotations unchanged (a multi-member union stays one)."""
    if not is_optional(tp):
        return tp
    rest = tuple(arg for arg in typing.get_args(tp) if arg is not _NONE_TYPE)
    if len(rest) == 1:
        return rest[0]
    return typing.Union[rest]  # noqa: UP007 - built from a runtime tuple


def _is_union(tp: object) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


# -- text ------------------------------------------------------------------------------------


def _to_str(text: str) -> str:
    return text


def _to_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ConversionError(f"must be an integer, got {_shown(text)}")
    try:
        return int(text)
    except ValueError:
        # Python refuses to parse more than sys.get_int_max_str_digits() digits (4300 by
        # default: quadratic-time parsing is a denial of service). A client sends that as
        # easily as "abc", e.g. a 10,000-digit Last-Event-ID, and it is just as much a 400.
        raise ConversionError(f"must be an integer of sane size, got {_shown(text)}") from None


def _to_float(text: str) -> float:
    if not _FLOAT.fullmatch(text):
        raise ConversionError(f"must be a number, got {_shown(text)}")
    value = float(text)
    if not math.isfinite(value):
        raise ConversionError(f"must be a finite number, got {_shown(text)}")
    return value


def _to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConversionError(
        f"must be a boolean (true/false, 1/0, yes/no, on/off), got {_shown(text)}"
    )


def _choice_converter(choices: Mapping[str, object]) -> TextConverter:
    allowed = ", ".join(repr(key) for key in choices)

    def convert(text: str) -> object:
        try:
            return choices[text]
        except KeyError:
            raise ConversionError(f"must be one of {allowed}, got {_shown(text)}") from None

    return convert


_TEXT_SCALARS: dict[object, TextConverter] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    Any: _to_str,
    object: _to_str,
}


def text_converter(tp: object) -> TextConverter:
    """The converter for one text value annotated ``tp`` (``Optional`` already stripped).

    Raises :class:`UnsupportedType` for annotations text cannot become.
    """
    scalar = _TEXT_SCALARS.get(tp)
    if scalar is not None:
        return scalar
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _choice_converter({str(member.value): member for member in tp})
    if typing.get_origin(tp) is typing.Literal:
        values = typing.get_args(tp)
        if all(isinstance(value, str | int) and not isinstance(value, bool) for value in values):
            return _choice_converter({str(value): value for value in values})
    raise UnsupportedType(
        f"cannot convert text to {type_name(tp)}; use str, int, float, bool, an Enum, "
        "a Literal, or one of these | None"
    )


# -- JSON ------------------------------------------------------------------------------------


def _describe(field: str) -> str:
    # A field's path holds the client's keys, which may be kilobytes long.
    return f"body field {clip(field)!r}" if field else "body"


def _json_scalar(expected: type, noun: str) -> JsonConverter:
    def convert(value: Any, field: str) -> Any:
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ConversionError(f"must be {noun}, got {_json_shown(value)}", field)
        return value

    return convert


def _as_is(value: Any, field: str) -> Any:
    return value


def _json_none(value: Any, field: str) -> None:
    if value is not None:
        raise ConversionError(f"must be null, got {_json_shown(value)}", field)


_JSON_SCALARS: dict[object, JsonConverter] = {
    str: _json_scalar(str, "a string"),
    int: _json_scalar(int, "an integer"),
    float: _json_scalar(float, "a number"),
    bool: _json_scalar(bool, "a boolean"),
    _NONE_TYPE: _json_none,
    Any: _as_is,
    object: _as_is,
}


def json_converter(tp: object) -> JsonConverter:
    """The converter for a parsed JSON value annotated ``tp``.

    Dataclasses are built field by field from a JSON object: a missing required field, a field
    the dataclass does not declare, or a value of the wrong type raises
    :class:`ConversionError` with the field's path. Self-referencing dataclasses work: each
    class's converter is built once and shared.

    Raises :class:`UnsupportedType` for annotations JSON cannot become.
    """
    return _json_converter(tp, {})


def _json_converter(tp: object, memo: MutableMapping[type, JsonConverter]) -> JsonConverter:
    scalar = _JSON_SCALARS.get(tp)
    if scalar is not None:
        return scalar
    if is_optional(tp):
        inner = _json_converter(strip_optional(tp), memo)

        def optional(value: Any, field: str) -> Any:
            return None if value is None else inner(value, field)

        return optional
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = {member.value: member for member in tp}
        allowed = ", ".join(_json_shown(value) for value in members)

        def to_enum(value: Any, field: str) -> Any:
            try:
                return members[value]
            except (KeyError, TypeError):
                raise ConversionError(
                    f"must be one of {allowed}, got {_json_shown(value)}", field
                ) from None

        return to_enum
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_converter(tp, memo)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in (list, Sequence) or origin in (list, Sequence):
        item = _json_converter(args[0], memo) if args else _as_is
        return _list_converter(item)
    if tp in (dict, Mapping) or origin in (dict, Mapping):
        if args and args[0] is not str:
            raise UnsupportedType(f"JSON object keys are strings; use dict[str, ...], not {tp}")
        value_converter = _json_converter(args[1], memo) if args else _as_is
        return _dict_converter(value_converter)
    if origin is typing.Literal:
        values = args

        def literal(value: Any, field: str) -> Any:
            for allowed_value in values:
                if value == allowed_value and type(value) is type(allowed_value):
                    return allowed_value
            shown = ", ".join(_json_shown(v) for v in values)
            raise ConversionError(f"must be one of {shown}, got {_json_shown(value)}", field)

        return literal
    raise UnsupportedType(
        f"cannot build {type_name(tp)} from JSON; use a dataclass, dict, list, str, int, "
        "float, bool, an Enum, Any, or one of these | None"
    )


def _list_converter(item: JsonConverter) -> JsonConverter:
    def convert(value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise ConversionError(f"must be an array, got {_json_shown(value)}", field)
        return [item(element, f"{field}[{index}]") for index, element in enumerate(value)]

    return convert


def _dict_converter(item: JsonConverter) -> JsonConverter:
    def convert(value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ConversionError(f"must be an object, got {_json_shown(value)}", field)
        return {key: item(element, _join(field, key)) for key, element in value.items()}

    return convert


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def _dataclass_converter(cls: type, memo: MutableMapping[type, JsonConverter]) -> JsonConverter:
    if cls in memo:
        return memo[cls]
    fields: dict[str, tuple[JsonConverter, bool]] = {}

    def convert(value: Any, field: str) -> Any:
        if not isinstance(value, dict):
            raise ConversionError(f"must be a JSON object, got {_json_shown(value)}", field)
        unknown = [key for key in value if key not in fields]
        if unknown:
            raise ConversionError(
                f"is not a field of {cls.__name__} (expected: {', '.join(fields) or 'none'})",
                _join(field, unknown[0]),
            )
        kwargs: dict[str, Any] = {}
        for name, (converter, required) in fields.items():
            if name in value:
                kwargs[name] = converter(value[name], _join(field, name))
            elif required:
                raise ConversionError("is required", _join(field, name))
        try:
            return cls(**kwargs)
        except ValueError as exc:  # a __post_init__ check: the client's mistake, so a 400
            raise ConversionError(
                f"is not a valid {cls.__name__}: {clip(str(exc))}", field
            ) from None

    memo[cls] = convert
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise UnsupportedType(
            f"cannot read the type hints of dataclass {cls.__name__}: {exc}"
        ) from exc
    for spec in dataclasses.fields(cls):
        if not spec.init:
            continue
        required = (
            spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        )
        try:
            fields[spec.name] = (_json_converter(hints[spec.name], memo), required)
        except UnsupportedType as exc:
            raise UnsupportedType(f"field {cls.__name__}.{spec.name}: {exc}") from None
    return convert


def describe_json_error(error: ConversionError) -> str:
    """The client-facing sentence for a body conversion failure."""
    return f"{_describe(error.field)} {error.problem}"
