"""The Dify simulator passes the recorded-fixture conformance check (shared/tools/dify-conformance)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
CONFORMANCE = SHARED / "tools" / "dify-conformance"
SCENARIOS = "01,02,03,04,05,06,07,08,09,14,15"


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_simulator_reproduces_the_recorded_dify_fixtures(simulator_url):
    if not CONFORMANCE.exists():
        pytest.skip(f"conformance tool not found at {CONFORMANCE}")
    result = subprocess.run([sys.executable, str(CONFORMANCE), "--target", "sim", "--base", simulator_url,
                             "--only", SCENARIOS], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, f"conformance failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip().splitlines()[-1].endswith(" 0 failed")


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_kit_passes_when_it_makes_its_apps_through_the_console_as_on_real_dify(simulator_url):
    """`--target real`: setup, cookie login with CSRF, create app, save and publish the draft, make a key."""
    if not CONFORMANCE.exists():
        pytest.skip(f"conformance tool not found at {CONFORMANCE}")
    result = subprocess.run([sys.executable, str(CONFORMANCE), "--target", "real", "--base", simulator_url,
                             "--email", "admin@difysim.local", "--password", "difysim-console",
                             "--only", SCENARIOS], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, f"conformance failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip().splitlines()[-1].endswith(" 0 failed")
