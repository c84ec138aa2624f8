"""The `hitl` CLI end to end, with the real processes and the Dify simulator: a reviewer works with short
ids, sees the next round's id after a revise (or waits for it), follows the run's loop in `run-show`,
and an edit of a text output reaches Dify exactly as typed."""
from __future__ import annotations

import json
import re

import pytest

from demo.stack import ProcessStack
from tests.e2e.harness import E2E, wait_run

pytestmark = pytest.mark.e2e


@pytest.fixture
def e2e(tmp_path, sqlite_url, rabbitmq_url):
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url) as stack:
        harness = E2E(stack)
        yield harness
        harness.close()


def test_a_reviewer_revises_by_short_id_gets_round_two_and_follows_the_loop(e2e):
    e2e.register()
    started = e2e.hitl("run", "demo", "--input", "topic=short ids", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["workflow_run_id"]
    first = e2e.wait_open()[0]

    listed = e2e.hitl("checkpoints", "--status", "open").stdout
    assert first["id"][:8] in listed and "http" in listed and "anyone" in listed

    revised = e2e.hitl("decide", first["id"][:8], "revise", "--feedback", "add a summary", "--wait", "30")
    assert revised.returncode == 0, revised.stdout + revised.stderr
    second_id = re.search(r"round 2 is open: (\S+)", revised.stdout).group(1)
    shown = e2e.hitl("show", second_id[:8]).stdout
    assert f"Checkpoint {second_id}" in shown and "Revised after review: add a summary" in shown

    timeline = e2e.hitl("run-show", run_id).stdout
    drafts = [line for line in timeline.splitlines() if "Write draft" in line]
    assert len(drafts) == 2 and "loop 1" in drafts[0] and "loop 2" in drafts[1]
    held = [line for line in timeline.splitlines() if "Human checkpoint" in line]
    assert "loop 2" in held[-1] and "waiting for a person" in held[-1]

    approved = e2e.hitl("decide", second_id[:8], "approve")
    assert approved.returncode == 0, approved.stderr
    wait_run(e2e.stack, run_id, lambda r: r["status"] == "succeeded")
    decided = e2e.hitl("checkpoints", "--run", run_id).stdout
    assert "approve" in decided and "alice" in decided and "revise" in decided


def test_wait_prints_the_next_round_and_an_edit_of_text_reaches_dify_as_typed(e2e):
    e2e.register()
    run = e2e.start_run("waiting")
    first = e2e.wait_open()[0]
    assert e2e.hitl("decide", first["id"], "revise", "--feedback", "again", "--wait", "0").returncode == 0
    waited = e2e.hitl("wait", first["id"][:8], "--timeout", "45")
    assert waited.returncode == 0, waited.stderr
    second = e2e.wait_open(round_=2)[0]
    assert second["id"] in waited.stdout
    # the node's output is text: an edit is sent exactly as typed, even when it parses as JSON
    assert e2e.hitl("decide", second["id"][:8], "edit", "--output", '{"not": "parsed"}').returncode == 0
    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded" and data["outputs"]["text"] == '{"not": "parsed"}'
