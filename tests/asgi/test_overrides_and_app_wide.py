"""Provider overrides for tests, and guards and interceptors for every route; on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from trio_dwex import (
    CallNext,
    ConfigurationError,
    Controller,
    ExecutionContext,
    Get,
    Injectable,
    Module,
    Provider,
    Sse,
    SseEvent,
    UnauthorizedException,
    UseGuards,
    UseInterceptors,
    create_app,
)
from trio_dwex.testing import serve_app


@dataclass(frozen=True)
class BoardConfig:
    title: str = "Orders"


@Injectable()
class Clock:
    def now(self) -> float:
        return 1_000.0


@Injectable()
class Greeter:
    def __init__(self, config: BoardConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock


ORDER: list[str] = []


@Injectable()
class KeyGuard:
    def can_activate(self, context: ExecutionContext) -> bool:
        ORDER.append("app guard")
        if context.request.headers.get("x-key") != "k":
            raise UnauthorizedException("send X-Key")
        return True


class RouteGuard:
    def can_activate(self, context: ExecutionContext) -> bool:
        ORDER.append("route guard")
        return True


class Stamp:
    def __init__(self, name: str) -> None:
        self.name = name

    async def intercept(self, context: ExecutionContext, call_next: CallNext) -> Any:
        ORDER.append(f"{self.name} in")
        result = await call_next()
        ORDER.append(f"{self.name} out")
        if isinstance(result, dict):
            return {**result, "stamped": [*result.get("stamped", []), self.name]}
        return result


@Controller()
@UseGuards(RouteGuard)
@UseInterceptors(Stamp("controller"))
class BoardController:
    def __init__(self, greeter: Greeter) -> None:
        self.greeter = greeter

    @Get("title")
    def title(self) -> dict[str, Any]:
        return {"title": self.greeter.config.title, "now": self.greeter.clock.now()}

    @Sse("stream")
    async def stream(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="one")


@Module(
    controllers=[BoardController],
    providers=[Greeter, Clock, Provider(BoardConfig, use_value=BoardConfig())],
)
class BoardModule:
    pass


class FrozenClock(Clock):
    def now(self) -> float:
        return 42.0


async def test_overrides_replace_the_modules_providers() -> None:
    app = create_app(
        BoardModule,
        overrides=[
            Provider(BoardConfig, use_value=BoardConfig(title="Test board")),
            Provider(Clock, use_class=FrozenClock),
        ],
    )
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        body = (await client.get("/title")).json()
    assert (body["title"], body["now"]) == ("Test board", 42.0)
    plain = create_app(BoardModule)
    assert plain.plan.container.get(BoardConfig).title == "Orders"  # nothing leaked
    with pytest.raises(ConfigurationError, match="BoardConfig is overridden twice"):
        create_app(
            BoardModule,
            overrides=[
                Provider(BoardConfig, use_value=BoardConfig("a")),
                Provider(BoardConfig, use_value=BoardConfig("b")),
            ],
        )
    with pytest.raises(ConfigurationError, match="not marked @Injectable"):
        create_app(BoardModule, overrides=[FrozenClock])


async def test_app_wide_guards_and_interceptors_run_first_on_every_route() -> None:
    app = create_app(BoardModule, guards=[KeyGuard], interceptors=[Stamp("app")])
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        refused = await client.get("/title")
        assert (refused.status_code, refused.json()["message"]) == (401, "send X-Key")
        stream_refused = await client.get("/stream")
        assert stream_refused.status_code == 401  # before the stream opened
        assert app.stats()["opened"] == 0
        ORDER.clear()
        body = (await client.get("/title", headers={"X-Key": "k"})).json()
        assert body["stamped"] == ["controller", "app"]  # the app's is the outermost
        assert ORDER == [
            "app guard",
            "route guard",
            "app in",
            "controller in",
            "controller out",
            "app out",
        ]
        streamed = await client.get("/stream", headers={"X-Key": "k"})
        assert streamed.text.startswith("data: one")
    with pytest.raises(ConfigurationError, match=r"in create_app\(guards=...\) is not a guard"):
        create_app(BoardModule, guards=[Stamp("x")])
