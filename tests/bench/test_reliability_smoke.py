"""The reliability script runs end to end at a tiny size, so that `bench/reliability.py`
cannot rot unnoticed between full runs (``nox -s reliability``).

It calls the script's own ``cli`` with small sizes and ``--json``, and checks that it passed
every bar and that every row of the table was measured. The figures themselves are what
``docs/reliability.md`` reports from a full run; here they only have to pass the same bars.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import reliability

ROWS = [
    "disconnect storm: guide routes",
    "disconnect storm: counting app",
    "fan-out, no staller",
    "fan-out with a staller",
    "shutdown on SIGTERM",
    "shutdown on SIGINT",
]

TINY = [
    "--cycles", "200",
    "--concurrency", "20",
    "--clients", "5",
    "--seconds", "1",
    "--streams", "20",
]  # fmt: skip


def test_a_tiny_run_passes_every_bar_and_measures_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reliability.json"
    code = reliability.cli([*TINY, "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads(out.read_text())
    assert "Hypercorn " in report["machine"]
    rows = {row["experiment"]: row for row in report["rows"]}
    assert list(rows) == ROWS, printed
    assert all(row["ok"] for row in rows.values()), printed
    for name in ROWS:
        assert f"| ok   | {name}" in printed

    storm = rows["disconnect storm: counting app"]
    assert (storm["cycles"], storm["fin"], storm["rst"], storm["open_after"]) == (200, 100, 100, 0)
    alone, staller = rows["fan-out, no staller"], rows["fan-out with a staller"]
    assert alone["samples"] > 0
    assert staller["samples"] > 0
    # One second is shorter than the send timeout: the run waited for the drop all the same.
    assert staller["staller_dropped_after_s"] is not None
    assert staller["measured_s"] >= staller["staller_dropped_after_s"]
    assert staller["p99_ms"] <= staller["p99_bar_ms"]
    assert staller["server_rss_growth_kib"] <= reliability.RSS_GROWTH_BAR_KIB
    for signal in ("SIGTERM", "SIGINT"):
        shutdown = rows[f"shutdown on {signal}"]
        assert shutdown["cleanups_run"] == shutdown["open_streams"] == 20
        assert shutdown["writes_dropped_closed_socket"] == 0
        assert shutdown["writes_dropped_client_gone"] == 0


def test_the_staller_row_fails_when_the_others_p99_is_much_worse() -> None:
    alone = {"p99_ms": 10.0, "ok": True}
    within = {"p99_ms": 24.9, "ok": True}
    reliability.judge_staller(alone, within)
    assert within["ok"]
    assert within["p99_bar_ms"] == 25.0
    worse = {"p99_ms": 25.1, "ok": True}
    reliability.judge_staller(alone, worse)
    assert not worse["ok"]
