"""`hitl serve NAME` runs a process as `python -m services.NAME` does: its __main__ module's `main()`, the
one entry-point name every process has."""
from __future__ import annotations

import asyncio
import importlib
import inspect
from pathlib import Path

import pytest

from services.cli import main as cli
from tests.unit.cli_support import run_cli

ROOT = Path(__file__).resolve().parents[2]
PRESENT = [p for p in cli.PROCESSES if (ROOT / "services" / p / "__main__.py").exists()]


@pytest.mark.parametrize("process", PRESENT)
def test_every_process_has_a_plain_main_to_run(process):
    module = importlib.import_module(f"services.{process}.__main__")  # importing runs nothing
    assert callable(module.main) and not inspect.iscoroutinefunction(module.main)
    assert not asyncio.iscoroutinefunction(module.main)


def test_the_four_processes_of_today_are_there():
    assert {"ingest", "decider", "poller", "console"} <= set(PRESENT)


@pytest.mark.parametrize("process", ["decider", "ingest"])
def test_serve_runs_the_processes_main(process, monkeypatch):
    module = importlib.import_module(f"services.{process}.__main__")
    ran = []
    monkeypatch.setattr(module, "main", lambda: ran.append(process))
    answer = run_cli(None, ["serve", process])
    assert answer.code == 0, answer.text
    assert ran == [process]


def test_serve_of_a_process_this_install_lacks_says_so(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    answer = run_cli(None, ["serve", "notifier"])
    assert answer.code == 2 and "this install has no notifier process" in answer.err


def test_serve_does_not_hide_a_missing_dependency_of_a_process(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError("No module named 'aiosmtplib'", name="aiosmtplib")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="aiosmtplib"):
        run_cli(None, ["serve", "notifier"])


def test_serve_knows_only_the_processes():
    answer = run_cli(None, ["serve", "worker"])
    assert answer.code == 2 and "invalid choice: 'worker'" in answer.err
