"""`Runs`: producers detached from their connection, read from the start or from an id, cancelled
on purpose, bounded, expired, and ended by a documented policy at shutdown (issue 17).

These drive `Runs` directly on the memory backend; tests/examples/test_chat_runs.py drives it
over HTTP, on two servers sharing Redis, and from Chromium.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio

from tests.broadcast.conftest import BackendFactory, RedisServer
from tests.helpers import wait_until
from trio_dwex import (
    BadRequestException,
    GoneException,
    NotFoundException,
    ServiceUnavailableException,
    SseEvent,
    TooManyRequestsException,
)
from trio_dwex.broadcast import RUN_ENDED_EVENT, MemoryBackend, Runs


class Producer:
    """Counts what it produced, and whether its ``finally`` ran."""

    def __init__(self) -> None:
        self.produced = 0
        self.cleaned = False

    async def words(self, count: int, delay: float = 0.01) -> AsyncIterator[SseEvent]:
        try:
            for n in range(count):
                await trio.sleep(delay)
                self.produced += 1
                yield SseEvent(data=f"word {n}")
        finally:
            self.cleaned = True


async def read_all(events: AsyncIterator[SseEvent]) -> list[SseEvent]:
    return [event async for event in events]


def ended(event: SseEvent) -> dict[str, object]:
    assert event.event == RUN_ENDED_EVENT
    data: dict[str, object] = json.loads(str(event.data))
    return data


async def test_a_run_produces_without_a_reader_and_is_read_from_its_start() -> None:
    producer = Producer()
    async with Runs() as runs:
        run_id = await runs.start(producer.words(5), owner="ada")
        assert run_id.startswith("run_")
        assert (await runs.status(run_id)).status == "running"
        await wait_until(lambda: producer.produced == 5)  # nobody reads: it goes on anyway
        events = await read_all(await runs.events(run_id))
        info = await runs.status(run_id)
    assert [event.data for event in events[:-1]] == [f"word {n}" for n in range(5)]
    assert all(event.id for event in events)
    assert ended(events[-1]) == {"status": "completed", "error": None}
    assert (info.status, info.owner, info.error) == ("completed", "ada", None)
    assert info.ended_at is not None
    assert info.ended_at >= info.started_at
    assert producer.cleaned


async def test_a_reader_that_comes_back_with_its_last_id_gets_the_rest_exactly_once() -> None:
    producer = Producer()
    async with Runs() as runs:
        run_id = await runs.start(producer.words(30, delay=0.005))
        first: list[SseEvent] = []
        events = await runs.events(run_id)
        async for event in events:
            first.append(event)
            if len(first) == 7:
                break  # the connection drops mid-answer
        await events.aclose()  # type: ignore[attr-defined]
        rest = await read_all(await runs.events(run_id, last_event_id=first[-1].id))
    words = [event.data for event in first + rest if event.event is None]
    assert words == [f"word {n}" for n in range(30)]
    assert ended(rest[-1])["status"] == "completed"


async def test_cancel_stops_the_producer_runs_its_finally_and_ends_the_readers() -> None:
    producer = Producer()
    async with Runs() as runs:
        run_id = await runs.start(producer.words(10_000, delay=0.01), owner="ada")
        read: list[SseEvent] = []

        async def reader() -> None:
            read.extend(await read_all(await runs.events(run_id)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.1)
            info = await runs.cancel(run_id, owner="ada")
        assert (info.status, info.error) == ("cancelled", "cancelled")
        produced = producer.produced
        await trio.sleep(0.1)
        assert producer.produced == produced  # not one more word
        assert producer.cleaned
        assert ended(read[-1]) == {"status": "cancelled", "error": "cancelled"}
        assert len(read) - 1 == produced
        # Cancelling what has ended changes nothing.
        assert (await runs.cancel(run_id)).status == "cancelled"


async def test_limits_fail_a_run_that_runs_too_long_or_produces_too_much() -> None:
    async with Runs(max_duration=0.2, max_events=3) as runs:
        slow = await runs.start(Producer().words(1000, delay=0.05))
        chatty = await runs.start(Producer().words(10, delay=0))
        slow_events = await read_all(await runs.events(slow))
        chatty_events = await read_all(await runs.events(chatty))
    assert ended(slow_events[-1]) == {
        "status": "failed",
        "error": "the run took longer than max_duration=0.2s",
    }
    assert len(chatty_events) == 4  # three events, then the end
    assert ended(chatty_events[-1])["error"] == "the run produced more than max_events=3"


async def test_a_producer_that_raises_fails_the_run_without_leaking_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> AsyncIterator[str]:
        yield "one"
        raise RuntimeError("password=hunter2")

    async with Runs() as runs:
        run_id = await runs.start(broken())
        events = await read_all(await runs.events(run_id))
        info = await runs.status(run_id)
    assert info.status == "failed"
    assert "hunter2" not in json.dumps(info.to_json()) + str(events[-1].data)
    assert "hunter2" in caplog.text  # the log has it, with the traceback


async def test_refusals_answer_503_and_429_and_close_the_producer() -> None:
    async with Runs(max_runs=2, max_runs_per_owner=1) as runs:
        await runs.start(Producer().words(1000), owner="ada")
        refused = Producer()
        generator = refused.words(1)
        with pytest.raises(TooManyRequestsException) as too_many:
            await runs.start(generator, owner="ada")
        assert too_many.value.headers == {"Retry-After": "5"}
        await runs.start(Producer().words(1000), owner="bob")
        with pytest.raises(ServiceUnavailableException):
            await runs.start(Producer().words(1), owner="cid")
        assert runs.running == 2
        with pytest.raises(StopAsyncIteration):
            await anext(generator)  # closed: it will never run


async def test_bad_ids_are_404_another_owners_run_is_404_and_a_bad_last_id_is_400() -> None:
    async with Runs() as runs:
        run_id = await runs.start(Producer().words(3), owner="ada")
        for bad in ("nope", "run_", run_id[:-1] + "g", f"run_{'0' * 11}{'1' * 24}x"):
            with pytest.raises(NotFoundException):
                await runs.status(bad)
        unknown = run_id[:15] + "0" * 24  # well formed, recent: unknown, not expired
        with pytest.raises(NotFoundException):
            await runs.events(unknown)
        with pytest.raises(NotFoundException, match="no such run"):
            await runs.events(run_id, owner="bob")  # the same answer as for no run at all
        with pytest.raises(NotFoundException):
            await runs.cancel(run_id, owner="bob")
        for bad_id in ("abc", "1-x", "99999999999999999999999-1"):
            with pytest.raises(BadRequestException, match="Last-Event-ID"):
                await runs.events(run_id, last_event_id=bad_id)


async def test_a_finished_run_is_readable_for_keep_finished_then_gone() -> None:
    async with Runs(max_duration=0.3, keep_finished=0.3) as runs:
        run_id = await runs.start(Producer().words(2, delay=0))
        await trio.sleep(0.1)
        assert len(await read_all(await runs.events(run_id))) == 3
        await trio.sleep(0.8)  # past max_duration + keep_finished: every event aged out
        with pytest.raises(GoneException, match="expired"):
            await runs.events(run_id)
        with pytest.raises(GoneException):
            await runs.status(run_id)


async def test_at_shutdown_runs_get_the_grace_then_end_cancelled_with_their_end_written(
    backend_kind: str, make_backend: BackendFactory
) -> None:
    backend = make_backend(retain_count=20_000, retain_seconds=3600)
    quick, endless = Producer(), Producer()
    async with Runs(backend, shutdown_grace=0.3) as runs:
        quick_id = await runs.start(quick.words(5, delay=0.02))  # done within the grace
        endless_id = await runs.start(endless.words(10_000, delay=0.01))
    assert endless.cleaned
    # Another Runs on the same topics (the same memory, or the same Redis: another worker
    # after a restart) reads how each ended: nothing was left half-written.
    again_backend = (
        backend
        if backend_kind == "memory"
        else make_backend(retain_count=20_000, retain_seconds=3600)
    )
    async with Runs(again_backend) as again:
        assert (await again.status(quick_id)).status == "completed"
        info = await again.status(endless_id)
        assert (info.status, info.error) == ("cancelled", "shutdown")
        events = await read_all(await again.events(endless_id))
        assert ended(events[-1]) == {"status": "cancelled", "error": "shutdown"}
        assert len(events) - 1 == endless.produced  # every word it made, then its end


async def test_a_run_is_read_resumed_and_cancelled_from_another_process_on_redis(
    redis_server: RedisServer,
) -> None:
    from trio_dwex.broadcast import RedisBackend

    producer = Producer()
    # Two Runs on one Redis, each with its own backend and connections: two workers.
    async with Runs.from_url(redis_server.url) as here, Runs.from_url(redis_server.url) as there:
        run_id = await here.start(producer.words(10_000, delay=0.01), owner="ada")
        assert isinstance(here.hub.backend, RedisBackend)
        events = await there.events(run_id, owner="ada")
        first = [await anext(events) for _ in range(3)]
        await events.aclose()  # type: ignore[attr-defined]
        resumed = await there.events(run_id, last_event_id=first[-1].id, owner="ada")
        assert (await anext(resumed)).data == "word 3"  # right after the last one seen
        info = await there.cancel(run_id, owner="ada")
        rest = await read_all(resumed)
    assert (info.status, info.error) == ("cancelled", "cancelled")
    assert ended(rest[-1])["status"] == "cancelled"
    assert producer.cleaned
    assert producer.produced == 4 + len(rest) - 1


def test_settings_are_checked_and_the_backend_must_keep_enough() -> None:
    for bad in ({"max_runs": 0}, {"max_duration": 0}, {"keep_finished": float("inf")}):
        with pytest.raises(ValueError, match="Runs "):
            Runs(**bad)
    with pytest.raises(ValueError, match="Runs needs at least"):
        Runs(MemoryBackend(retain_seconds=60))
    with pytest.raises(ValueError, match="unknown runs URL"):
        Runs.from_url("kafka://x")


async def test_a_closed_runs_refuses_with_a_clear_error() -> None:
    runs = Runs()
    with pytest.raises(RuntimeError, match="needs open Runs"):
        await runs.start(Producer().words(1))


async def test_many_runs_readers_and_cancels_at_once_each_end_exactly_once() -> None:
    producers = [Producer() for _ in range(40)]
    async with Runs() as runs:
        ids = [await runs.start(p.words(50, delay=0.002)) for p in producers]
        results: dict[str, list[SseEvent]] = {}

        async def read(run_id: str) -> None:
            results[run_id] = await read_all(await runs.events(run_id))

        async with trio.open_nursery() as nursery:
            for run_id in ids:
                nursery.start_soon(read, run_id)
            for run_id in ids[::4]:
                nursery.start_soon(runs.cancel, run_id)
        assert runs.running == 0
    for run_id, producer in zip(ids, producers, strict=True):
        events = results[run_id]
        status = ended(events[-1])["status"]
        words = [event.data for event in events[:-1]]
        assert words == [f"word {n}" for n in range(len(words))]  # in order, no gap
        assert len(words) == producer.produced  # every word it made, once
        assert status == ("completed" if producer.produced == 50 else "cancelled")
        assert producer.cleaned


async def test_on_redis_a_finished_run_is_gone_from_redis_after_keep_finished(
    redis_server: RedisServer,
) -> None:
    import coredis

    async with Runs.from_url(redis_server.url, max_duration=0.5, keep_finished=0.5) as runs:
        run_id = await runs.start(Producer().words(3, delay=0))
        events = await read_all(await runs.events(run_id))
        assert ended(events[-1])["status"] == "completed"
        client = coredis.Redis.from_url(redis_server.url, decode_responses=True)
        async with client:
            keys = [f"trio-dwex:runs:{run_id}", f"trio-dwex:runs:{run_id}:status"]
            ttls = [await client.pttl(key) for key in keys]
            assert all(0 < ttl <= 500 for ttl in ttls), ttls  # set at the end: keep_finished
            await trio.sleep(0.8)
            with pytest.raises(GoneException):
                await runs.status(run_id)
            assert await client.exists(keys) == 0  # nothing left behind in Redis


async def test_a_run_is_gone_keep_finished_after_its_end_even_if_its_events_linger() -> None:
    # The memory backend keeps events for max_duration + keep_finished (an hour here), but a
    # run is read whole or not at all: gone keep_finished after its end.
    async with Runs(max_duration=3600, keep_finished=0.3) as runs:
        run_id = await runs.start(Producer().words(2, delay=0))
        events = await read_all(await runs.events(run_id))  # to its end
        assert ended(events[-1])["status"] == "completed"
        await trio.sleep(0.4)
        with pytest.raises(GoneException):
            await runs.events(run_id)
