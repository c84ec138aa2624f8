"""Dify 1.17 (the simulator's --dify-version 1.17): a Human Input form with select, file and file-list
inputs, captured through the gateway, shown and decided from the CLI (JSON values for the files), and
submitted with the run's own user — the user a `local_file` was uploaded as."""
from __future__ import annotations

import json

import httpx
import pytest

from demo.stack import DIFY_APP_KEY, ProcessStack
from tests.e2e.harness import E2E, final_run
from tests.e2e.test_dify_forms import form_checkpoint, wait_checkpoint
from tests.unit.test_difysim_newer_forms import form_graph

pytestmark = pytest.mark.e2e
DIFY = {"Authorization": f"Bearer {DIFY_APP_KEY}"}


@pytest.fixture
def e2e(tmp_path, sqlite_url, rabbitmq_url):
    env = {"HITL_RESUME_TIMEOUT_S": "10", "HITL_POLL_MAX_INTERVAL_S": "1"}
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url, env=env,
                      sim_args=["--dify-version", "1.17"]) as stack:
        httpx.post(f"{stack.sim_url}/_sim/apps", json={"name": "newer", "graph": form_graph(),
                                                       "api_key": DIFY_APP_KEY}).raise_for_status()
        harness = E2E(stack)
        yield harness
        harness.close()


def test_a_form_with_select_and_file_inputs_is_decided_from_the_cli(e2e):
    run = httpx.post(f"{e2e.stack.ingest_url}/v1/workflows/run", headers=DIFY, timeout=30,
                     json={"inputs": {"topic": "Solar"}, "response_mode": "blocking", "user": "editor-1"}).json()
    run_id = run["workflow_run_id"]
    cp = form_checkpoint(e2e, run_id)
    assert [i["type"] for i in cp["form"]["inputs"]] == ["paragraph", "select", "file", "file-list"]
    shown = e2e.hitl("show", cp["id"]).stdout
    assert "select one of ['ship', 'hold']" in shown and "input doc — a file" in shown

    bad = e2e.hitl("decide", cp["id"], "approve", "--input", "choice=maybe")
    assert bad.returncode == 1 and "invalid_input" in bad.stderr and "not one of its options" in bad.stderr
    missing = e2e.hitl("decide", cp["id"], "approve", "--input", "choice=hold")
    assert missing.returncode == 1 and "missing_inputs" in missing.stderr

    # A local file is uploaded with the run's own user (the checkpoint's `user`): that is who submits.
    uploaded = httpx.post(f"{e2e.stack.sim_url}/v1/files/upload", headers=DIFY, data={"user": cp["user"]},
                          files={"file": ("brief.pdf", b"%PDF-1.4 brief", "application/pdf")}).json()
    doc = {"transfer_method": "local_file", "upload_file_id": uploaded["id"]}
    refs = [{"transfer_method": "remote_url", "url": "https://example.com/specs/spec.docx"}]
    out = e2e.hitl("decide", cp["id"], "approve", "--input", "note=Looks right", "--input", "choice=hold",
                   "--input", f"doc={json.dumps(doc)}", "--input", f"refs={json.dumps(refs)}")
    assert out.returncode == 0, out.stderr
    wait_checkpoint(e2e, cp["id"], lambda c: c["delivery"] == "resumed")
    record = final_run(e2e.stack, run_id)
    assert record["status"] == "succeeded"
    outputs = record["outputs"]
    assert (outputs["note"], outputs["choice"]) == ("Looks right", "hold")
    assert outputs["doc"]["related_id"] == uploaded["id"] and outputs["doc"]["filename"] == "brief.pdf"
    assert [f["remote_url"] for f in outputs["refs"]] == [refs[0]["url"]]
