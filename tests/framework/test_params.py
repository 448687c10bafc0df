"""Parameter markers: analysed once into a plan, solved per request, 400s naming the parameter."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional

import pytest

from trio_dwex._errors import BadRequestException, ConfigurationError
from trio_dwex.framework import (
    MAX_BODY_DEPTH,
    Body,
    CallPlan,
    Headers,
    Param,
    Query,
    Req,
    RequestLike,
    solve_params,
)
from trio_dwex.framework._analysis import analyse_handler

from .fakes import FakeRequest, MakeRequest


def plan_of(func: Any, *, sse: bool = False) -> CallPlan:
    return analyse_handler(func, qualname=f"Ctl.{func.__name__}", sse=sse)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


async def solve(func: Any, request: FakeRequest) -> dict[str, Any]:
    return await solve_params(plan_of(func), request)


async def bad_request(func: Any, request: FakeRequest) -> str:
    with pytest.raises(BadRequestException) as info:
        await solve(func, request)
    assert info.value.status == 400
    return info.value.message


def test_fake_request_satisfies_protocol(make_request: MakeRequest) -> None:
    assert isinstance(make_request(), RequestLike)


# -- query ---------------------------------------------------------------------------------------


def q_scalars(
    self: object,
    count: Annotated[int, Query()],
    ratio: Annotated[float, Query()],
    flag: Annotated[bool, Query()],
    name: Annotated[str, Query("user-name")],
) -> None: ...


async def test_query_scalars_convert(make_request: MakeRequest) -> None:
    request = make_request(
        query=[("count", "-3"), ("ratio", "2.5e1"), ("flag", "YES"), ("user-name", "ada")]
    )
    assert await solve(q_scalars, request) == {
        "count": -3,
        "ratio": 25.0,
        "flag": True,
        "name": "ada",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("On", True),
        ("1", True),
        ("yes", True),
        ("FALSE", False),
        ("off", False),
        ("0", False),
        ("no", False),
    ],
)
async def test_bool_spellings(make_request: MakeRequest, text: str, expected: bool) -> None:
    def handler(self: object, flag: Annotated[bool, Query()]) -> None: ...

    assert await solve(handler, make_request(query=[("flag", text)])) == {"flag": expected}


@pytest.mark.parametrize(
    ("param", "text", "message"),
    [
        ("count", "abc", "query parameter 'count' must be an integer, got 'abc'"),
        ("count", "1.5", "query parameter 'count' must be an integer, got '1.5'"),
        ("count", "1_000", "query parameter 'count' must be an integer, got '1_000'"),
        ("ratio", "x", "query parameter 'ratio' must be a number, got 'x'"),
        ("ratio", "nan", "query parameter 'ratio' must be a number, got 'nan'"),
        ("ratio", "1e999", "query parameter 'ratio' must be a finite number, got '1e999'"),
        ("flag", "maybe", "query parameter 'flag' must be a boolean"),
    ],
)
async def test_query_conversion_failures_name_the_parameter(
    make_request: MakeRequest, param: str, text: str, message: str
) -> None:
    good = {"count": "1", "ratio": "1", "flag": "1", "user-name": "x"}
    good[param] = text
    got = await bad_request(q_scalars, make_request(query=list(good.items())))
    assert got.startswith(message)


async def test_missing_required_query_is_400(make_request: MakeRequest) -> None:
    def handler(self: object, user_id: Annotated[str, Query("userId")]) -> None: ...

    assert await bad_request(handler, make_request()) == "query parameter 'userId' is required"


async def test_defaults_and_optionals(make_request: MakeRequest) -> None:
    def handler(
        self: object,
        page: Annotated[int, Query()] = 1,
        size: Annotated[int | None, Query()] = None,
        sort: Annotated[Optional[str], Query()] = None,  # noqa: UP045 - testing Optional
        cursor: Annotated[str | None, Query()] = None,
    ) -> None: ...

    assert await solve(handler, make_request()) == {
        "page": 1,
        "size": None,
        "sort": None,
        "cursor": None,
    }
    got = await solve(handler, make_request(query=[("size", "5"), ("sort", "asc")]))
    assert got["size"] == 5
    assert got["sort"] == "asc"
    message = await bad_request(handler, make_request(query=[("size", "five")]))
    assert message == "query parameter 'size' must be an integer, got 'five'"


async def test_repeated_key_list_and_last_value_wins(make_request: MakeRequest) -> None:
    def handler(
        self: object,
        tag: Annotated[list[int], Query()],
        one: Annotated[str, Query()],
    ) -> None: ...

    request = make_request(query=[("tag", "1"), ("one", "a"), ("tag", "2"), ("one", "b")])
    assert await solve(handler, request) == {"tag": [1, 2], "one": "b"}
    assert await solve(handler, make_request(query=[("one", "a")])) == {"tag": [], "one": "a"}
    message = await bad_request(handler, make_request(query=[("tag", "x"), ("one", "a")]))
    assert message == "query parameter 'tag' must be an integer, got 'x'"


async def test_enums_and_literals(make_request: MakeRequest) -> None:
    def handler(
        self: object,
        color: Annotated[Color, Query()],
        level: Annotated[Level, Query()],
        mode: Annotated[Literal["fast", "slow"], Query()],
    ) -> None: ...

    request = make_request(query=[("color", "blue"), ("level", "2"), ("mode", "slow")])
    assert await solve(handler, request) == {
        "color": Color.BLUE,
        "level": Level.HIGH,
        "mode": "slow",
    }
    request = make_request(query=[("color", "green"), ("level", "2"), ("mode", "slow")])
    assert await bad_request(handler, request) == (
        "query parameter 'color' must be one of 'red', 'blue', got 'green'"
    )


# -- path and headers --------------------------------------------------------------------------


async def test_path_params(make_request: MakeRequest) -> None:
    def handler(
        self: object,
        job_id: Annotated[str, Param("jobId")],
        n: Annotated[int, Param()],
    ) -> None: ...

    request = make_request(path={"jobId": "j-1", "n": "7"})
    assert await solve(handler, request) == {"job_id": "j-1", "n": 7}
    message = await bad_request(handler, make_request(path={"jobId": "j", "n": "seven"}))
    assert message == "path parameter 'n' must be an integer, got 'seven'"


async def test_headers_by_name_by_parameter_and_whole(make_request: MakeRequest) -> None:
    def handler(
        self: object,
        last_id: Annotated[str | None, Headers("Last-Event-ID")] = None,
        x_retry_count: Annotated[int, Headers()] = 0,
        everything: Annotated[Mapping[str, str], Headers()] = {},
    ) -> None: ...

    request = make_request(headers={"Last-Event-ID": "41", "X-Retry-Count": "3"})
    got = await solve(handler, request)
    assert got["last_id"] == "41"
    assert got["x_retry_count"] == 3
    assert got["everything"] == {"last-event-id": "41", "x-retry-count": "3"}
    assert await solve(handler, make_request()) == {
        "last_id": None,
        "x_retry_count": 0,
        "everything": {},
    }
    message = await bad_request(handler, make_request(headers={"x-retry-count": "many"}))
    assert message == "header 'x-retry-count' must be an integer, got 'many'"


async def test_req_injects_the_request_itself(make_request: MakeRequest) -> None:
    def handler(self: object, req: Annotated[Any, Req()]) -> None: ...

    request = make_request()
    assert (await solve(handler, request))["req"] is request


# -- body ------------------------------------------------------------------------------------------


@dataclass
class Owner:
    name: str


@dataclass
class Job:
    title: str
    priority: int
    owner: Owner
    tags: list[str] = field(default_factory=list)
    weight: float = 1.0
    urgent: bool = False
    color: Color | None = None

    def __post_init__(self) -> None:
        if self.priority < 0:
            raise ValueError("priority cannot be negative")


def create_job(self: object, job: Annotated[Job, Body()]) -> None: ...


async def test_body_into_dataclass(make_request: MakeRequest) -> None:
    body = b'{"title": "t", "priority": 2, "owner": {"name": "ada"}, "weight": 3, "color": "red"}'
    request = make_request(body=body)
    job = (await solve(create_job, request))["job"]
    assert job == Job("t", 2, Owner("ada"), [], 3.0, False, Color.RED)
    assert isinstance(job.weight, float)
    assert request.body_reads == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"priority": 1, "owner": {"name": "a"}}', "body field 'title' is required"),
        (
            b'{"title": "t", "priority": "high", "owner": {"name": "a"}}',
            "body field 'priority' must be an integer, got \"high\"",
        ),
        (
            b'{"title": "t", "priority": true, "owner": {"name": "a"}}',
            "body field 'priority' must be an integer, got true",
        ),
        (
            b'{"title": "t", "priority": 1, "owner": {"name": 5}}',
            "body field 'owner.name' must be a string, got 5",
        ),
        (
            b'{"title": "t", "priority": 1, "owner": {"name": "a"}, "tags": ["x", 2]}',
            "body field 'tags[1]' must be a string, got 2",
        ),
        (
            b'{"title": "t", "priority": 1, "owner": {"name": "a"}, "extra": 1}',
            "body field 'extra' is not a field of Job (expected: title, priority, owner, tags, "
            "weight, urgent, color)",
        ),
        (b"[1, 2]", "body must be a JSON object, got [1, 2]"),
        (
            b'{"title": "t", "priority": -1, "owner": {"name": "a"}}',
            "body is not a valid Job: priority cannot be negative",
        ),
        (b"{not json", "request body is not valid JSON"),
        (b"\xff\xfe\x00", "request body is not valid JSON"),
        (b"", "request body is required; send a JSON document"),
        (b"   ", "request body is required; send a JSON document"),
    ],
)
async def test_body_errors_are_400_naming_the_field(
    make_request: MakeRequest, body: bytes, message: str
) -> None:
    assert (await bad_request(create_job, make_request(body=body))).startswith(message)


@pytest.mark.parametrize("depth", [MAX_BODY_DEPTH + 1, 10_000, 200_000])
async def test_deeply_nested_body_is_400(make_request: MakeRequest, depth: int) -> None:
    def handler(self: object, data: Annotated[Any, Body()]) -> None: ...

    body = b"[" * depth + b"]" * depth
    message = await bad_request(handler, make_request(body=body))
    assert message == f"request body is nested too deeply (the limit is {MAX_BODY_DEPTH} levels)"


async def test_body_at_the_depth_limit_is_accepted(make_request: MakeRequest) -> None:
    def handler(self: object, data: Annotated[Any, Body()]) -> None: ...

    body = b"[" * MAX_BODY_DEPTH + b"]" * MAX_BODY_DEPTH
    data = (await solve(handler, make_request(body=body)))["data"]
    for _ in range(MAX_BODY_DEPTH - 1):
        data = data[0]
    assert data == []


async def test_body_as_is_raw_and_optional(make_request: MakeRequest) -> None:
    def as_is(
        self: object, data: Annotated[dict[str, Any], Body()], raw: Annotated[Any, Req()]
    ) -> None: ...

    def raw(self: object, data: Annotated[bytes, Body()]) -> None: ...

    def optional(self: object, data: Annotated[dict[str, int] | None, Body()] = None) -> None: ...

    got = await solve(as_is, make_request(body=b'{"a": [1, {"b": null}]}'))
    assert got["data"] == {"a": [1, {"b": None}]}
    assert await solve(raw, make_request(body=b"\x00\x01")) == {"data": b"\x00\x01"}
    assert await solve(optional, make_request()) == {"data": None}
    assert await solve(optional, make_request(body=b'{"n": 1}')) == {"data": {"n": 1}}
    message = await bad_request(optional, make_request(body=b'{"n": "1"}'))
    assert message == "body field 'n' must be an integer, got \"1\""
    message = await bad_request(as_is, make_request(body=b"[]"))
    assert message == "body must be an object, got []"


# -- analysis errors -------------------------------------------------------------------------------


def test_parameter_without_marker_is_a_configuration_error() -> None:
    def handler(self: object, count: int) -> None: ...

    with pytest.raises(ConfigurationError) as info:
        plan_of(handler)
    message = str(info.value)
    assert "parameter 'count' of Ctl.handler" in message
    assert "Annotated[str, Query()]" in message


def test_marker_as_default_is_explained() -> None:
    def handler(self: object, count: int = Query()) -> None:  # type: ignore[assignment]
        ...

    with pytest.raises(ConfigurationError, match=r"write the marker in the annotation"):
        plan_of(handler)


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [
        (Annotated[bytes, Query()], "cannot convert text to bytes"),
        (Annotated[list[int], Param()], "list[...] is only for query parameters"),
        (Annotated[complex, Body()], "cannot build complex from JSON"),
        (Annotated[dict[int, str], Body()], "use dict[str, ...]"),
        (Annotated[str, Query(), Param()], "has 2 parameter markers"),
    ],
)
def test_unsupported_annotations_fail_at_analysis(annotation: Any, fragment: str) -> None:
    def handler(self: object, value: Any) -> None: ...

    handler.__annotations__["value"] = annotation
    with pytest.raises(ConfigurationError) as info:
        plan_of(handler)
    assert "parameter 'value' of Ctl.handler" in str(info.value)
    assert fragment in str(info.value)


def test_two_bodies_and_star_args_are_rejected() -> None:
    def two(self: object, a: Annotated[Any, Body()], b: Annotated[Any, Body()]) -> None: ...

    def star(self: object, *args: Annotated[str, Query()]) -> None: ...

    with pytest.raises(ConfigurationError, match="more than one Body"):
        plan_of(two)
    with pytest.raises(ConfigurationError, match="variadic positional"):
        plan_of(star)


def test_handler_kinds() -> None:
    def sync_gen(self: object) -> Any:
        yield 1

    async def async_gen(self: object) -> Any:
        yield 1

    with pytest.raises(ConfigurationError, match="sync generator function"):
        plan_of(sync_gen, sse=True)
    with pytest.raises(ConfigurationError, match=r"use @Sse\(\.\.\.\) to stream"):
        plan_of(async_gen)
    assert plan_of(async_gen, sse=True).style == "async_gen"
