"""An app for ``trio-dwex run --workers N`` tests: it tells which worker process answered.

``GET /pid`` answers the worker's pid and its garbage collector's thresholds (the command
tunes them). ``GET /pid/stream`` streams a ``hello`` event with the worker's pid, then waits;
when the stream ends, its generator's ``finally`` prints ``cleanup <pid>`` (to the inherited
stdout, whatever the log level), so a test can count the cleanups that ran.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator

import trio

from trio_dwex import Controller, Get, Module, Sse, SseEvent, create_app


@Controller("pid")
class PidController:
    @Get()
    def pid(self) -> dict[str, object]:
        return {"pid": os.getpid(), "gc": list(gc.get_threshold())}

    @Sse("stream")
    async def stream(self) -> AsyncIterator[SseEvent]:
        try:
            yield SseEvent(data={"pid": os.getpid()}, event="hello")
            await trio.sleep_forever()
        finally:
            # One write(2) of less than PIPE_BUF bytes: the workers share the pipe, and a
            # print() may be two writes (text, then newline) that interleave with the other's.
            os.write(1, f"cleanup {os.getpid()}\n".encode())


@Module(controllers=[PidController])
class WorkersModule:
    pass


app = create_app(WorkersModule)
