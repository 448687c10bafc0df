"""`Constraint`: what a value must be beyond its type, said once where the type is.

``quantity: Annotated[int, Constraint(gt=0)]`` is checked wherever the framework converts or
checks a value of that annotation (a JSON body, an event's data), with a message that says what
was wanted, and the OpenAPI document says it too (``exclusiveMinimum: 0``), so that a client,
or a fuzzer, knows the rule without reading the handler.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Constraint", "constrained", "constraint_of"]


@dataclass(frozen=True)
class Constraint:
    """Bounds on a value, in ``Annotated[T, Constraint(...)]``; each one optional.

    ``min_length``/``max_length`` count a string's characters (or a list's items);
    ``pattern`` is a regular expression the string must contain a match of (anchor it with
    ``^...$`` for a whole match), as JSON Schema says; ``gt``/``ge``/``lt``/``le`` bound a
    number.
    """

    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            try:
                object.__setattr__(self, "_compiled", re.compile(self.pattern))
            except re.error as exc:
                raise ValueError(
                    f"Constraint(pattern={self.pattern!r}) is not a regex: {exc}"
                ) from None

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (of the right type already), or ``None``."""
        if isinstance(value, str | list | tuple | dict):
            noun = "characters" if isinstance(value, str) else "items"
            if self.min_length is not None and len(value) < self.min_length:
                return f"must have at least {self.min_length} {noun}, got {len(value)}"
            if self.max_length is not None and len(value) > self.max_length:
                return f"must have at most {self.max_length} {noun}, got {len(value)}"
        pattern = self._compiled
        if isinstance(value, str) and pattern is not None and pattern.search(value) is None:
            return f"must match the pattern {self.pattern}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            bounds = (
                (self.gt, value > (self.gt or 0), "more than"),
                (self.ge, value >= (self.ge or 0), "at least"),
                (self.lt, value < (self.lt or 0), "less than"),
                (self.le, value <= (self.le or 0), "at most"),
            )
            for bound, holds, word in bounds:
                if bound is not None and not holds:
                    return f"must be {word} {bound:g}, got {value!r}"
        return None

    def schema(self, value_schema: dict[str, Any]) -> dict[str, Any]:
        """``value_schema`` with these bounds as JSON Schema keywords."""
        is_array = value_schema.get("type") == "array"
        keywords: dict[str, Any] = {}
        if self.min_length is not None:
            keywords["minItems" if is_array else "minLength"] = self.min_length
        if self.max_length is not None:
            keywords["maxItems" if is_array else "maxLength"] = self.max_length
        if self.pattern is not None:
            keywords["pattern"] = self.pattern
        for name, bound in (
            ("exclusiveMinimum", self.gt),
            ("minimum", self.ge),
            ("exclusiveMaximum", self.lt),
            ("maximum", self.le),
        ):
            if bound is not None:
                keywords[name] = bound
        if "$ref" in value_schema:
            return {"allOf": [value_schema], **keywords}
        return {**value_schema, **keywords}


def constraint_of(metadata: Iterable[object]) -> Constraint | None:
    """The `Constraint` among an ``Annotated``'s metadata (the last, if several)."""
    found = None
    for item in metadata:
        if isinstance(item, Constraint):
            found = item
    return found


def constrained(tp: object) -> tuple[object, Constraint | None]:
    """``Annotated[T, Constraint(...)]`` as ``(T, the constraint)``; other types as they are."""
    if typing.get_origin(tp) is typing.Annotated:
        inner, *metadata = typing.get_args(tp)
        return inner, constraint_of(metadata)
    return tp, None
