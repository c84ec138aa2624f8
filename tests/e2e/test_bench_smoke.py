"""`python -m bench --smoke` runs every scenario in miniature against the real processes and writes
its JSON; the books must balance (nothing lost, nothing duplicated). Nothing here is about speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_completes_with_nothing_lost_or_duplicated_and_writes_its_json(tmp_path, rabbitmq_url):
    out = tmp_path / "latest.json"
    env = {**os.environ, "RABBITMQ_URL": rabbitmq_url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--db", "sqlite", "--out", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["summary"]["totals"] == {"lost": 0, "duplicated": 0}
    sqlite = results["scenarios"]["sqlite"]
    # latency_half: the open-loop run at half the 1×1 throughput the smoke measured
    for run in sqlite["throughput"]["runs"] + [sqlite["latency"], sqlite["latency_half"]]:
        counts = run["counts"]
        assert counts["started"] > 0
        assert counts["lost"] == 0 and counts["duplicated"] == 0
        assert counts["ok"] == counts["started"]
        assert run["store"]["runs_with_two_checkpoints"] == 0
        assert run["store"]["checkpoints_with_two_applied_decisions"] == 0
    # The cost of a cycle (bench/counters.py): our processes' /metrics read before and after the run.
    per_cycle = sqlite["throughput"]["runs"][0]["per_cycle"]
    assert per_cycle["cycles"] == sqlite["throughput"]["runs"][0]["counts"]["ok"] > 0
    assert per_cycle["total"]["published"] > 0
    assert (per_cycle["per_process"]["decider"]["statements"] or 0) > 0
    assert (per_cycle["per_process"]["decider"]["cpu_ms"] or 0) > 0
    held = sqlite["held"]["steps"][0]
    assert held["counts"]["lost"] == 0 and held["all_answered_200"]
    assert results["baselines"]["broker_ceiling"]["lost"] == 0
