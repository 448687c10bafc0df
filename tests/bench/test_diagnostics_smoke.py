"""`bench.costs` and `bench.memory` run at a tiny size, so that the figures docs/performance.md
quotes from them keep a working command. Nothing here is about speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
    assert len(rows) == 16, rows
    assert "typed events, SseStream source, checked" in rows
    assert "a timer wake-up: trio.sleep(0.005) in each of 100 tasks" in rows
    assert all(value > 0 for (value,) in rows.values()), rows
    # Building an event costs something, and delivering it costs more than building it.
    assert rows["run_stream, generator source"][0] > rows["SseEvent(data=str, id=str)"][0]


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
