"""Types as JSON Schemas, and checks that a value is what its type says.

One walk over an annotation gives two things, both built once, when the app is compiled:

- :class:`SchemaRegistry` turns annotations into JSON Schema (draft 2020-12, the dialect of
  OpenAPI 3.1 and 3.2). Named types (dataclasses, ``TypedDict``\\ s, enums, ``msgspec.Struct``
  and pydantic models) become shared schemas that the others ``$ref``.
- :func:`value_checker` builds a function that checks a Python value against an annotation
  the way the value will be sent: a dataclass instance or a ``dict`` of its fields, an enum
  member or its value... It raises :class:`~._convert.ConversionError` naming the field.

Supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``/``object``, enums,
``Literal``, unions and ``T | None``, ``list[T]``, ``Sequence[T]``, ``tuple[...]``,
``dict[str, T]``, ``datetime``/``date``/``time``/``UUID`` (sent as ISO 8601 text), dataclasses,
``TypedDict``, and when those libraries are installed ``msgspec.Struct`` and pydantic models
(whose own schema generation and validation are used). Anything else raises
:class:`~._convert.UnsupportedType`.

msgspec and pydantic are never imported here: a class can only be a ``Struct`` or a
``BaseModel`` if its library was imported by whoever defined it.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, Final

from .._errors import clip
from ._constraints import Constraint, constrained
from ._convert import (
    ConversionError,
    UnsupportedType,
    is_pydantic_model,
    is_struct,
    msgspec_problem,
    pydantic_problems,
    type_name,
)

__all__ = ["Check", "JsonSchema", "SchemaRegistry", "value_checker"]

JsonSchema = dict[str, Any]
"""A JSON Schema (or an OpenAPI Schema Object, which is the same thing since OpenAPI 3.1)."""

Check = Callable[[Any, str], None]
"""Checks a value; the second argument is the field path for messages (``""`` at the top).
Raises :class:`~._convert.ConversionError` when the value does not fit."""

_NONE_TYPE: Final = type(None)
_REF_PREFIX: Final = "#/components/schemas/"
# What OpenAPI allows as a key of ``components/schemas``.
_COMPONENT_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")

_SCALAR_SCHEMAS: Final[Mapping[object, JsonSchema]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    _NONE_TYPE: {"type": "null"},
    Any: {},
    object: {},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    # The OpenAPI format registry's "decimal": digits kept exactly, sent as a string (our
    # serializer's choice) or a number (which a body may use).
    decimal.Decimal: {"type": ["string", "number"], "format": "decimal"},
}


def _is_union(tp: object) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _own_doc(cls: type) -> str | None:
    doc = cls.__doc__
    if not doc or doc.startswith(f"{cls.__name__}("):  # the signature dataclasses write
        return None
    return " ".join(doc.split()) if "\n\n" not in doc else doc.strip()


def _json_default(value: object) -> object:
    """A default value as JSON, or UNSET-like ``...`` when it has no plain JSON form."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return ...


class SchemaRegistry:
    """JSON Schemas of annotations, named types kept once as shared components.

    ``schema(tp)`` returns the schema for ``tp``; for a named type that is a
    ``{"$ref": "#/components/schemas/Name"}`` and the type's own schema is in
    :attr:`components`. Two different types with one ``__name__`` get distinct names
    (the second is qualified with its module).
    """

    def __init__(self) -> None:
        #: Shared schemas by name, for ``components/schemas``.
        self.components: dict[str, JsonSchema] = {}
        self._names: dict[object, str] = {}

    def schema(self, tp: object) -> JsonSchema:
        """The schema of values annotated ``tp``; raises `UnsupportedType` if none fits."""
        scalar = _SCALAR_SCHEMAS.get(tp)
        if scalar is not None:
            return dict(scalar)
        if _is_union(tp):
            members = typing.get_args(tp)
            return {"anyOf": [self.schema(member) for member in members]}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Literal:
            return _literal_schema(args)
        if origin is typing.Annotated:
            inner, constraint = constrained(tp)
            schema = self.schema(inner)
            return schema if constraint is None else constraint.schema(schema)
        if tp in (list, Sequence) or origin in (list, Sequence):
            return {"type": "array", "items": self.schema(args[0]) if args else {}}
        if tp is tuple or origin is tuple:
            return self._tuple_schema(args)
        if tp in (dict, Mapping) or origin in (dict, Mapping):
            if args and args[0] is not str:
                raise UnsupportedType(f"JSON object keys are strings; use dict[str, ...], not {tp}")
            return {"type": "object", "additionalProperties": self.schema(args[1]) if args else {}}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._named(tp, self._enum_schema)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._named(tp, self._dataclass_schema)
        if typing.is_typeddict(tp):
            return self._named(typing.cast(type, tp), self._typeddict_schema)
        if is_struct(tp):
            return self._library_schema(typing.cast(type, tp), _struct_schemas)
        if is_pydantic_model(tp):
            return self._library_schema(typing.cast(type, tp), _pydantic_schemas)
        raise UnsupportedType(
            f"no JSON Schema for {type_name(tp)}; use a dataclass, TypedDict, msgspec.Struct, "
            "pydantic model, dict, list, str, int, float, bool, an Enum, a Literal, Any, or "
            "one of these | None"
        )

    def _tuple_schema(self, args: tuple[Any, ...]) -> JsonSchema:
        if not args:
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self.schema(args[0])}
        items = [self.schema(arg) for arg in args]
        return {
            "type": "array",
            "prefixItems": items,
            "items": False,
            "minItems": len(items),
            "maxItems": len(items),
        }

    def _named(self, tp: type, build: Callable[[type], JsonSchema]) -> JsonSchema:
        name = self._names.get(tp)
        if name is None:
            name = self._name_for(tp)
            self._names[tp] = name
            self.components[name] = {}  # reserved first: a type may refer to itself
            self.components[name] = build(tp)
        return {"$ref": _REF_PREFIX + name}

    def _name_for(self, tp: type) -> str:
        for candidate in (tp.__name__, f"{tp.__module__}.{tp.__qualname__}"):
            name = _COMPONENT_NAME.sub("_", candidate)
            if name not in self.components:
                return name
        for number in range(2, 10_000):  # pragma: no branch - a loop that ends
            name = f"{_COMPONENT_NAME.sub('_', tp.__qualname__)}{number}"
            if name not in self.components:
                return name
        raise UnsupportedType(f"too many types named {tp.__name__}")  # pragma: no cover

    def _enum_schema(self, tp: type) -> JsonSchema:
        values = [member.value for member in typing.cast(type[enum.Enum], tp)]
        schema: JsonSchema = {"enum": values}
        kinds = {_json_type(value) for value in values}
        if len(kinds) == 1 and None not in kinds:
            schema = {"type": kinds.pop(), **schema}
        doc = _own_doc(tp) if tp.__doc__ != enum.Enum.__doc__ else None
        if doc and not doc.startswith("An enumeration"):
            schema["description"] = doc
        return schema

    def _dataclass_schema(self, tp: type) -> JsonSchema:
        hints = _hints(tp)
        properties: dict[str, JsonSchema] = {}
        required: list[str] = []
        for spec in dataclasses.fields(tp):
            try:
                field_schema = self.schema(hints[spec.name])
            except UnsupportedType as exc:
                raise UnsupportedType(f"field {tp.__name__}.{spec.name}: {exc}") from None
            if not spec.init:
                # Sent (the serializer writes every field), never read from a request.
                field_schema["readOnly"] = True
            elif spec.default is not dataclasses.MISSING:
                default = _json_default(spec.default)
                if default is not ...:
                    field_schema["default"] = default
            elif spec.default_factory is dataclasses.MISSING:
                required.append(spec.name)
            properties[spec.name] = field_schema
        return _object_schema(tp, properties, required)

    def _typeddict_schema(self, tp: type) -> JsonSchema:
        properties: dict[str, JsonSchema] = {}
        required = []
        for name, (hint, needed) in _typeddict_fields(tp).items():
            try:
                properties[name] = self.schema(hint)
            except UnsupportedType as exc:
                raise UnsupportedType(f"field {tp.__name__}.{name}: {exc}") from None
            if needed:
                required.append(name)
        return _object_schema(tp, properties, required)

    def _library_schema(
        self, tp: type, generate: Callable[[type], tuple[JsonSchema, Mapping[str, JsonSchema]]]
    ) -> JsonSchema:
        name = self._names.get(tp)
        if name is not None:
            return {"$ref": _REF_PREFIX + name}
        top, definitions = generate(tp)
        for def_name, def_schema in definitions.items():
            existing = self.components.get(def_name)
            if existing is not None and existing != def_schema:
                raise UnsupportedType(
                    f"two different types are both named {def_name!r} in the document; "
                    "rename one of them"
                )
            self.components[def_name] = def_schema
        ref = top.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX) and len(top) == 1:
            self._names[tp] = ref.removeprefix(_REF_PREFIX)
            return top
        self._names[tp] = name = self._name_for(tp)
        self.components[name] = top
        return {"$ref": _REF_PREFIX + name}


def _object_schema(tp: type, properties: dict[str, JsonSchema], required: list[str]) -> JsonSchema:
    schema: JsonSchema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    doc = _own_doc(tp)
    if doc:
        schema["description"] = doc
    return schema


def _typeddict_fields(tp: type) -> dict[str, tuple[object, bool]]:
    """Each key's annotation and whether it is required.

    ``__required_keys__`` misses ``NotRequired[...]`` written as a string (a module with
    ``from __future__ import annotations``), so the resolved qualifiers decide when present.
    """
    try:
        qualified = typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:
        raise UnsupportedType(f"cannot read the type hints of {tp.__name__}: {exc}") from exc
    required_keys = frozenset(getattr(tp, "__required_keys__", ()))
    fields: dict[str, tuple[object, bool]] = {}
    for name, hint in _hints(tp).items():
        origin = typing.get_origin(qualified[name])
        if origin is typing.NotRequired:
            needed = False
        elif origin is typing.Required:
            needed = True
        else:
            needed = name in required_keys
        fields[name] = (hint, needed)
    return fields


def _hints(tp: type) -> dict[str, Any]:
    """The fields' annotations, ``Annotated`` kept (its `Constraint` counts), ``Required`` and
    ``NotRequired`` taken off (`_typeddict_fields` reads them)."""
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:
        raise UnsupportedType(f"cannot read the type hints of {tp.__name__}: {exc}") from exc
    return {name: _unqualified(hint) for name, hint in hints.items()}


def _unqualified(hint: object) -> object:
    while typing.get_origin(hint) in (typing.Required, typing.NotRequired):
        hint = typing.get_args(hint)[0]
    return hint


def _json_type(value: object) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _literal_schema(values: tuple[Any, ...]) -> JsonSchema:
    plain = [value.value if isinstance(value, enum.Enum) else value for value in values]
    if len(plain) == 1:
        schema: JsonSchema = {"const": plain[0]}
    else:
        schema = {"enum": plain}
    kinds = {_json_type(value) for value in plain}
    if len(kinds) == 1 and None not in kinds:
        schema = {"type": kinds.pop(), **schema}
    return schema


def _struct_schemas(tp: type) -> tuple[JsonSchema, Mapping[str, JsonSchema]]:
    import msgspec  # imported already: tp is one of its Structs

    (top,), definitions = msgspec.json.schema_components([tp], ref_template=_REF_PREFIX + "{name}")
    return top, definitions


def _pydantic_schemas(tp: type) -> tuple[JsonSchema, Mapping[str, JsonSchema]]:
    import pydantic  # imported already: tp is one of its models

    top = pydantic.TypeAdapter(tp).json_schema(
        ref_template=_REF_PREFIX + "{model}", mode="serialization"
    )
    definitions = top.pop("$defs", {})
    return top, definitions


# -- checking values ---------------------------------------------------------------------------


def _shown(value: object, limit: int = 40) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return clip(text, limit)


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def _bounded_check(check: Check, constraint: Constraint) -> Check:
    def bounded(value: Any, field: str) -> None:
        check(value, field)
        problem = constraint.problem(value)
        if problem is not None:
            raise ConversionError(problem, field)

    return bounded


def value_checker(tp: object) -> Check:
    """A function that checks values meant to be sent as ``tp``.

    A dataclass, ``TypedDict``, ``Struct`` or model accepts an instance of the type or a
    ``dict`` of its fields; an enum accepts its members or their values; ``datetime`` and
    the like accept an instance or text. Extra keys in an object are refused, as the schema's
    ``additionalProperties: false`` says.

    Raises `UnsupportedType` for an annotation that :class:`SchemaRegistry` cannot describe.
    """
    return _checker(tp, {})


_SCALAR_CHECKS: Final[Mapping[object, tuple[Callable[[Any], bool], str]]] = {
    str: (lambda value: type(value) is str, "a string"),
    int: (lambda value: isinstance(value, int) and not isinstance(value, bool), "an integer"),
    float: (
        lambda value: isinstance(value, int | float) and not isinstance(value, bool),
        "a number",
    ),
    bool: (lambda value: isinstance(value, bool), "a boolean"),
    _NONE_TYPE: (lambda value: value is None, "null"),
    datetime.datetime: (lambda value: isinstance(value, datetime.datetime | str), "a date-time"),
    datetime.date: (lambda value: isinstance(value, datetime.date | str), "a date"),
    datetime.time: (lambda value: isinstance(value, datetime.time | str), "a time"),
    uuid.UUID: (lambda value: isinstance(value, uuid.UUID | str), "a UUID"),
}


def _anything(value: Any, field: str) -> None:
    return None


def _scalar_check(accepts: Callable[[Any], bool], noun: str) -> Check:
    def check(value: Any, field: str) -> None:
        if not accepts(value):
            raise ConversionError(f"must be {noun}, got {_shown(value)}", field)

    return check


def _checker(tp: object, memo: MutableMapping[object, Check]) -> Check:
    if tp is Any or tp is object:
        return _anything
    scalar = _SCALAR_CHECKS.get(tp)
    if scalar is not None:
        return _scalar_check(*scalar)
    if tp in memo:
        return memo[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if _is_union(tp):
        return _union_checker([_checker(arg, memo) for arg in args], tp)
    if origin is typing.Literal:
        return _literal_checker(args)
    if origin is typing.Annotated:
        inner, constraint = constrained(tp)
        check = _checker(inner, memo)
        return check if constraint is None else _bounded_check(check, constraint)
    if tp in (list, Sequence) or origin in (list, Sequence):
        return _sequence_checker(_checker(args[0], memo) if args else _anything)
    if tp is tuple or origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence_checker(_checker(args[0], memo))
        return _tuple_checker([_checker(arg, memo) for arg in args] if args else None)
    if tp in (dict, Mapping) or origin in (dict, Mapping):
        if args and args[0] is not str:
            raise UnsupportedType(f"JSON object keys are strings; use dict[str, ...], not {tp}")
        return _mapping_checker(_checker(args[1], memo) if args else _anything)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_checker(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _fields_checker(tp, _dataclass_fields(tp), memo, instance_of=tp)
    if typing.is_typeddict(tp):
        assert isinstance(tp, type)
        return _fields_checker(tp, _typeddict_fields(tp), memo, instance_of=None)
    if is_struct(tp):
        assert isinstance(tp, type)
        return _struct_checker(tp)
    if is_pydantic_model(tp):
        assert isinstance(tp, type)
        return _pydantic_checker(tp)
    raise UnsupportedType(
        f"cannot check values of {type_name(tp)}; use a dataclass, TypedDict, msgspec.Struct, "
        "pydantic model, dict, list, str, int, float, bool, an Enum, a Literal, Any, or one "
        "of these | None"
    )


def _union_checker(checks: list[Check], tp: object) -> Check:
    shown = type_name(tp)

    def check(value: Any, field: str) -> None:
        problems = []
        for member in checks:
            try:
                member(value, field)
            except ConversionError as exc:
                problems.append(exc)
            else:
                return
        # One member deep inside the value is what the sender meant: say what is wrong there.
        deepest = max(problems, key=lambda exc: len(exc.field))
        if deepest.field != field:
            raise deepest
        raise ConversionError(f"must be {shown}, got {_shown(value)}", field)

    return check


def _literal_checker(values: tuple[Any, ...]) -> Check:
    allowed = {(type(v), v.value if isinstance(v, enum.Enum) else v) for v in values}
    shown = ", ".join(_shown(v.value if isinstance(v, enum.Enum) else v) for v in values)

    def check(value: Any, field: str) -> None:
        plain = value.value if isinstance(value, enum.Enum) else value
        if not any(plain == v and type(plain) is type(v) for _, v in allowed):
            raise ConversionError(f"must be one of {shown}, got {_shown(value)}", field)

    return check


def _sequence_checker(item: Check) -> Check:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, list | tuple):
            raise ConversionError(f"must be an array, got {_shown(value)}", field)
        for index, element in enumerate(value):
            item(element, f"{field}[{index}]")

    return check


def _tuple_checker(items: list[Check] | None) -> Check:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, list | tuple):
            raise ConversionError(f"must be an array, got {_shown(value)}", field)
        if items is None:
            return
        if len(value) != len(items):
            raise ConversionError(f"must have {len(items)} items, got {len(value)}", field)
        for index, (item, element) in enumerate(zip(items, value, strict=True)):
            item(element, f"{field}[{index}]")

    return check


def _mapping_checker(item: Check) -> Check:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, Mapping):
            raise ConversionError(f"must be an object, got {_shown(value)}", field)
        for key, element in value.items():
            if type(key) is not str:
                raise ConversionError(f"must have string keys, got {_shown(key)}", field)
            item(element, _join(field, key))

    return check


def _enum_checker(tp: type[enum.Enum]) -> Check:
    values = {member.value for member in tp}
    shown = ", ".join(_shown(member.value) for member in tp)

    def check(value: Any, field: str) -> None:
        if isinstance(value, tp):
            return
        try:
            known = value in values and not isinstance(value, enum.Enum)
        except TypeError:  # an unhashable value
            known = False
        if not known:
            raise ConversionError(f"must be one of {shown}, got {_shown(value)}", field)

    return check


def _dataclass_fields(tp: type) -> dict[str, tuple[object, bool]]:
    hints = _hints(tp)
    fields = {}
    for spec in dataclasses.fields(tp):
        required = (
            spec.init
            and spec.default is dataclasses.MISSING
            and spec.default_factory is dataclasses.MISSING
        )
        fields[spec.name] = (hints[spec.name], required)
    return fields


def _fields_checker(
    tp: type,
    fields: Mapping[str, tuple[object, bool]],
    memo: MutableMapping[object, Check],
    *,
    instance_of: type | None,
) -> Check:
    checks: dict[str, Check] = {}
    required = [name for name, (_, needed) in fields.items() if needed]
    noun = f"a {tp.__name__}" + (" or an object of its fields" if instance_of else " object")

    def check(value: Any, field: str) -> None:
        if instance_of is not None and isinstance(value, instance_of):
            for name, field_check in checks.items():
                field_check(getattr(value, name), _join(field, name))
            return
        if not isinstance(value, Mapping):
            raise ConversionError(f"must be {noun}, got {_shown(value)}", field)
        for key in value:
            if key not in checks:
                raise ConversionError(
                    f"is not a field of {tp.__name__} (expected: {', '.join(checks) or 'none'})",
                    _join(field, clip(str(key))),
                )
        for name in required:
            if name not in value:
                raise ConversionError("is required", _join(field, name))
        for key, element in value.items():
            checks[key](element, _join(field, key))

    memo[tp] = check  # before the fields: a type may refer to itself
    for name, (hint, _) in fields.items():
        try:
            checks[name] = _checker(hint, memo)
        except UnsupportedType as exc:
            raise UnsupportedType(f"field {tp.__name__}.{name}: {exc}") from None
    return check


def _struct_checker(tp: type) -> Check:
    import msgspec  # imported already: tp is one of its Structs

    def check(value: Any, field: str) -> None:
        try:
            if isinstance(value, tp):
                value = msgspec.to_builtins(value)
            msgspec.convert(value, tp)
        except msgspec.ValidationError as exc:
            raise msgspec_problem(exc, field) from None

    return check


def _pydantic_checker(tp: type) -> Check:
    import pydantic  # imported already: tp is one of its models

    adapter: Any = pydantic.TypeAdapter(tp)

    def check(value: Any, field: str) -> None:
        if isinstance(value, tp):
            return  # a model instance was validated when it was made
        try:
            adapter.validate_python(value, strict=True)
        except pydantic.ValidationError as exc:
            raise pydantic_problems(exc.errors(), field) from None

    return check
