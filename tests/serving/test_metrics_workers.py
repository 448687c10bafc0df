"""Under ``trio-dwex run --workers 2``, whichever worker answers ``GET /metrics`` gives the sum
over both; a worker killed with SIGKILL leaves the open-stream gauge and keeps its totals; the
shared directory is gone after a clean exit (issue 19, item 3)."""

from __future__ import annotations

import glob
import os
import signal
import sys
import tempfile
import time

import httpx
import trio

from tests.helpers import LiveStream, value
from tests.serving.test_serve import free_port, running

#: Streams each worker must hold before the sums are checked.
PER_WORKER = 3


def scrape(port: int) -> str:
    # A new connection each time: the kernel hands each to either worker.
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"connection": "close"})
    assert response.status_code == 200
    return response.text


async def test_every_worker_answers_with_the_sum_over_all() -> None:
    port = free_port()
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "trio-dwex-metrics-*")))
    command = [sys.executable, "-m", "trio_dwex", "run", "tests.serving.workers_app:app"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    with running(command, port) as process:
        by_worker: dict[int, list[LiveStream]] = {}
        limits = httpx.Limits(max_connections=200)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
            async with trio.open_nursery() as nursery:
                opened = 0
                # Open streams until each worker holds PER_WORKER: the kernel decides which
                # worker accepts each connection.
                while len(by_worker) < 2 or min(map(len, by_worker.values())) < PER_WORKER:
                    assert opened < 150, f"the streams all went to one worker: {by_worker}"
                    stream = await nursery.start(hold, client)
                    hello = await stream.next_event()
                    by_worker.setdefault(int(hello.data.split(":")[1].rstrip("}")), []).append(
                        stream
                    )
                    opened += 1
                # Every scrape, whichever worker takes it, counts every stream of both.
                for _ in range(8):
                    text = scrape(port)
                    assert value(text, "trio_dwex_streams_open") == opened
                    assert value(text, "trio_dwex_streams_opened_total") == opened
                # The per-write counts arrive within metrics_interval (1 s).
                deadline = time.monotonic() + 5
                while value(scrape(port), "trio_dwex_events_sent_total") < opened:
                    assert time.monotonic() < deadline, scrape(port)
                    await trio.sleep(0.1)
                assert value(scrape(port), "trio_dwex_events_sent_total") == opened

                # A worker dies with its streams: the gauge forgets them, the totals stay.
                victim = min(by_worker)
                os.kill(victim, signal.SIGKILL)
                left = opened - len(by_worker[victim])
                deadline = time.monotonic() + 10
                while True:
                    try:
                        text = scrape(port)
                    except httpx.TransportError:
                        continue  # a connection the dead worker had accepted
                    if value(text, "trio_dwex_streams_open") == left:
                        break
                    assert time.monotonic() < deadline, text
                    await trio.sleep(0.1)
                assert value(text, "trio_dwex_streams_opened_total") == opened
                nursery.cancel_scope.cancel()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    assert process.returncode == 0
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "trio-dwex-metrics-*")))
    assert after <= before  # the supervisor removed the directory it made


async def hold(client: httpx.AsyncClient, *, task_status: trio.TaskStatus[LiveStream]) -> None:
    """Open ``/pid/stream`` and keep it open; hand the stream over as soon as it answers."""
    try:
        async with client.stream("GET", "/pid/stream") as response:
            task_status.started(LiveStream(response))
            await trio.sleep_forever()
    except httpx.TransportError:
        await trio.sleep_forever()  # its worker was killed: nothing more to read
