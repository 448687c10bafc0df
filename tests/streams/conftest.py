"""Fixtures for the streams tests."""

from __future__ import annotations

import pytest
import trio

from trio_dwex.lowlevel import StreamTracker


@pytest.fixture(params=["own timer", "app clock"])
async def keepalive_tracker(
    request: pytest.FixtureRequest, nursery: trio.Nursery
) -> StreamTracker | None:
    """How a stream's writer times its keep-alives: a deadline of its own (a run without a
    tracker), or the app's `KeepaliveClock` (a tracker whose clock runs, as an app's lifespan
    runs it)."""
    if request.param == "own timer":
        return None
    tracker = StreamTracker()
    await nursery.start(tracker.clock.run)
    return tracker
