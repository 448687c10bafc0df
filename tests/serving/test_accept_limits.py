"""`ServerLimits`: connections beyond ``max_connections`` wait, and FD shortages log calmly."""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

from trio_dwex import Controller, Get, Module, ServerLimits, Sse, SseEvent, create_app
from trio_dwex.serving._limits import LimitedListener
from trio_dwex.testing import EventSource, serve_app

DEADLINE = 10


@Controller()
class HoldController:
    @Sse("hold")
    async def hold(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="open")
        await trio.sleep_forever()

    @Get("ping")
    async def ping(self) -> dict[str, bool]:
        return {"ok": True}


@Module(controllers=[HoldController])
class HoldModule:
    pass


async def test_a_connection_past_the_cap_waits_until_one_ends() -> None:
    limits = ServerLimits(max_connections=2)
    async with serve_app(create_app(HoldModule), limits=limits) as url:
        with trio.fail_after(DEADLINE):
            first = EventSource(url + "/hold")
            second = EventSource(url + "/hold")
            async with first, second:
                assert (await anext(aiter(first))).data == "open"
                assert (await anext(aiter(second))).data == "open"
                async with httpx.AsyncClient(base_url=url) as client, trio.open_nursery() as n:
                    answered = trio.Event()

                    async def third() -> None:
                        assert (await client.get("/ping")).json() == {"ok": True}
                        answered.set()

                    n.start_soon(third)
                    # Two connections are served: the third waits in the listen backlog.
                    with trio.move_on_after(0.5):
                        await answered.wait()
                    assert not answered.is_set()
                    await first.aclose()  # a slot frees up, and the third is served
                    await answered.wait()


class FailingListener(trio.abc.Listener[trio.abc.Stream]):
    """``accept`` fails with EMFILE, as at the file-descriptor limit, until told to stop."""

    def __init__(self) -> None:
        self.attempts = 0

    async def accept(self) -> trio.abc.Stream:
        self.attempts += 1
        await trio.lowlevel.checkpoint()
        raise OSError(errno.EMFILE, "Too many open files")

    async def aclose(self) -> None:
        pass


async def test_accept_errors_at_the_fd_limit_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    failing = FailingListener()
    listener = LimitedListener(failing, None, log_interval=10.0)
    with caplog.at_level(logging.DEBUG):
        with trio.move_on_after(35):  # on a virtual clock (autojump): no real waiting
            await listener.accept()
    lines = [r for r in caplog.records if "cannot accept connections" in r.message]
    assert failing.attempts >= 300  # it kept trying, every 0.1 s
    assert len(lines) == 4  # at 0, 10, 20 and 30 s
    assert "EMFILE" in lines[0].message
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    assert {r.name for r in caplog.records} == {"trio_dwex.serving"}


async def test_other_accept_errors_still_raise() -> None:
    class Broken(FailingListener):
        async def accept(self) -> trio.abc.Stream:
            raise OSError(errno.EBADF, "Bad file descriptor")

    slots = trio.Semaphore(1)
    with pytest.raises(OSError, match="Bad file descriptor"):
        await LimitedListener(Broken(), slots, log_interval=10.0).accept()
    assert slots.value == 1  # the slot taken for the failed accept was given back


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"accept_error_log_interval": float("nan")}, "accept_error_log_interval"),
        ({"h2_buffer_bytes": 10}, "h2_buffer_bytes"),
        ({"memory_trim_interval": 0}, "memory_trim_interval"),
        ({"memory_trim_interval": float("inf")}, "memory_trim_interval"),
        ({"unread_body_bytes": -1}, "unread_body_bytes"),
        ({"unread_body_bytes": 1.5}, "unread_body_bytes"),
    ],
)
def test_bad_limits_are_refused_by_name(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerLimits(**kwargs)  # type: ignore[arg-type]
