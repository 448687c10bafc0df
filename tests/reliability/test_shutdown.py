"""SIGTERM and SIGINT with a few hundred open streams: every stream closed, every cleanup run,
a clean exit well within the graceful timeout, no traceback, and no write to a closed socket.

The server is the real command (``python -m trio_dwex run``) in a subprocess, serving
``tests/reliability/shutdown_app.py``, which writes what its streams lived through to a file
at exit. ``bench/reliability.py`` measures the same with 2,000 streams.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from tests.reliability.apps import Counters, make_app
from tests.reliability.support import (
    free_port,
    open_streams,
    read_to_end,
    running_server,
    server_process,
    vanish_behind_unread_bytes,
)
from trio_dwex.serving import dropped_writes

STREAMS = 300
#: Idle streams (one event a minute): clients that stop reading are then no slow clients.
SHUTDOWN_PATHS = ["/t/gen?every=60", "/t/stream?every=60"]
GRACEFUL_TIMEOUT = 10.0
#: The bar: shutdown must take a small fraction of the graceful timeout, not use it up.
EXIT_WITHIN = 3.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_closes_every_stream_and_runs_every_cleanup(
    signum: signal.Signals, tmp_path: Path
) -> None:
    port = free_port()
    report = tmp_path / "report.json"
    with server_process(
        "tests.reliability.shutdown_app:app",
        port,
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT),
        env={"RELIABILITY_REPORT": str(report)},
    ) as process:
        socks = await open_streams(port, SHUTDOWN_PATHS, STREAMS)
        async with httpx.AsyncClient() as client:
            stats = (await client.get(f"http://127.0.0.1:{port}/stats")).json()
        assert stats["open"] == STREAMS

        process.send_signal(signum)
        signalled = time.monotonic()
        tails: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def read(sock: trio.socket.SocketType) -> None:
                tails.append(await read_to_end(sock, EXIT_WITHIN))

            for sock in socks:
                nursery.start_soon(read, sock)
        exit_code = await trio.to_thread.run_sync(process.wait, GRACEFUL_TIMEOUT)
        elapsed = time.monotonic() - signalled
        output = process.stdout.read().decode() if process.stdout else ""

    assert exit_code == 0, output
    assert elapsed < EXIT_WITHIN, f"exit took {elapsed:.2f} s"
    assert "Traceback" not in output, output
    assert " ERROR " not in output, output
    # Every client saw its response end properly (the last chunk), not a cut connection.
    assert len(tails) == STREAMS
    # (What came before the signal was read already; a tail may be just the last chunk.)
    bad = [t for t in tails if not (t == b"0\r\n\r\n" or t.endswith(b"\n\n\r\n0\r\n\r\n"))]
    assert not bad, (len(bad), bad[:5])
    counts = json.loads(report.read_text())
    assert counts["stats"]["open"] == 0
    assert counts["stats"]["closed"]["shutdown"] == STREAMS, counts
    assert counts["generators_started"] + counts["streams_started"] == STREAMS
    assert counts["generators_finally"] == counts["generators_started"]
    assert counts["streams_on_close"] == counts["streams_started"]
    assert counts["tasks_cancelled"] == counts["streams_started"]
    # Nothing was written to a socket after it closed, nor to a client that had gone: the
    # server counts the writes it drops (it would drop them silently, as upstream does).
    assert counts["dropped_writes"] == {"closed": 0, "broken": 0}, counts["dropped_writes"]


async def test_the_dropped_write_count_counts_writes_to_a_client_that_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The count that the shutdown test expects to be 0 does count: a stream that writes
    without pause (``every=0``) to a client that has reset gets its write dropped.

    The client must be gone *before* the server writes, and the server must have no other way to
    learn it: our server reads while a stream runs, so it would see a plain RST at once and
    close the stream before its next write (then no write fails, which made this test fail
    about 2 runs in 5). So the client first makes the server stop reading it (a pipeline longer
    than the server reads ahead), and only then resets.
    """
    caplog.set_level(logging.DEBUG, logger="trio_dwex.serving")
    app = make_app(Counters())
    before = (dropped_writes.closed, dropped_writes.broken)
    async with running_server(app) as port:
        await vanish_behind_unread_bytes(port, "/t/gen?every=0")
        with trio.fail_after(5):
            while app.streams.open_count:  # noqa: ASYNC110 (server-side state)
                await trio.sleep(0.01)
    assert dropped_writes.closed == before[0]
    assert dropped_writes.broken > before[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "trio_dwex.serving"]
    assert any("to a broken socket" in message for message in logged), logged
