"""`hitl instrument` on the command line: where the URL and token come from, the diagram, refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.dsl import document
from shared.dsl.document import to_plain

ROOT = Path(__file__).resolve().parents[2]
WRITER = ROOT.parent / "shared" / "dify-fixtures" / "17-dsl-export-import" / "writer-llm.export.yml"


def hitl(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={**clean, **env})


def secret(path: Path) -> list[dict]:
    return to_plain(document.load(path.read_text()).workflow["environment_variables"])


def checkpoint_url(text: str) -> str:
    doc = document.load(text)
    return next(n["data"]["url"] for n in doc.nodes if n["id"] == "hitl_cp_write_draft")


def test_the_token_comes_from_the_named_variable_and_the_url_from_hitl_checkpoint_url(tmp_path):
    out = tmp_path / "out.yml"
    done = hitl("instrument", str(WRITER), "--after", "write_draft", "-o", str(out), "--token-env", "MY_TOKEN",
                MY_TOKEN="cp-from-env", HITL_CHECKPOINT_URL="http://hitl.example:9000/")
    assert done.returncode == 0, done.stderr
    assert [(v["name"], v["value"], v["value_type"]) for v in secret(out)] == [
        ("HITL_CHECKPOINT_TOKEN", "cp-from-env", "secret")]
    assert checkpoint_url(out.read_text()) == "http://hitl.example:9000/v1/checkpoints"
    assert "set from $MY_TOKEN" in done.stderr and "Write draft (write_draft): reviews text" in done.stderr


def test_the_token_of_an_app_comes_from_hitl_apps(tmp_path):
    out = tmp_path / "out.yml"
    apps = json.dumps([{"name": "writer", "checkpoint_token": "cp-writer-0001"}])
    done = hitl("instrument", str(WRITER), "--after", "write_draft", "-o", str(out), "--app", "writer", HITL_APPS=apps)
    assert done.returncode == 0, done.stderr
    assert secret(out)[0]["value"] == "cp-writer-0001"
    missing = hitl("instrument", str(WRITER), "--after", "write_draft", "--app", "reader", HITL_APPS=apps)
    assert missing.returncode == 2 and "no such app in HITL_APPS" in missing.stderr


def test_without_a_token_the_secret_is_empty_and_the_yaml_goes_to_stdout():
    done = hitl("instrument", str(WRITER), "--after", "write_draft", "--url", "http://10.0.0.5:8080")
    assert done.returncode == 0, done.stderr
    assert checkpoint_url(done.stdout) == "http://10.0.0.5:8080/v1/checkpoints"
    assert "empty — set it in Dify" in done.stderr


def test_a_missing_token_variable_is_refused():
    done = hitl("instrument", str(WRITER), "--after", "write_draft", "--token-env", "NOT_SET_ANYWHERE")
    assert done.returncode == 2 and "NOT_SET_ANYWHERE: that environment variable is not set" in done.stderr


def test_the_diagram_shows_the_graph_before_and_after(tmp_path):
    done = hitl("instrument", str(WRITER), "--after", "write_draft", "-o", str(tmp_path / "o.yml"), "--diagram")
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split("### After")
    assert "n_write_draft --> n_polish" in before and "hitl" not in before
    assert "n_hitl_route_write_draft -->|approved| n_hitl_out_write_draft" in after
    assert "n_hitl_out_write_draft --> n_polish" in after


def test_contradicting_flags_are_refused():
    assert "do not combine it with --after" in hitl("instrument", str(WRITER), "--step", "--after", "x").stderr
    assert "--revise and --human-input do not apply" in hitl("instrument", str(WRITER), "--step", "--revise").stderr
    assert "name the nodes to review with --after" in hitl("instrument", str(WRITER)).stderr
    assert "--diagram prints the diagrams" in hitl("instrument", str(WRITER), "--after", "x", "--diagram").stderr
