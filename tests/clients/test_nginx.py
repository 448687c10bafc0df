"""nginx as a reverse proxy with a stock ``proxy_pass`` configuration, in front of the guide app.

nginx buffers upstream responses by default (``proxy_buffering on``). With nothing but
``proxy_pass`` (nginx then speaks HTTP/1.0 to the upstream, which sends the body unframed), a
small stream reaches the client only when it ends. Our SSE responses carry
``X-Accel-Buffering: no``, which turns buffering off for that response alone, so events go
through live with no proxy configuration at all. The control route serves the very same
stream without that header, and comes out all at once at the end: proof that the measurement
can tell the two apart, and that the header is what makes the difference.

The other common configuration adds ``proxy_http_version 1.1`` (for upstream keep-alive); the
upstream body is then chunked, and nginx 1.22 forwards each chunk as it comes even with
buffering on. Events must be live there too, which the second server block checks.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.clients.tools import free_port, require_binary, strip_response_header
from trio_dwex.testing import EventSource, MessageEvent, serve_app

from examples import guide  # isort: skip  (after tools, which sets GUIDE_TICK)

#: The guide's tick in these tests: the countdown then lasts about 10 ticks (1 s), long
#: enough to tell "live" from "all at the end" on a busy machine.
TICK = 0.1

NGINX_CONF = """\
daemon off;
# One process, as the user running the test: no privilege drop (the temp folders below belong
# to that user), and nothing left behind when the test stops it.
master_process off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{
    worker_connections 64;
}}
http {{
    access_log off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{stock_port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
        }}
    }}
    server {{
        listen 127.0.0.1:{http11_port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
        }}
    }}
}}
"""


@asynccontextmanager
async def nginx_in_front_of(upstream: str, run: Path) -> AsyncIterator[tuple[str, str]]:
    """Run nginx proxying to ``upstream``; yield the base URLs of its two server blocks.

    The first is the stock ``proxy_pass``, the second adds ``proxy_http_version 1.1``. The
    ports are free ones picked here (nginx cannot report a port 0 bind); ``run`` holds the
    configuration, pid, log and temp folders.
    """
    nginx = require_binary("nginx", "/usr/sbin", "/usr/local/sbin")
    ports = free_port(), free_port()
    config = run / "nginx.conf"
    config.write_text(
        NGINX_CONF.format(
            run=run,
            stock_port=ports[0],
            http11_port=ports[1],
            upstream_port=httpx.URL(upstream).port,
        )
    )
    log = run / "error.log"
    process = await trio.lowlevel.open_process(
        [nginx, "-p", str(run), "-c", str(config), "-e", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        with trio.fail_after(10):
            for port in ports:
                while True:
                    if process.returncode is not None:
                        pytest.fail(f"nginx exited with {process.returncode}: {log.read_text()}")
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        await trio.sleep(0.05)
                        continue
                    await stream.aclose()
                    break
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        with trio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def timed_countdown(url: str) -> tuple[list[tuple[float, MessageEvent]], httpx.Headers]:
    """The countdown's events, each with its arrival in seconds after the request was sent."""
    start = trio.current_time()
    timed: list[tuple[float, MessageEvent]] = []
    async with EventSource(url, reconnect=False, timeout=10) as source:
        async for event in source:
            timed.append((trio.current_time() - start, event))
    assert source.response is not None
    return timed, source.response.headers


async def test_events_go_through_nginx_live_and_the_control_is_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_binary("nginx", "/usr/sbin", "/usr/local/sbin")
    monkeypatch.setattr(guide, "TICK", TICK)
    app = strip_response_header(guide.app, b"x-accel-buffering", prefix="/control")
    with trio.fail_after(60):
        async with (
            serve_app(app) as upstream,
            nginx_in_front_of(upstream, tmp_path) as (stock, http11),
        ):
            live, live_headers = await timed_countdown(stock + "/events/countdown")
            buffered, buffered_headers = await timed_countdown(stock + "/control/events/countdown")
            live11, _ = await timed_countdown(http11 + "/events/countdown")

    for timed in (live, buffered, live11):
        events = [event for _, event in timed]
        assert [e.type for e in events] == ["countdown"] * 10 + ["complete"]
        assert [e.json()["count"] for e in events[:10]] == list(range(10, 0, -1))
    assert live_headers["content-type"] == "text/event-stream; charset=utf-8"
    assert live_headers["cache-control"] == "no-cache, no-transform"
    # nginx acts on X-Accel-Buffering and does not pass it on.
    assert "x-accel-buffering" not in live_headers
    assert "x-accel-buffering" not in buffered_headers

    # Live: the first event long before the end (the stream lasts 10 ticks, about 1 s).
    for timed in (live, live11):
        first, end = timed[0][0], timed[-1][0]
        assert first < 0.3, timed
        assert end - first > 0.6, timed
    # The control, byte for byte the same minus the header: everything at the end.
    first, end = buffered[0][0], buffered[-1][0]
    assert first > 0.8, buffered
    assert end - first < 0.1, buffered
