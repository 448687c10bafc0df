"""Decorators record specs; compile_application turns them into routes, or a clear error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest

from trio_dwex import UNSET
from trio_dwex._errors import ConfigurationError
from trio_dwex.framework import (
    CallNext,
    Controller,
    Delete,
    ExecutionContext,
    Get,
    Headers,
    Injectable,
    Module,
    Param,
    Post,
    Query,
    Req,
    RoutePlan,
    Sse,
    UseGuards,
    UseInterceptors,
    compile_application,
    solve_params,
)
from trio_dwex.framework._decorators import guards_of, route_specs

from .fakes import MakeRequest


class AllowAll:
    def can_activate(self, ctx: ExecutionContext) -> bool:
        return True


class Deny:
    def can_activate(self, ctx: ExecutionContext) -> bool:
        return False


class Passthrough:
    async def intercept(self, ctx: ExecutionContext, call_next: CallNext) -> Any:
        return await call_next()


def compile_one(controller: type, *, providers: list[object] | None = None) -> list[RoutePlan]:
    @Module(controllers=[controller], providers=providers or [])
    class AppModule: ...

    return list(compile_application(AppModule).routes)


def config_error(controller: type) -> str:
    with pytest.raises(ConfigurationError) as info:
        compile_one(controller)
    return str(info.value)


# -- decorators --------------------------------------------------------------------------------


def test_decorator_order_does_not_matter() -> None:
    class Ctl:
        @Sse("a")
        @UseGuards(AllowAll)
        @UseInterceptors(Passthrough)
        async def above(self) -> AsyncIterator[int]:
            yield 1

        @UseInterceptors(Passthrough)
        @UseGuards(AllowAll)
        @Sse("a")
        async def below(self) -> AsyncIterator[int]:
            yield 1

    for func in (Ctl.above, Ctl.below):
        assert [(s.method, s.path, s.kind) for s in route_specs(func)] == [("GET", "a", "sse")]
        assert guards_of(func) == (AllowAll,)


def test_stacked_use_guards_read_top_to_bottom() -> None:
    first, second, third = AllowAll(), AllowAll(), AllowAll()

    @UseGuards(first)
    @UseGuards(second, third)
    def handler(self: object) -> None: ...

    assert guards_of(handler) == (first, second, third)


def test_sse_records_only_the_options_given() -> None:
    @Sse("x", keepalive=None, buffer_size=8, headers={"X-A": "1"})
    async def handler(self: object) -> AsyncIterator[int]:
        yield 1

    (spec,) = route_specs(handler)
    assert dict(spec.sse_options) == {"keepalive": None, "buffer_size": 8, "headers": {"X-A": "1"}}
    assert repr(UNSET) == "UNSET"

    @Sse()
    async def plain(self: object) -> AsyncIterator[int]:
        yield 1

    assert dict(route_specs(plain)[0].sse_options) == {}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"keepalive": 0}, "keepalive must be a positive number of seconds or None"),
        ({"keepalive": float("inf")}, "keepalive"),
        ({"send_timeout": None}, "send_timeout must be a positive number of seconds, got"),
        ({"buffer_size": 0}, "buffer_size must be a positive int"),
        ({"buffer_size": True}, "buffer_size"),
        ({"buffer_bytes": 0}, "buffer_bytes must be a positive int"),
        ({"max_lifetime": -1}, "max_lifetime"),
        ({"headers": {"X": 1}}, "response header 'X' must be a str"),
        ({"headers": {"X": "a\nb"}}, "contains CR, LF or NUL"),
        ({"overflow": "close"}, "overflow must be an OverflowPolicy"),
    ],
)
def test_bad_sse_options_fail_at_once(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match="@Sse") as info:
        Sse("x", **options)
    assert fragment in str(info.value)


def test_route_decorator_on_a_non_function() -> None:
    with pytest.raises(ConfigurationError, match="remove @staticmethod"):

        class Ctl:
            @Get()
            @staticmethod
            def handler() -> None: ...


# -- compilation -------------------------------------------------------------------------------


@Controller("jobs")
class JobsController:
    @Sse("progress/:jobId", keepalive=5)
    async def track_progress(self, job_id: Annotated[str, Param("jobId")]) -> AsyncIterator[Any]:
        yield {"data": {"status": "started", "progress": 0}, "event": "start"}
        for progress in range(0, 101, 50):
            yield {"data": {"jobId": job_id, "progress": progress}, "id": f"{job_id}-{progress}"}

    @Get("{jobId}")
    async def get_job(self, job_id: Annotated[str, Param("jobId")]) -> dict[str, str]:
        return {"id": job_id}

    @Post()
    def create(self, title: Annotated[str, Query()]) -> dict[str, str]:
        return {"title": title}


def test_prefix_joining_and_both_path_syntaxes() -> None:
    routes = {route.name: route for route in compile_one(JobsController)}
    progress = routes["JobsController.track_progress"]
    assert progress.method == "GET"
    assert progress.path == "/jobs/progress/{jobId}"
    assert progress.kind == "sse"
    assert dict(progress.sse_options) == {"keepalive": 5}
    assert progress.controller_class is JobsController
    assert isinstance(progress.controller, JobsController)
    assert progress.handler is JobsController.track_progress
    assert progress.endpoint.__self__ is progress.controller  # type: ignore[attr-defined]
    assert progress.call_plan.style == "async_gen"
    assert routes["JobsController.get_job"].path == "/jobs/{jobId}"
    assert routes["JobsController.get_job"].kind == "http"
    assert routes["JobsController.create"].path == "/jobs"
    assert routes["JobsController.create"].method == "POST"


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("", "", "/"),
        ("/events/", "/updates/", "/events/updates"),
        ("api/v1", "items/{id}", "/api/v1/items/{id}"),
        ("", ":id", "/{id}"),
    ],
)
def test_prefix_variants(prefix: str, path: str, expected: str) -> None:
    @Controller(prefix)
    class Ctl:
        @Get(path)
        def handler(self, id: Annotated[str, Query()] = "") -> None: ...

    (route,) = compile_one(Ctl)
    assert route.path == expected


async def test_end_to_end_match_solve_invoke(make_request: MakeRequest) -> None:
    @Module(controllers=[JobsController])
    class AppModule: ...

    plan = compile_application(AppModule)
    route, params = plan.router.match("GET", "/jobs/progress/j7")
    assert route.name == "JobsController.track_progress"
    kwargs = await solve_params(route.call_plan, make_request(path=params))
    stream = route.endpoint(**kwargs)  # an async generator function: called, not awaited
    events = [event async for event in stream]
    assert events[0]["event"] == "start"
    assert events[-1] == {"data": {"jobId": "j7", "progress": 100}, "id": "j7-100"}


def test_guards_and_interceptors_controller_level_first() -> None:
    method_guard = AllowAll()

    @Injectable()
    class Tokens:
        pass

    class TokenGuard:
        def __init__(self, tokens: Tokens) -> None:
            self.tokens = tokens

        def can_activate(self, ctx: ExecutionContext) -> bool:
            return True

    @UseInterceptors(Passthrough)
    @Controller("private")
    @UseGuards(TokenGuard)
    class PrivateController:
        @Sse("notifications")
        @UseGuards(method_guard)
        @UseInterceptors(Passthrough())
        async def stream(self, req: Annotated[Any, Req()]) -> AsyncIterator[int]:
            yield 1

        @Get("other")
        @UseGuards(TokenGuard)
        def other(self) -> None: ...

    routes = {r.name: r for r in compile_one(PrivateController, providers=[Tokens])}
    stream = routes["PrivateController.stream"]
    token_guard, second = stream.guards
    assert isinstance(token_guard, TokenGuard)
    assert isinstance(token_guard.tokens, Tokens)  # guard constructor injected
    assert second is method_guard
    assert [type(i) for i in stream.interceptors] == [Passthrough, Passthrough]
    # The same guard class is one instance per app.
    assert routes["PrivateController.other"].guards == (token_guard, token_guard)


def test_the_guides_examples_compile() -> None:
    @Injectable()
    class NotificationService:
        async def subscribe(self, user_id: str) -> AsyncIterator[dict[str, str]]:
            yield {"id": "1", "for": user_id}

    @Controller("notifications")
    class NotificationsController:
        def __init__(self, notification_service: NotificationService) -> None:
            self.notification_service = notification_service

        @Sse("stream")
        async def stream_notifications(
            self, user_id: Annotated[str, Query("userId")]
        ) -> AsyncIterator[Any]:
            yield {"data": {"message": "Connected"}, "event": "connected"}
            async for notification in self.notification_service.subscribe(user_id):
                yield {"data": notification, "event": "notification", "id": notification["id"]}

        @Sse("updates")
        async def stream_updates(
            self, last_event_id: Annotated[str | None, Headers("last-event-id")] = None
        ) -> AsyncIterator[Any]:
            start = int(last_event_id) if last_event_id else 0
            for i in range(start, start + 3):
                yield {"data": {"count": i}, "id": str(i), "retry": 3000}

        @Sse("time")
        def stream_time(self) -> Any:  # imperative: returns an SseStream
            from trio_dwex.streams._stream import SseStream

            return SseStream()

    routes = compile_one(NotificationsController, providers=[NotificationService])
    styles = {r.path: r.call_plan.style for r in routes}
    assert styles == {
        "/notifications/stream": "async_gen",
        "/notifications/updates": "async_gen",
        "/notifications/time": "sync",
    }


@Injectable()
class Shared:
    pass


@Module(providers=[Shared], imports=[lambda: UsersModule])
class AccountsModule: ...


@Controller("users")
class UsersController:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    @Delete(":id")
    def remove(self, id: Annotated[int, Param()]) -> None: ...


@Module(controllers=[UsersController], imports=[AccountsModule])
class UsersModule: ...


def test_module_import_cycles_are_visited_once() -> None:
    @Module(imports=[AccountsModule, UsersModule])
    class AppModule: ...

    plan = compile_application(AppModule)
    assert plan.modules == (AppModule, AccountsModule, UsersModule)
    (route,) = plan.routes
    assert route.path == "/users/{id}"
    assert plan.router.match("DELETE", "/users/3") == (route, {"id": "3"})


# -- compile-time errors -------------------------------------------------------------------------


def test_controller_without_decorator() -> None:
    class Plain:
        @Get()
        def handler(self) -> None: ...

    assert "is not decorated with @Controller" in config_error(Plain)


def test_non_module_import_and_root() -> None:
    class NotAModule: ...

    @Module(imports=[NotAModule])
    class AppModule: ...

    with pytest.raises(ConfigurationError, match="AppModule imports NotAModule, which is not a"):
        compile_application(AppModule)
    with pytest.raises(ConfigurationError, match="NotAModule is not a module"):
        compile_application(NotAModule)


def test_sync_generator_sse_handler() -> None:
    @Controller()
    class Ctl:
        @Sse()
        def handler(self) -> Any:
            yield 1

    message = config_error(Ctl)
    assert message.startswith("Ctl.handler is a sync generator function")
    assert "async def" in message


def test_param_name_must_be_captured_by_the_path() -> None:
    @Controller("jobs")
    class Ctl:
        @Get(":jobId")
        def handler(self, job: Annotated[str, Param("id")]) -> None: ...

    assert config_error(Ctl).startswith(
        "Ctl.handler reads path parameter 'id' but its route GET /jobs/{jobId} captures jobId"
    )


def test_missing_marker_names_controller_and_method() -> None:
    @Controller()
    class Ctl:
        @Get()
        def handler(self, user_id: str) -> None: ...

    assert "parameter 'user_id' of Ctl.handler" in config_error(Ctl)


def test_duplicate_route_across_controllers() -> None:
    @Controller("a")
    class One:
        @Get("x")
        def first(self) -> None: ...

    @Controller("a/x")
    class Two:
        @Get()
        def second(self) -> None: ...

    @Module(controllers=[One, Two])
    class AppModule: ...

    with pytest.raises(ConfigurationError, match=r"Two.second and One.first both handle GET /a/x"):
        compile_application(AppModule)


def test_guard_without_can_activate() -> None:
    @Controller()
    class Ctl:
        @Get()
        @UseGuards(Passthrough)
        def handler(self) -> None: ...

    assert "Passthrough in @UseGuards on Ctl.handler is not a guard" in config_error(Ctl)


def test_inherited_routes_and_overrides() -> None:
    class Base:
        @Get("ping")
        def ping(self) -> str:
            return "pong"

        @Get("gone")
        def gone(self) -> None: ...

    @Controller("child")
    class Child(Base):
        def gone(self) -> None: ...  # overriding without a decorator removes the route

    (route,) = compile_one(Child)
    assert route.path == "/child/ping"
    assert route.name == "Child.ping"


def test_controller_without_routes() -> None:
    @Controller()
    class Empty: ...

    assert "controller without routes" in config_error(Empty)
