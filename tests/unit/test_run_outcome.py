"""The outcome shown beside a run's status (shared/views.py::run_outcome), its CLI rendering, and how the
CLI reads --input values for a Dify form."""
from __future__ import annotations

import pytest

from services.cli import render
from services.cli.client import CliError
from services.cli.review import form_values
from shared.views import run_outcome


def cp(status="resolved", action="approve", who="alice", reason="decision", at=1.0, **extra):
    return {"status": status, "action": action, "decided_by": who, "reason": reason, "resolved_at": at,
            "created_at": at, "kind": "http", "on_timeout": "abort", **extra}


@pytest.mark.parametrize("checkpoints,words", [
    ([], None),
    ([cp(action="abort")], "aborted by alice"),
    ([cp(action="approve", who="bob")], "approved by bob"),
    ([cp(action="edit")], "edited by alice"),
    ([cp(status="expired", action="abort", who="system", reason="timeout")], "timed out → abort"),
    ([cp(status="expired", action="edit", who="system", reason="timeout", on_timeout="default")],
     "timed out → default output"),
    ([cp(status="cancelled", action="abort", who="system", reason="run_ended")], "cancelled: the run ended"),
    ([cp(status="expired", action="abort", who="dify", reason="timeout", kind="dify-form")], "timed out in Dify"),
    ([cp(action="approve", who="dify", kind="dify-form")], "decided in Dify"),
    ([cp(action="approve", kind="dify-form", output={"action": "publish_now", "inputs": {}})],
     "approved by alice (publish_now)"),
    ([cp(status="open", action=None, who=None, reason=None)], "waiting for a person"),
])
def test_the_outcome_names_what_the_checkpoint_decided_and_who(checkpoints, words):
    assert run_outcome(checkpoints) == words


def test_an_abort_speaks_for_the_run_over_a_later_approval_and_the_count_follows():
    rounds = [cp(action="revise", at=1), cp(action="abort", who="carol", at=2), cp(action="approve", at=3)]
    assert run_outcome(rounds) == "aborted by carol (3 checkpoints)"
    assert run_outcome([cp(action="revise", at=1), cp(action="approve", who="bob", at=2)]) == \
        "approved by bob (2 checkpoints)"


def test_runs_and_run_show_print_the_outcome_beside_the_status():
    run = {"id": "r1", "status": "succeeded", "app": "demo", "source": "gateway", "outcome": "aborted by alice"}
    assert "succeeded" in render.run_table({"runs": [run]}) and "aborted by alice" in render.run_table({"runs": [run]})
    shown = render.run_detail({**run, "checkpoints": [], "nodes": []})
    assert "succeeded · aborted by alice" in shown


def test_a_paused_run_shows_why_its_form_is_not_captured():
    run = {"id": "r1", "status": "paused", "app": "demo", "source": "logs", "checkpoints": [], "nodes": [],
           "capture": "unavailable", "capture_detail": "started by the console account admin@x"}
    assert "cannot be captured: started by the console account admin@x" in render.run_detail(run)


def test_form_values_keep_text_as_typed_and_send_json_objects_and_lists_as_json():
    assert form_values(["note=42", "choice=ship", 'doc={"transfer_method": "remote_url", "url": "https://x/y.pdf"}',
                        'refs=[{"transfer_method": "local_file", "upload_file_id": "u1"}]']) == {
        "note": "42", "choice": "ship", "doc": {"transfer_method": "remote_url", "url": "https://x/y.pdf"},
        "refs": [{"transfer_method": "local_file", "upload_file_id": "u1"}]}
    with pytest.raises(CliError, match="looks like JSON"):
        form_values(["doc={not json"])
    with pytest.raises(CliError, match="NAME=VALUE"):
        form_values(["novalue"])
