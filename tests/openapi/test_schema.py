"""Annotations as JSON Schemas, and the checks of values against them (framework/_schema.py).

Each schema is also checked against values with `jsonschema` (draft 2020-12), so that what
the document promises and what the check accepts are the same thing.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any, Literal, NotRequired, Optional, TypedDict

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pydantic
import pytest

from trio_dwex.framework._convert import ConversionError, UnsupportedType
from trio_dwex.framework._schema import JsonSchema, SchemaRegistry, value_checker


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    """A point on the plane."""

    x: int
    y: int = 0
    label: str | None = None


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color = Color.RED
    tags: dict[str, float] = dataclasses.field(default_factory=dict)
    area: float = dataclasses.field(init=False, default=0.0)


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


class Update(TypedDict):
    count: int
    note: NotRequired[str]


class Struct(msgspec.Struct):
    id: int
    name: str


class Model(pydantic.BaseModel):
    id: int
    when: datetime.datetime


@pytest.mark.parametrize(
    ("tp", "schema"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (Any, {}),
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Optional[str], {"anyOf": [{"type": "string"}, {"type": "null"}]}),  # noqa: UP045
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (dict[str, bool], {"type": "object", "additionalProperties": {"type": "boolean"}}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[3], {"type": "integer", "const": 3}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        (datetime.datetime, {"type": "string", "format": "date-time"}),
    ],
)
def test_plain_annotations(tp: object, schema: JsonSchema) -> None:
    registry = SchemaRegistry()
    assert registry.schema(tp) == schema
    assert registry.components == {}


def test_a_dataclass_is_a_shared_component_with_its_fields() -> None:
    registry = SchemaRegistry()
    assert registry.schema(Shape) == {"$ref": "#/components/schemas/Shape"}
    assert registry.schema(list[Shape]) == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Shape"},
    }
    shape = registry.components["Shape"]
    assert shape["required"] == ["name", "points"]
    assert shape["additionalProperties"] is False
    assert shape["properties"]["color"] == {"$ref": "#/components/schemas/Color", "default": "red"}
    assert shape["properties"]["area"] == {"type": "number", "readOnly": True}
    assert registry.components["Color"] == {"type": "string", "enum": ["red", "blue"]}
    point = registry.components["Point"]
    assert point["description"] == "A point on the plane."
    assert point["properties"]["y"] == {"type": "integer", "default": 0}
    assert "description" not in shape  # the docstring dataclasses write is no description


def test_a_self_referencing_dataclass() -> None:
    registry = SchemaRegistry()
    registry.schema(Tree)
    children = registry.components["Tree"]["properties"]["children"]
    assert children == {"type": "array", "items": {"$ref": "#/components/schemas/Tree"}}
    check = value_checker(Tree)
    check({"value": 1, "children": [{"value": 2}]}, "")
    with pytest.raises(ConversionError) as caught:
        check({"value": 1, "children": [{"value": "two"}]}, "")
    assert caught.value.field == "children[0].value"


def test_two_types_with_one_name_get_two_components() -> None:
    other = dataclasses.make_dataclass("Point", [("z", int)])
    registry = SchemaRegistry()
    registry.schema(Point)
    assert registry.schema(other) != registry.schema(Point)
    assert len(registry.components) == 2
    assert registry.components["Point"]["properties"].keys() == {"x", "y", "label"}


def test_typed_dict_required_and_optional_keys() -> None:
    registry = SchemaRegistry()
    registry.schema(Update)
    assert registry.components["Update"] == {
        "type": "object",
        "properties": {"count": {"type": "integer"}, "note": {"type": "string"}},
        "required": ["count"],
        "additionalProperties": False,
    }


def test_msgspec_and_pydantic_types_use_their_own_schemas() -> None:
    registry = SchemaRegistry()
    assert registry.schema(Struct) == {"$ref": "#/components/schemas/Struct"}
    assert registry.components["Struct"]["required"] == ["id", "name"]
    assert registry.schema(Model) == {"$ref": "#/components/schemas/Model"}
    model = registry.components["Model"]
    assert model["properties"]["when"]["format"] == "date-time"
    assert registry.schema(list[Model])["items"] == {"$ref": "#/components/schemas/Model"}


class Unknown:
    pass


@pytest.mark.parametrize("tp", [Unknown, set[int], dict[int, str]])
def test_an_unsupported_annotation_says_what_is(tp: object) -> None:
    with pytest.raises(UnsupportedType):
        SchemaRegistry().schema(tp)
    with pytest.raises(UnsupportedType):
        value_checker(tp)


def test_an_unsupported_field_is_named() -> None:
    @dataclasses.dataclass
    class Holder:
        thing: Unknown

    with pytest.raises(UnsupportedType, match=r"field Holder\.thing"):
        SchemaRegistry().schema(Holder)
    with pytest.raises(UnsupportedType, match=r"field Holder\.thing"):
        value_checker(Holder)


# -- checks --------------------------------------------------------------------------------

GOOD: list[tuple[object, object]] = [
    (int, 3),
    (float, 3),
    (float, 2.5),
    (str | None, None),
    (list[int], [1, 2]),
    (Color, Color.BLUE),
    (Color, "blue"),
    (Literal["a", 1], 1),
    (Point, Point(1, 2)),
    (Point, {"x": 1}),
    (Point, {"x": 1, "y": 2, "label": None}),
    (Shape, {"name": "s", "points": [{"x": 1}], "color": "blue", "tags": {"w": 1.5}}),
    (Update, {"count": 1}),
    (Update, {"count": 1, "note": "n"}),
    (Struct, Struct(1, "a")),
    (Struct, {"id": 1, "name": "a"}),
    (Model, {"id": 1, "when": datetime.datetime(2024, 1, 1)}),
    (tuple[int, str], (1, "a")),
]

BAD: list[tuple[object, object, str, str]] = [
    (int, "3", "", "must be an integer"),
    (int, True, "", "must be an integer"),
    (bool, 1, "", "must be a boolean"),
    (str, None, "", "must be a string"),
    (list[int], [1, "2"], "[1]", "must be an integer"),
    (dict[str, int], {"a": "x"}, "a", "must be an integer"),
    (Color, "green", "", "must be one of"),
    (Literal["a", "b"], "c", "", "must be one of"),
    (Point, {"y": 1}, "x", "is required"),
    (Point, {"x": 1, "z": 2}, "z", "is not a field of Point"),
    (Point, Point("1", 2), "x", "must be an integer"),  # type: ignore[arg-type]
    (Point, [1, 2], "", "must be a Point or an object of its fields"),
    (Shape, {"name": "s", "points": [{"x": "one"}]}, "points[0].x", "must be an integer"),
    (Update, {"note": "n"}, "count", "is required"),
    (Update, {"count": 1, "extra": 2}, "extra", "is not a field of Update"),
    (Struct, {"id": "1", "name": "a"}, "id", "must be `int`, got `str`"),
    (Struct, Struct("1", "a"), "id", "must be `int`"),  # type: ignore[arg-type]
    (Model, {"id": "x", "when": "2024-01-01T00:00:00"}, "id", "integer"),
    (tuple[int, str], (1,), "", "must have 2 items"),
    (int | None, "x", "", "must be int | None"),
]


@pytest.mark.parametrize(("tp", "value"), GOOD)
def test_values_that_fit(tp: object, value: object) -> None:
    value_checker(tp)(value, "")


@pytest.mark.parametrize(("tp", "value", "field", "problem"), BAD)
def test_values_that_do_not_fit_name_the_field(
    tp: object, value: object, field: str, problem: str
) -> None:
    with pytest.raises(ConversionError) as caught:
        value_checker(tp)(value, "")
    assert caught.value.field == field
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    ("tp", "value"),
    [
        (tp, value)
        for tp, value in GOOD
        if not isinstance(value, Point | Struct | enum.Enum | tuple)
        and not (isinstance(value, dict) and isinstance(value.get("when"), datetime.datetime))
    ],
)
def test_what_the_check_accepts_the_schema_accepts(tp: object, value: object) -> None:
    """JSON-shaped values only: the schema describes the JSON the serializer writes."""
    registry = SchemaRegistry()
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {},
        **registry.schema(tp),
    }
    document["components"] = {"schemas": registry.components}
    jsonschema.Draft202012Validator(document).validate(value)


@pytest.mark.parametrize(
    ("tp", "value"),
    [
        (tp, value)
        for tp, value, _, _ in BAD
        if not isinstance(value, Point | Struct | tuple) and tp is not Model
    ],
)
def test_what_the_check_refuses_the_schema_refuses(tp: object, value: object) -> None:
    registry = SchemaRegistry()
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", **registry.schema(tp)}
    document["components"] = {"schemas": registry.components}
    assert not jsonschema.Draft202012Validator(document).is_valid(value)
