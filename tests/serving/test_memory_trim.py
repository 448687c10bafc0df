"""The server gives freed heap pages back to the OS now and then (glibc's ``malloc_trim``)."""

from __future__ import annotations

import platform

import pytest
import trio

from trio_dwex.serving import _memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_malloc_trim_is_found_on_glibc() -> None:
    assert _memory.malloc_trim is not None
    assert _memory.malloc_trim(0) in (0, 1)


async def test_the_trim_task_calls_malloc_trim_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def counting_trim(pad: int) -> int:
        calls.append(pad)
        return 0

    monkeypatch.setattr(_memory, "malloc_trim", counting_trim)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_memory.trim_memory_every, 0.01)
        with trio.fail_after(5):
            # The trim runs in a thread, which cannot set a trio.Event: poll.
            while len(calls) < 3:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert set(calls) == {0}


async def test_without_malloc_trim_the_task_returns_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_memory, "malloc_trim", None)
    with trio.fail_after(1):
        await _memory.trim_memory_every(0.1)
