"""The Dify simulator passes the recorded-fixture conformance check (shared/tools/dify-conformance)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
CONFORMANCE = SHARED / "tools" / "dify-conformance"
SCENARIOS = "01,02,03,04,05,06,07,08,09,14,15"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def simulator_url():
    port = free_port()
    log = tempfile.TemporaryFile()  # a file, not a pipe: an undrained pipe could block the simulator
    process = subprocess.Popen([sys.executable, "-m", "tests.difysim", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_sim/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    pytest.fail(f"the simulator did not start:\n{output}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_simulator_reproduces_the_recorded_dify_fixtures(simulator_url):
    if not CONFORMANCE.exists():
        pytest.skip(f"conformance tool not found at {CONFORMANCE}")
    result = subprocess.run([sys.executable, str(CONFORMANCE), "--target", "sim", "--base", simulator_url,
                             "--only", SCENARIOS], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, f"conformance failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip().splitlines()[-1].endswith(" 0 failed")
