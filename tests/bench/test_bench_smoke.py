"""The benchmark's smallest slice runs end to end, so that `bench/` cannot rot unnoticed.

It starts every server of the table in its own process and drives it with the real load
generator (``python -m bench --smoke``), then checks that each row was measured and counted
events, and that the fan-out scenario delivered every event to every subscriber (in memory
always; through Redis where coredis and redis-server are installed). It asserts nothing about
speed: that is what ``nox -s bench`` reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("dwex-gen", "dwex-stream", "sse-starlette", "raw1", "raw64")

pytest.importorskip("sse_starlette", reason="the bench extra is not installed")
pytest.importorskip("uvicorn", reason="the bench extra is not installed")


def test_smoke_run_measures_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert set(ROWS) <= set(report["rows"])
    for key in ROWS:
        row = report["rows"][key]
        assert row["error"] is None, (key, row["error"])
        assert row["events"] > 0, key
        for metric in ("single_cpu_us", "conc_eps", "sparse_cpu_us", "first_p99_ms"):
            assert row[metric] is not None, (key, metric)
            assert row[metric] > 0, (key, metric, row[metric])
        # RSS moves in pages and the allocator may reuse freed memory: measured, maybe ~0.
        assert row["idle_kib"] is not None, key
    for key in ROWS:
        assert report["rows"][key]["label"] in proc.stdout  # the table has every row
    assert len(report["targets"]) >= 10
    assert all(target["ratio"] is not None for target in report["targets"])
    # Issue 15's targets beside issue 7's, the fan-out's among them (the memory backend's
    # three against sse-starlette at least).
    fanout_targets = [t for t in report["targets"] if t["target"].startswith("fan-out")]
    assert {t["issues"] for t in report["targets"]} >= {"7", "15", "7, 15"}
    assert len([t for t in fanout_targets if t["target"].endswith(": memory")]) == 3
    # The sparse column split at the producers' sleep, measured on both loops in the run.
    timer_us = report["sparse_timer_cpu_us"]
    assert set(timer_us) == {"trio", "asyncio"}
    assert all(value > 0 for value in timer_us.values())
    assert "sparse, split at the producer's sleep(0.0002)" in proc.stdout
    # The fan-out scenario (bench/fanout.py): every subscriber got every event.
    for backend, fanout in report["fanout"].items():
        if backend == "redis" and (fanout["error"] or "").startswith("not measured"):
            continue  # no coredis or no redis-server here: reported, not measured
        assert fanout["error"] is None, (backend, fanout["error"])
        assert fanout["deliveries"] == fanout["subscribers"] * fanout["events"] > 0, backend
        for metric in ("deliveries_per_s", "p50_ms", "p99_ms", "cpu_us"):
            assert fanout[metric] is not None, (backend, metric)
            assert fanout[metric] > 0, (backend, metric, fanout[metric])
    assert "memory" in report["fanout"]
    assert "MemoryBackend" in proc.stdout
    # The same burst paced, and the sparse fan-out: every backend, every delivery.
    for table in ("fanout_paced", "fanout_sparse"):
        for backend, fanout in report[table].items():
            if backend == "redis" and (fanout["error"] or "").startswith("not measured"):
                continue
            assert fanout["error"] is None, (table, backend, fanout["error"])
            assert fanout["deliveries"] == fanout["subscribers"] * fanout["events"] > 0, backend
            assert fanout["rss_mib"] > 0, (table, backend)
        assert {"memory", "sse-starlette", "sse-starlette-standard"} <= set(report[table])
    assert "ratios to sse-starlette on uvicorn, an asyncio.Queue per subscriber" in proc.stdout
    assert "ratios to the same on uvicorn[standard]" in proc.stdout
