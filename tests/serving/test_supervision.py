"""``trio-dwex run --workers N`` keeps N workers: a dead one is replaced; a crash loop stops.

Real processes: the command is started as a user starts it, a worker is killed with SIGKILL
(as the kernel's OOM killer does), and the replacement is seen answering on the shared port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.serving.test_serve import free_port, running

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def workers_answering(port: int, count: int, seconds: float = 20) -> set[int]:
    """The pids of ``count`` different workers, each seen answering ``GET /pid``."""
    pids: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(pids) < count:
        assert time.monotonic() < deadline, f"only workers {pids} answered within {seconds} s"
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/pid", headers={"connection": "close"})
            pids.add(response.json()["pid"])
        except httpx.TransportError:
            pass  # a worker that was killed may still have had this connection queued
        time.sleep(0.02)
    return pids


def test_a_killed_worker_is_replaced() -> None:
    port = free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "tests.serving.workers_app:app"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    with running(command, port) as process:
        first = workers_answering(port, 2)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # Answers now come from the survivor and the replacement: two pids, one of them new.
        deadline = time.monotonic() + 20
        while True:
            now = workers_answering(port, 2, seconds=20)
            if victim not in now and len(now - first) == 1:
                break
            assert time.monotonic() < deadline, f"workers {now}, first {first}"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode == 0, output  # a replaced worker is not a failure at shutdown
    assert f"worker {victim} exited with code -9; starting another" in output


def test_a_crash_loop_stops_the_server_with_a_clear_error() -> None:
    port = free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "tests.serving.crashing_app:app"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    assert "error: workers keep failing: 5 exits within 30 s" in done.stderr
    assert "the database is down" in done.stdout + done.stderr  # the cause, in the log


def test_a_stop_during_a_replacement_delay_exits_cleanly() -> None:
    # The signal lands while the supervisor waits to replace a dead worker. Setting the
    # workers' stop event from the signal handler there used to deadlock the supervisor on
    # the event's own lock: the command never exited.
    port = free_port()
    command = [sys.executable, "-m", "trio_dwex", "run", "tests.serving.workers_app:app"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    with running(command, port) as process:
        victim = min(workers_answering(port, 2))
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.15)  # noticed within a poll (0.1 s); replaced after 0.2 s
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode == 0, output
    assert f"worker {victim} exited with code -9" in output
