"""Every problem of a request at once, each with its location, in one shape; on a real server.

A client that sends ``{"quantity": "two"}`` should learn in one answer that ``item`` and
``price`` are missing and ``quantity`` is not a number, not one at a time over three requests.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import msgspec
import pydantic
import pytest

from trio_dwex import (
    Body,
    Controller,
    Cookie,
    Headers,
    Module,
    Post,
    Query,
    RequestValidationError,
    create_app,
)
from trio_dwex.testing import serve_app
from trio_dwex.wire import json_serializer


@dataclasses.dataclass
class Order:
    item: str
    quantity: int
    price: float


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


@dataclasses.dataclass
class Basket:
    lines: list[Line]
    note: str = ""


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Typed:
    at: datetime.datetime
    day: datetime.date
    token: uuid.UUID
    amount: decimal.Decimal
    colour: Colour
    when: datetime.time | None = None


class StructOrder(msgspec.Struct):
    item: str
    quantity: int


class ModelOrder(pydantic.BaseModel):
    item: str
    quantity: int = pydantic.Field(gt=0)
    price: float


@Controller()
class OrderController:
    @Post("orders", status=201)
    def create(self, order: Annotated[Order, Body()]) -> dict[str, Any]:
        return dataclasses.asdict(order)

    @Post("search")
    def search(
        self,
        basket: Annotated[Basket, Body()],
        limit: Annotated[int, Query()],
        session: Annotated[str, Cookie()],
        trace: Annotated[int, Headers("x-trace")] = 0,
    ) -> dict[str, int]:
        return {"limit": limit}

    @Post("typed")
    def typed(self, value: Annotated[Typed, Body()]) -> Any:
        return value

    @Post("struct")
    def struct(self, order: Annotated[StructOrder, Body()]) -> dict[str, Any]:
        return {"item": order.item, "quantity": order.quantity}

    @Post("model")
    def model(self, order: Annotated[ModelOrder, Body()]) -> dict[str, Any]:
        return order.model_dump()


@Module(controllers=[OrderController])
class OrderModule:
    pass


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(create_app(OrderModule)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield client


def problems(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"statusCode", "error", "message", "errors"}
    return [(error["location"], error["message"]) for error in body["errors"]]


async def test_every_problem_of_a_body_at_once(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", json={"quantity": "two", "colour": 1})
    assert problems(response) == [
        ("body.colour", "is not a field of Order (expected: item, quantity, price)"),
        ("body.item", "is required"),
        ("body.quantity", 'must be an integer, got "two"'),
        ("body.price", "is required"),
    ]
    assert response.json()["message"] == (
        "4 problems: body field 'colour' is not a field of Order (expected: item, quantity, "
        "price); body field 'item' is required; body field 'quantity' must be an integer, "
        "got \"two\"; body field 'price' is required"
    )
    created = await client.post("/orders", json={"item": "tea", "quantity": 2, "price": 3})
    assert (created.status_code, created.json()) == (
        201,
        {"item": "tea", "quantity": 2, "price": 3.0},
    )


async def test_problems_of_every_source_together(client: httpx.AsyncClient) -> None:
    basket = {"lines": [{"sku": "a", "qty": 1}, {"sku": 2, "qty": "x"}, {"qty": 3}]}
    response = await client.post(
        "/search", json=basket, params={"limit": "ten"}, headers={"X-Trace": "no"}
    )
    assert problems(response) == [
        ("body.lines[1].sku", "must be a string, got 2"),
        ("body.lines[1].qty", 'must be an integer, got "x"'),
        ("body.lines[2].sku", "is required"),
        ("query.limit", "must be an integer, got 'ten'"),
        ("cookie.session", "is required"),
        ("header.x-trace", "must be an integer, got 'no'"),
    ]
    one = await client.post(
        "/search", json={"lines": []}, params={"limit": "1"}, headers={"Cookie": "session=s"}
    )
    assert one.json() == {"limit": 1}
    bad_json = await client.post(
        "/search", content=b"{", params={"limit": "x"}, headers={"Content-Type": "application/json"}
    )
    assert [location for location, _ in problems(bad_json)] == [
        "body",
        "query.limit",
        "cookie.session",
    ]
    assert bad_json.json()["errors"][0]["message"].startswith("is not valid JSON")


async def test_a_single_problem_keeps_its_one_sentence(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", json={"item": "tea", "quantity": 1, "price": "x"})
    assert response.json() == {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "body field 'price' must be a number, got \"x\"",
        "errors": [{"location": "body.price", "message": 'must be a number, got "x"'}],
    }
    empty = await client.post("/orders", headers={"Content-Type": "application/json"})
    assert problems(empty) == [("body", "is required; send a JSON document")]


async def test_a_flood_of_problems_is_cut_short(client: httpx.AsyncClient) -> None:
    lines = [{"sku": index, "qty": 1} for index in range(500)]
    response = await client.post(
        "/search", json={"lines": lines}, params={"limit": 1}, headers={"Cookie": "session=s"}
    )
    listed = problems(response)
    assert len(listed) == RequestValidationError.MAX_LISTED
    assert listed[0] == ("body.lines[0].sku", "must be a string, got 0")
    assert response.json()["message"].startswith("500 problems: ")
    assert response.json()["message"].endswith(
        f"; and {500 - RequestValidationError.MAX_LISTED} more"
    )


async def test_what_the_serializer_writes_decodes_back(client: httpx.AsyncClient) -> None:
    value = Typed(
        at=datetime.datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=datetime.UTC),
        day=datetime.date(2026, 2, 28),
        token=uuid.uuid4(),
        amount=decimal.Decimal("12345678901234567890.000000000001"),
        colour=Colour.BLUE,
        when=datetime.time(23, 59, 1),
    )
    sent = json_serializer(value)
    response = await client.post(
        "/typed", content=sent.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.text == sent  # decoded to the same values, encoded the same way again
    bad = {"at": "yesterday", "day": "2026-02-30", "token": "x", "amount": "NaN", "colour": "green"}
    assert [location for location, _ in problems(await client.post("/typed", json=bad))] == [
        "body.at",
        "body.day",
        "body.token",
        "body.amount",
        "body.colour",
    ]
    number = {**json.loads(sent), "amount": 0.1}
    assert (await client.post("/typed", json=number)).json()["amount"] == "0.1"


async def test_msgspec_and_pydantic_bodies(client: httpx.AsyncClient) -> None:
    ok = await client.post("/struct", json={"item": "tea", "quantity": 2})
    assert ok.json() == {"item": "tea", "quantity": 2}
    # msgspec stops at its first problem.
    assert problems(await client.post("/struct", json={"quantity": 2})) == [
        ("body.item", "is required")
    ]
    assert problems(await client.post("/struct", json={"item": "t", "quantity": "2"})) == [
        ("body.quantity", "must be `int`, got `str`")
    ]
    model = await client.post("/model", json={"item": "tea", "quantity": 2, "price": 1})
    assert model.json() == {"item": "tea", "quantity": 2, "price": 1.0}
    # pydantic reports them all.
    wrong = problems(await client.post("/model", json={"quantity": 0, "price": "free"}))
    assert [location for location, _ in wrong] == ["body.item", "body.quantity", "body.price"]
    assert wrong[0][1] == "is required"
    assert wrong[1][1] == "Input should be greater than 0"
