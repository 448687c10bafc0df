"""A small trio-dwex app whose streams record how they ended, for the testing-toolkit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from trio_dwex import Controller, DwexApp, Module, Sse, SseEvent, create_app

#: A big event, so that a stalled client's buffers fill after a few sends.
BIG = "x" * 50_000


class Cleanups:
    """What the streams' ``finally`` blocks saw; one per app."""

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.changed = trio.Event()

    def record(self, name: str) -> None:
        self.finished.append(name)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, name: str) -> None:
        while name not in self.finished:
            await self.changed.wait()


def make_app(*, send_timeout: float = 30.0) -> tuple[DwexApp, Cleanups]:
    """``/idle``: one event, then silence. ``/flood``: big events as fast as they are taken."""
    cleanups = Cleanups()

    @Controller()
    class StreamsController:
        @Sse("idle", keepalive=None)
        async def idle(self) -> AsyncIterator[SseEvent]:
            try:
                yield SseEvent(data="hello", event="greeting", id="1")
                await trio.sleep_forever()
            finally:
                cleanups.record("idle")

        @Sse("flood", keepalive=None, send_timeout=send_timeout)
        async def flood(self) -> AsyncIterator[SseEvent]:
            try:
                for n in range(10_000):  # bounded: at most ~500 MB, never reached in a test
                    yield SseEvent(data=BIG, id=str(n))
                    # A checkpoint per event: without one, the stream runner (as of this
                    # writing) takes a cancelled stream's next yield for a yield inside
                    # `finally` and drains the generator, then fails after 100 events.
                    await trio.lowlevel.checkpoint()
            finally:
                cleanups.record("flood")

    @Module(controllers=[StreamsController])
    class AppModule:
        pass

    return create_app(AppModule), cleanups
