"""The app that ``test_shutdown.py`` serves in a subprocess with ``trio-dwex run``.

``GET /stats`` is the metrics endpoint (`DwexApp.stats`). When the process exits, the counts
of what its streams lived through, and the server's count of writes it dropped because the
connection was gone (`trio_dwex.serving.dropped_writes`), are written as JSON to the file named
by the environment variable ``RELIABILITY_REPORT``: an ``atexit`` hook runs after ``trio.run``
has returned, so it sees every cleanup that ran, and only those.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os

from tests.reliability.apps import Counters, make_app
from trio_dwex import Controller, Get
from trio_dwex.lowlevel import StreamStats
from trio_dwex.serving import dropped_writes

counters = Counters()


@Controller("stats")
class StatsController:
    @Get()
    def stats(self) -> StreamStats:
        return app.stats()


app = make_app(counters, controllers=[StatsController])


def _report() -> None:
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        report = {
            **dataclasses.asdict(counters),
            "stats": app.stats(),
            "dropped_writes": dataclasses.asdict(dropped_writes),
        }
        with open(path, "w") as file:
            json.dump(report, file)


atexit.register(_report)
