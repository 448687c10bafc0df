"""`bench.costs`, `bench.timers` and `bench.memory` run at a tiny size, so that the figures
docs/performance.md quotes from them keep a working command. Nothing here is about speed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bench.timers import timer_cpu_us

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def table(output: str) -> dict[str, list[float]]:
    """The rows of the Markdown table in ``output``: label -> its numbers."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > 1 and all(re.fullmatch(r"-?\d+\.\d+", cell) for cell in cells[1:]):
            rows[cells[0]] = [float(cell) for cell in cells[1:]]
    return rows


def test_costs_measures_every_line() -> None:
    rows = table(run("bench.costs", "--events", "2000", "--reps", "1"))
    assert len(rows) == 18, rows
    assert "typed events, SseStream source, checked" in rows
    for loop in ("trio", "asyncio", "uvloop"):
        assert f"a timer wake-up: {loop}, sleep(0.005) in each of 100 tasks" in rows
    assert all(value > 0 for (value,) in rows.values()), rows
    # Building an event costs something, and delivering it costs more than building it.
    assert rows["run_stream, generator source"][0] > rows["SseEvent(data=str, id=str)"][0]


def test_timers_measure_a_wakeup_on_each_loop() -> None:
    # What the benchmark's split of the sparse and token rows runs: a fresh process per loop.
    for loop in ("trio", "asyncio", "uvloop"):
        cpu_us = timer_cpu_us(loop, 200, 0.0002, tasks=2)
        assert 0 < cpu_us < 10_000, (loop, cpu_us)


def test_memory_splits_each_row_by_package() -> None:
    rows = table(run("bench.memory", "--streams", "30"))
    ours = rows["trio-dwex, async generator route"]
    floor = rows["raw ASGI on plain Hypercorn-Trio (floor)"]
    assert len(rows) == 3
    assert ours[0] > 0, "trio_dwex allocates nothing for its own stream?"
    assert floor[0] == 0, "the raw floor does not use trio_dwex"
    assert ours[-1] > 0
    assert floor[-1] > 0


def test_instructions_counts_an_event_against_a_revision() -> None:
    # HEAD is this tree in a clean checkout (CI): the counts agree; a working tree with
    # changes to the event path may differ from it by some percent, hence the wide bounds.
    output = run(
        "bench.instructions", "--scenarios", "event", "--events", "300", "--against", "HEAD"
    )
    (row,) = [line for line in output.splitlines() if line.startswith("| event |")]
    ours, theirs, ratio = (cell.strip() for cell in row.strip().strip("|").split("|")[1:])
    assert int(ours.replace(",", "")) > 1_000, row  # an event is thousands of instructions
    assert int(theirs.replace(",", "")) > 1_000, row
    assert 0.5 < float(ratio) < 2, row


def test_instructions_counts_a_served_event() -> None:
    # The whole server under valgrind, serving the benchmark's route over loopback.
    output = run("bench.instructions", "--scenarios", "served-gen", "--events", "1000")
    (row,) = [line for line in output.splitlines() if line.startswith("| served-gen |")]
    count = int(row.strip().strip("|").split("|")[1].strip().replace(",", ""))
    # More than building the event (thousands), far less than a request per event.
    assert 5_000 < count < 200_000, row


def test_tokens_measures_every_server_and_splits_at_the_timer(tmp_path: Path) -> None:
    # A tiny `nox -s bench` token row: every server delivered every token (`bench.tokens`
    # asserts that), twice, side by side, and the report splits each at its producers' sleep.
    out = tmp_path / "tokens.json"
    output = run(
        "bench.tokens", "--streams", "3", "--tokens", "20", "--reps", "2", "--json", str(out)
    )
    report = json.loads(out.read_text())
    assert set(report["rows"]) == set(report["runs"])
    assert len(report["rows"]) == 4
    for kind, runs in report["runs"].items():
        assert [r["tokens"] for r in runs] == [60, 60], kind
        assert report["rows"][kind]["tokens"] == 120, kind
    assert set(report["timer_cpu_us"]) == {"trio", "uvloop"}  # the peer's uvicorn picks uvloop
    assert all(value > 0 for value in report["timer_cpu_us"].values())
    (target,) = report["targets"]
    assert target["issues"] == "15"
    assert "| its sleep alone | the rest |" in output
    assert "issue 15's target, CPU per token" in output
