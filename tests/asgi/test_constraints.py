"""`Constraint`: bounds beyond a type, checked in bodies, parameters and events, and documented."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, TypedDict

import httpx
import pytest

from trio_dwex import (
    Body,
    Constraint,
    Controller,
    EventContractError,
    Module,
    Post,
    Query,
    Sse,
    SseEvent,
    create_app,
)
from trio_dwex.testing import serve_app


@dataclass
class Signup:
    name: Annotated[str, Constraint(min_length=2, max_length=5)]
    code: Annotated[str, Constraint(pattern=r"^[A-Z]{3}$")]
    age: Annotated[int, Constraint(ge=18, lt=130)]
    tags: Annotated[list[str], Constraint(max_length=2)] | None = None


class Tick(TypedDict):
    n: Annotated[int, Constraint(gt=0)]


@Controller()
class SignupController:
    @Post("signup")
    def signup(
        self,
        form: Annotated[Signup, Body()],
        page: Annotated[int, Query(), Constraint(ge=1)] = 1,
    ) -> dict[str, object]:
        return {"name": form.name, "page": page}

    @Sse("ticks", events={"tick": Tick})
    async def ticks(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data={"n": 1}, event="tick")


@Module(controllers=[SignupController])
class SignupModule:
    pass


async def test_bounds_are_checked_with_every_problem_at_once() -> None:
    app = create_app(SignupModule)
    bad = {"name": "x", "code": "abc", "age": 17, "tags": ["a", "b", "c"]}
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        refused = await client.post("/signup", json=bad, params={"page": 0})
        good = await client.post("/signup", json={"name": "ada", "code": "ABC", "age": 36})
    assert [(e["location"], e["message"]) for e in refused.json()["errors"]] == [
        ("body.name", "must have at least 2 characters, got 1"),
        ("body.code", "must match the pattern ^[A-Z]{3}$"),
        ("body.age", "must be at least 18, got 17"),
        ("body.tags", "must have at most 2 items, got 3"),
        ("query.page", "must be at least 1, got 0"),
    ]
    assert good.json() == {"name": "ada", "page": 1}


def test_bounds_are_in_the_document_and_in_the_event_check() -> None:
    app = create_app(SignupModule)
    assert app.openapi is not None
    schema = app.openapi["components"]["schemas"]["Signup"]["properties"]
    assert schema["name"] == {"type": "string", "minLength": 2, "maxLength": 5}
    assert schema["code"] == {"type": "string", "pattern": "^[A-Z]{3}$"}
    assert schema["age"] == {"type": "integer", "minimum": 18, "exclusiveMaximum": 130}
    operation = app.openapi["paths"]["/signup"]["post"]
    assert operation["parameters"][0]["schema"]["minimum"] == 1
    contract = app.plan.routes[1].events
    assert contract is not None
    contract.check(SseEvent(data={"n": 1}, event="tick"))
    with pytest.raises(EventContractError, match="data field 'n' must be more than 0, got 0"):
        contract.check(SseEvent(data={"n": 0}, event="tick"))


def test_a_bad_pattern_fails_where_it_is_written() -> None:
    with pytest.raises(ValueError, match="is not a regex"):
        Constraint(pattern="(")
