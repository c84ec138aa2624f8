"""Run the simulator as its own process on a free port (integration tests, benchmarks)."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class SimulatorDidNotStart(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_simulator(*args: str, start_timeout_s: float = 20) -> Iterator[str]:
    """`python -m tests.difysim <args>` on a free loopback port; yields its base URL, stops it after."""
    port = free_port()
    # a file, not a pipe: an undrained pipe could block the simulator
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "tests.difysim", "--host", "127.0.0.1", "--port", str(port),
                                    *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_sim/health", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise SimulatorDidNotStart(log.read().decode(errors="replace")) from None
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
