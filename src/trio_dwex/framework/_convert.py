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
import datetime
import decimal
import enum
import json
import math
import re
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from .._errors import clip
from ._constraints import Constraint, constrained

__all__ = [
    "ConversionError",
    "JsonConverter",
    "TextConverter",
    "UnsupportedType",
    "bounded_text",
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
    A JSON value with several problems (two fields of a dataclass wrong, one missing) raises
    one error carrying them all in ``problems``, as ``(field, problem)`` pairs in document
    order; ``problem`` and ``field`` are the first.
    """

    def __init__(self, problem: str, field: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.field = field
        self.problems: tuple[tuple[str, str], ...] = ((field, problem),)

    @classmethod
    def of(cls, problems: Sequence[tuple[str, str]]) -> ConversionError:
        """One error for several ``(field, problem)`` pairs (at least one)."""
        field, problem = problems[0]
        error = cls(problem, field)
        error.problems = tuple(problems)
        return error


class _Collector:
    """Gathers the problems of a value's parts, so that all of them are reported at once."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def convert(self, converter: JsonConverter, value: Any, field: str) -> Any:
        try:
            return converter(value, field)
        except ConversionError as error:
            self.problems.extend(error.problems)
            return None

    def add(self, problem: str, field: str) -> None:
        self.problems.append((field, problem))

    def raise_any(self) -> None:
        if self.problems:
            raise ConversionError.of(self.problems)


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
        if expected is int and type(value) is float and value.is_integer():
            # JSON has one kind of number: 2.0 is the integer 2, as JSON Schema says.
            return int(value)
        if not ok:
            raise ConversionError(f"must be {noun}, got {_json_shown(value)}", field)
        return value

    return convert


def _as_is(value: Any, field: str) -> Any:
    return value


def _json_none(value: Any, field: str) -> None:
    if value is not None:
        raise ConversionError(f"must be null, got {_json_shown(value)}", field)


def _from_text(parse: Callable[[str], Any], noun: str) -> JsonConverter:
    """A converter for a type JSON carries as a string (what ``json_serializer`` writes)."""

    def convert(value: Any, field: str) -> Any:
        if isinstance(value, str):
            try:
                return parse(value)
            except ValueError:
                pass
        raise ConversionError(f"must be {noun}, got {_json_shown(value)}", field)

    return convert


def _to_decimal(value: Any, field: str) -> decimal.Decimal:
    # A string keeps every digit; a JSON number is taken by its text, never as a binary float.
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            number = decimal.Decimal(value if isinstance(value, str) else str(value))
        except decimal.InvalidOperation:
            pass
        else:
            if number.is_finite():
                return number
    raise ConversionError(f"must be a decimal number, got {_json_shown(value)}", field)


_JSON_SCALARS: dict[object, JsonConverter] = {
    datetime.datetime: _from_text(datetime.datetime.fromisoformat, "an ISO 8601 date-time"),
    datetime.date: _from_text(datetime.date.fromisoformat, "an ISO 8601 date"),
    datetime.time: _from_text(datetime.time.fromisoformat, "an ISO 8601 time"),
    uuid.UUID: _from_text(uuid.UUID, "a UUID"),
    decimal.Decimal: _to_decimal,
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
    if typing.get_origin(tp) is typing.Annotated:
        inner_type, constraint = constrained(tp)
        inner_converter = _json_converter(inner_type, memo)
        return inner_converter if constraint is None else _bounded(inner_converter, constraint)
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
    if is_struct(tp):
        return _struct_converter(typing.cast(type, tp))
    if is_pydantic_model(tp):
        return _pydantic_converter(typing.cast(type, tp))
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


def _bounded(converter: JsonConverter, constraint: Constraint) -> JsonConverter:
    def convert(value: Any, field: str) -> Any:
        converted = converter(value, field)
        problem = constraint.problem(converted)
        if problem is not None:
            raise ConversionError(problem, field)
        return converted

    return convert


def bounded_text(converter: TextConverter, constraint: Constraint) -> TextConverter:
    """``converter`` (for query, path or header text) with ``constraint`` checked after it."""

    def convert(text: str) -> Any:
        value = converter(text)
        problem = constraint.problem(value)
        if problem is not None:
            raise ConversionError(problem)
        return value

    return convert


def _list_converter(item: JsonConverter) -> JsonConverter:
    def convert(value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise ConversionError(f"must be an array, got {_json_shown(value)}", field)
        collector = _Collector()
        items = [
            collector.convert(item, element, f"{field}[{index}]")
            for index, element in enumerate(value)
        ]
        collector.raise_any()
        return items

    return convert


def _dict_converter(item: JsonConverter) -> JsonConverter:
    def convert(value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ConversionError(f"must be an object, got {_json_shown(value)}", field)
        collector = _Collector()
        items = {
            key: collector.convert(item, element, _join(field, key))
            for key, element in value.items()
        }
        collector.raise_any()
        return items

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
        collector = _Collector()
        expected = ", ".join(fields) or "none"
        for key in value:
            if key not in fields:
                collector.add(
                    f"is not a field of {cls.__name__} (expected: {expected})", _join(field, key)
                )
        kwargs: dict[str, Any] = {}
        for name, (converter, required) in fields.items():
            if name in value:
                kwargs[name] = collector.convert(converter, value[name], _join(field, name))
            elif required:
                collector.add("is required", _join(field, name))
        collector.raise_any()
        try:
            return cls(**kwargs)
        except ValueError as exc:  # a __post_init__ check: the client's mistake, so a 400
            raise ConversionError(
                f"is not a valid {cls.__name__}: {clip(str(exc))}", field
            ) from None

    memo[cls] = convert
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
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


# -- msgspec and pydantic, when installed ---------------------------------------------------------


def _optional_library(name: str, attribute: str) -> type | None:
    # Never imported here: a class can only be a Struct or a model if its library is loaded.
    module = sys.modules.get(name)
    found = getattr(module, attribute, None) if module is not None else None
    return found if isinstance(found, type) else None


def is_struct(tp: object) -> bool:
    """Whether ``tp`` is a ``msgspec.Struct`` class."""
    struct = _optional_library("msgspec", "Struct")
    return struct is not None and isinstance(tp, type) and issubclass(tp, struct)


def is_pydantic_model(tp: object) -> bool:
    """Whether ``tp`` is a pydantic model class."""
    model = _optional_library("pydantic", "BaseModel")
    return model is not None and isinstance(tp, type) and issubclass(tp, model)


_MSGSPEC_PATH: typing.Final = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def msgspec_problem(error: Exception, field: str) -> ConversionError:
    """A ``msgspec.ValidationError`` as our error: its message, at its path inside ``field``."""
    message = str(error)
    match = _MSGSPEC_PATH.search(message)
    inner = ""
    if match:
        message = message[: match.start()]
        inner = match["path"].lstrip(".")
    if message.startswith("Expected"):
        message = "must be" + message.removeprefix("Expected")
    elif message.startswith("Object missing required field"):
        name = message.removeprefix("Object missing required field").strip(" `")
        message, inner = "is required", _join(inner, name)
    return ConversionError(message, _join(field, inner) if inner else field)


def pydantic_problems(errors: Sequence[Mapping[str, Any]], field: str) -> ConversionError:
    """A pydantic ``ValidationError``'s errors as ours, each at its path inside ``field``."""
    problems = []
    for error in errors:
        path = field
        for part in error.get("loc", ()):
            path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
        message = str(error.get("msg", "is not valid"))
        if message == "Field required":
            message = "is required"
        problems.append((path, message))
    return ConversionError.of(problems or [(field, "is not valid")])


def _struct_converter(tp: type) -> JsonConverter:
    import msgspec  # imported already: tp is one of its Structs

    def convert(value: Any, field: str) -> Any:
        try:
            return msgspec.convert(value, tp)
        except msgspec.ValidationError as exc:
            # msgspec stops at the first problem, so that is the one reported.
            raise msgspec_problem(exc, field) from None

    return convert


def _pydantic_converter(tp: type) -> JsonConverter:
    import pydantic  # imported already: tp is one of its models

    adapter: Any = pydantic.TypeAdapter(tp)

    def convert(value: Any, field: str) -> Any:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise pydantic_problems(exc.errors(), field) from None

    return convert


def describe_json_error(error: ConversionError) -> str:
    """The client-facing sentence for a body conversion failure."""
    return f"{_describe(error.field)} {error.problem}"
