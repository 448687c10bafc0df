"""curl, as the guide uses it: ``curl -N`` prints the countdown as it happens.

Each line of curl's output is stamped when it reaches us. ``-N`` turns off curl's output
buffering; without it, and with its output going to a pipe, curl holds small writes back,
which the control run shows (so the measurement can fail).
"""

from __future__ import annotations

import subprocess

import pytest
import trio

from tests.clients.tools import Timed, require_binary
from trio_dwex.testing import serve_app

from examples import guide  # isort: skip  (after tools, which sets GUIDE_TICK)

TICK = 0.1


async def curl_lines(*args: str) -> Timed:
    """Run curl with ``args`` and stamp each line of its output with its arrival time."""
    curl = require_binary("curl")
    timed = Timed()
    pending = b""
    start = trio.current_time()
    process = await trio.lowlevel.open_process(
        [curl, "--silent", "--show-error", "--max-time", "10", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(15):
            while data := await process.stdout.receive_some():
                now = trio.current_time() - start
                pending += data
                *lines, pending = pending.split(b"\n")
                timed.lines += [(now, line.decode()) for line in lines]
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
    return timed


async def test_curl_no_buffer_shows_the_countdown_live(monkeypatch: pytest.MonkeyPatch) -> None:
    require_binary("curl")
    monkeypatch.setattr(guide, "TICK", TICK)
    with trio.fail_after(30):
        async with serve_app(guide.app) as url:
            live = await curl_lines("-N", url + "/events/countdown")
            held = await curl_lines(url + "/events/countdown")

    for timed in (live, held):
        assert timed.matching("data: {") == [
            *(f'data: {{"count":{n}}}' for n in range(10, 0, -1)),
            'data: {"message":"Countdown complete!"}',
        ]
        assert timed.matching("event:") == ["event: countdown"] * 10 + ["event: complete"]
    # With -N, the first event is on screen long before the last (10 ticks, about 1 s).
    first, end = live.first("event: countdown"), live.first("event: complete")
    assert end - first > 0.6, live.lines
    # Without it, curl's own buffer holds everything to the end.
    first, end = held.first("event: countdown"), held.first("event: complete")
    assert end - first < 0.1, held.lines
