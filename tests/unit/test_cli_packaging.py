"""The wheel (`pip wheel . --no-deps`) holds the processes, the shared package and their data, the `hitl`
script — and no tests: the Dify simulator runs from a checkout (`python -m tests.difysim`)."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def source_files() -> list[str]:
    """What a checkout has (tracked files, and new ones not ignored): what a clean build sees."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [f for f in listed if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tree = tmp_path_factory.mktemp("src")
    for name in source_files():  # a copy: a build in the checkout would leave build/ and reuse stale files
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out)], cwd=tree,
                           capture_output=True, text=True, timeout=540)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("dify_hitl-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_ships_no_tests_and_no_simulator(wheel):
    names = wheel.namelist()
    assert not [n for n in names if n.startswith(("tests/", "demo/", "bench/"))]
    assert not [n for n in names if "difysim" in n]


def test_the_wheel_ships_the_processes_the_migrations_and_the_console_assets(wheel):
    names = set(wheel.namelist())
    for process in ("ingest", "decider", "poller", "console", "cli"):
        assert f"services/{process}/__init__.py" in names
    assert {"services/cli/main.py", "shared/broker/client.py", "shared/migrations/env.py"} <= names
    assert any(n.startswith("shared/migrations/versions/0001") for n in names)
    assert any(n.startswith("services/console/templates/") and n.endswith(".html") for n in names)
    assert any(n.startswith("services/console/static/") for n in names)


def test_the_wheel_installs_the_hitl_script(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[console_scripts]" in text and "hitl = services.cli.main:main" in text


def test_the_simulator_still_runs_from_the_checkout():
    answer = subprocess.run([sys.executable, "-m", "tests.difysim", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert "--port" in answer.stdout
