"""`UNSET` is trio-dwex's one "not given" value: the same object everywhere, and typed."""

from __future__ import annotations

import copy
import inspect
import pickle
from typing import Annotated, assert_type

from trio_dwex import UNSET, EventSourceResponse, Provider, Query, Sse, SseEvent
from trio_dwex._unset import Unset
from trio_dwex.framework._analysis import analyse_handler


def test_every_not_given_default_is_the_one_sentinel() -> None:
    # Options typed `... | Unset` (the stream options of @Sse and EventSourceResponse), and the
    # defaults that are "not given" without being typed so.
    typed = [
        parameter.default
        for function in (Sse, EventSourceResponse)
        for parameter in inspect.signature(function).parameters.values()
        if "Unset" in str(parameter.annotation)
    ]
    untyped = [
        inspect.signature(SseEvent).parameters["data"].default,
        *(
            inspect.signature(Provider).parameters[name].default
            for name in ("use_value", "use_class", "use_factory")
        ),
    ]
    assert len(typed) >= 12  # six options of @Sse, and the same six or more of the response
    assert all(default is UNSET for default in typed + untyped)


def test_a_handler_parameter_without_a_default_is_planned_with_it() -> None:
    class Ctl:
        def get(self, a: Annotated[int, Query()], b: Annotated[int | None, Query()] = None) -> None:
            pass

    plan = analyse_handler(Ctl.get, qualname="Ctl.get", sse=False)
    assert [param.default for param in plan.params] == [UNSET, None]


def test_it_stays_one_object_and_says_its_name() -> None:
    assert copy.copy(UNSET) is UNSET
    assert copy.deepcopy(UNSET) is UNSET
    assert pickle.loads(pickle.dumps(UNSET)) is UNSET
    assert list(Unset) == [UNSET]
    assert repr(UNSET) == "UNSET"
    assert SseEvent(comment="c").data is UNSET


def narrow(value: float | Unset | None) -> float | None:
    """Type-checked by ``mypy --strict`` (the lint session): ``is UNSET`` narrows, no ``Any``."""
    if value is UNSET:
        return 1.0
    assert_type(value, float | None)
    return value


def test_narrowing_by_identity() -> None:
    assert narrow(UNSET) == 1.0
    assert narrow(None) is None
    assert narrow(2.5) == 2.5
