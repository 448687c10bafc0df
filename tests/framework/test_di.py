"""The container: constructor injection by type hint, errors that show the chain, lifespans.

Classes are defined at module level because this module uses ``from __future__ import
annotations``: constructor hints are strings, resolved in the module's globals.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest
import trio

from trio_dwex._errors import ConfigurationError, ProviderNotFound
from trio_dwex.framework import (
    Container,
    Controller,
    Get,
    Injectable,
    Module,
    Provider,
    compile_application,
)


@Injectable()
class Clock:
    def now(self) -> float:
        return 0.0


@Injectable()
class NotificationService:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock


@Controller("events")
class EventsController:
    def __init__(self, notifications: NotificationService) -> None:
        self.notifications = notifications

    @Get()
    def index(self) -> str:
        return "ok"


@Controller("other")
class OtherController:
    def __init__(self, notifications: NotificationService, clock: Clock) -> None:
        self.notifications = notifications
        self.clock = clock

    @Get()
    def index(self) -> str:
        return "ok"


def test_missing_provider_message_shows_the_chain() -> None:
    @Module(controllers=[EventsController], providers=[NotificationService])
    class AppModule: ...

    with pytest.raises(ProviderNotFound) as info:
        compile_application(AppModule)
    # The chain starts at the controller that needs the missing provider.
    assert str(info.value) == (
        "cannot resolve EventsController -> NotificationService -> Clock: no provider for "
        "Clock; add it to providers=[...] of a module"
    )


def test_missing_provider_from_a_controller_shows_the_controller() -> None:
    @Module(controllers=[EventsController])
    class AppModule: ...

    with pytest.raises(ProviderNotFound) as info:
        compile_application(AppModule)
    assert str(info.value).startswith(
        "cannot resolve EventsController -> NotificationService: no provider for "
        "NotificationService; add it to providers=[...]"
    )


def test_singletons_are_shared_between_controllers_and_modules() -> None:
    @Module(providers=[Clock, NotificationService])
    class CoreModule: ...

    @Module(controllers=[EventsController, OtherController], imports=[CoreModule])
    class AppModule: ...

    plan = compile_application(AppModule)
    controllers = {route.controller_class: route.controller for route in plan.routes}
    events = controllers[EventsController]
    other = controllers[OtherController]
    assert isinstance(events, EventsController)
    assert isinstance(other, OtherController)
    assert events.notifications is other.notifications
    assert other.clock is other.notifications.clock
    assert plan.container.get(Clock) is other.clock


@Injectable()
class Egg:
    def __init__(self, chicken: Chicken) -> None: ...


@Injectable()
class Chicken:
    def __init__(self, egg: Egg) -> None: ...


@Injectable()
class Farm:
    def __init__(self, chicken: Chicken) -> None: ...


def test_cycle_message_shows_the_loop() -> None:
    container = Container()
    for cls in (Farm, Chicken, Egg):
        container.register(cls, origin="FarmModule")
    with pytest.raises(ConfigurationError) as info:
        container.instantiate_all()
    assert not isinstance(info.value, ProviderNotFound)
    assert str(info.value).startswith(
        "cannot resolve Farm -> Chicken -> Egg -> Chicken: dependency cycle "
        "(Chicken -> Egg -> Chicken); break it"
    )


class Settings:
    def __init__(self, url: str) -> None:
        self.url = url


class Database:
    def __init__(self, url: str) -> None:
        self.url = url


def make_database(settings: Settings) -> Database:
    return Database(settings.url + "/db")


@Injectable()
class Repository:
    def __init__(self, database: Database, clock: Clock | None = None) -> None:
        self.database = database
        self.clock = clock


def test_value_and_factory_providers_and_optional_dependencies() -> None:
    settings = Settings("redis://x")
    container = Container()
    container.register(Provider(Settings, use_value=settings), origin="M")
    container.register(Provider(Database, use_factory=make_database), origin="M")
    container.register(Repository, origin="M")
    container.instantiate_all()
    repository = container.get(Repository)
    assert container.get(Settings) is settings
    assert repository.database.url == "redis://x/db"
    assert repository.clock is None  # optional, and nobody provides a Clock


class FakeClock(Clock):
    pass


def test_use_class_substitutes_an_implementation() -> None:
    container = Container()
    container.register(Provider(Clock, use_class=FakeClock), origin="TestModule")
    container.register(NotificationService, origin="TestModule")
    container.instantiate_all()
    assert type(container.get(NotificationService).clock) is FakeClock


def test_registration_mistakes() -> None:
    container = Container()
    with pytest.raises(ConfigurationError, match=r"not marked @Injectable\(\)"):
        container.register(Settings, origin="AppModule")
    with pytest.raises(ConfigurationError, match="exactly one of"):
        Provider(Settings)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="which is not a Settings"):
        Provider(Settings, use_value="redis://")
    container.register(Clock, origin="A")
    container.register(Clock, origin="B")  # the same recipe twice is fine
    with pytest.raises(ConfigurationError, match="Clock is provided twice, differently"):
        container.register(Provider(Clock, use_class=FakeClock), origin="C")


def test_a_constructor_that_raises_gets_a_note() -> None:
    @Injectable()
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("boom")

    container = Container()
    container.register(Broken, origin="M")
    with pytest.raises(RuntimeError, match="boom") as info:
        container.instantiate_all()
    assert any("while creating" in note for note in info.value.__notes__)


def test_dataclass_injectable() -> None:
    @Injectable()
    @dataclass
    class Service:
        clock: Clock

    container = Container()
    container.register(Clock, origin="M")
    container.register(Service, origin="M")
    container.instantiate_all()
    assert container.get(Service).clock is container.get(Clock)


# -- lifespan --------------------------------------------------------------------------------------

ORDER: list[str] = []


class _Recorded:
    name = "?"

    async def __aenter__(self) -> Any:
        await trio.lowlevel.checkpoint()
        ORDER.append(f"enter {self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await trio.lowlevel.checkpoint()
        ORDER.append(f"exit {self.name}")


@Injectable()
class Feed(_Recorded):
    """A long-running service: owns a nursery for its background task between enter and exit."""

    name = "Feed"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.ticks = 0
        self._stack = AsyncExitStack()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> Feed:
        await super().__aenter__()
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._nursery.start_soon(self._run)
        return self

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await trio.sleep(0.001)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        await self._stack.aclose()
        await super().__aexit__(exc_type, exc, tb)


@Injectable()
class Bus(_Recorded):
    name = "Bus"


@Injectable()
class Plain:
    pass


async def test_async_cm_providers_enter_in_dependency_order_and_exit_in_reverse() -> None:
    ORDER.clear()
    container = Container()
    for cls in (Feed, Plain, Bus):  # Feed listed first, but it depends on Bus
        container.register(cls, origin="M")
    container.instantiate_all()
    assert ORDER == []  # nothing is entered at compile time
    async with container.lifespan():
        assert ORDER == ["enter Bus", "enter Feed"]
        await trio.sleep(0.01)
        assert container.get(Feed).ticks > 0  # its background task runs while the app does
        with pytest.raises(RuntimeError, match="already running"):
            async with container.lifespan():
                pass  # pragma: no cover
    assert ORDER == ["enter Bus", "enter Feed", "exit Feed", "exit Bus"]


@Injectable()
class FailsToStart(_Recorded):
    name = "FailsToStart"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def __aenter__(self) -> Any:
        raise OSError("port taken")


async def test_a_failing_enter_exits_those_already_entered() -> None:
    ORDER.clear()
    container = Container()
    container.register(FailsToStart, origin="M")
    container.register(Bus, origin="M")
    container.instantiate_all()
    with pytest.raises(OSError, match="port taken"):
        async with container.lifespan():
            pytest.fail("must not start")  # pragma: no cover
    assert ORDER == ["enter Bus", "exit Bus"]


async def test_use_value_objects_are_not_entered() -> None:
    ORDER.clear()
    container = Container()
    container.register(Provider(Bus, use_value=Bus()), origin="M")
    container.instantiate_all()
    async with container.lifespan():
        pass
    assert ORDER == []


def test_unresolvable_hint_is_explained() -> None:
    @Injectable()
    class Local:
        def __init__(self, thing: DoesNotExist) -> None:  # type: ignore[name-defined]  # noqa: F821
            ...

    container = Container()
    container.register(Local, origin="M")
    with pytest.raises(ConfigurationError, match=re.escape("cannot read the type hints of")):
        container.instantiate_all()
