"""An app that cannot start: its provider fails at startup, so every worker exits with an error.

For the crash-loop test of ``trio-dwex run --workers N`` (tests/serving/test_supervision.py).
"""

from __future__ import annotations

from types import TracebackType

from trio_dwex import Controller, Get, Injectable, Module, create_app


@Injectable()
class Database:
    async def __aenter__(self) -> Database:
        raise ConnectionRefusedError("the database is down (on purpose, for the test)")

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


@Controller()
class HealthController:
    def __init__(self, database: Database) -> None:
        self.database = database

    @Get("health")
    def health(self) -> dict[str, bool]:
        return {"ok": True}


@Module(controllers=[HealthController], providers=[Database])
class CrashingModule:
    pass


app = create_app(CrashingModule)
