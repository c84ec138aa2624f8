"""A Dify workflow (in the simulator) pauses at the checkpoint node and goes on with the decision,
through the real processes, the real RabbitMQ and the real store."""
from __future__ import annotations

import pytest

from demo.stack import ProcessStack
from tests.e2e.harness import E2E

pytestmark = pytest.mark.e2e


@pytest.fixture
def e2e(tmp_path, database_url, rabbitmq_url):
    with ProcessStack(tmp_path, database_url=database_url, rabbitmq_url=rabbitmq_url) as stack:
        harness = E2E(stack)
        yield harness
        harness.close()


def test_approve_edit_and_abort_each_reach_their_branch(e2e):
    e2e.register()
    runs = {topic: e2e.start_run(topic) for topic in ("approve me", "edit me", "abort me")}
    by_topic = {c["message"].removeprefix("Review the draft about "): c for c in e2e.wait_open(count=3)}
    assert "Draft 1 about approve me" in by_topic["approve me"]["node_output"]
    e2e.decide(by_topic["approve me"]["id"], "approve")
    e2e.decide(by_topic["edit me"]["id"], "edit", "--output", "A hand-written text.")
    e2e.decide(by_topic["abort me"]["id"], "abort", "--reason", "off topic")

    approved = runs["approve me"].result(timeout=60)["data"]
    assert approved["status"] == "succeeded"
    assert approved["outputs"]["text"] == "Draft 1 about approve me."
    edited = runs["edit me"].result(timeout=60)["data"]
    assert edited["status"] == "succeeded" and edited["outputs"]["text"] == "A hand-written text."
    aborted = runs["abort me"].result(timeout=60)["data"]
    assert aborted["status"] == "succeeded"
    assert set(aborted["outputs"]) == {"decision"}  # the "Not published" End
    assert aborted["outputs"]["decision"].startswith('{"action":"abort"')


def test_revise_with_feedback_reruns_the_node_then_round_two_is_approved(e2e):
    e2e.register()
    run = e2e.start_run("pricing page")
    first = e2e.wait_open(round_=1)[0]
    e2e.decide(first["id"], "revise", "--feedback", "add the enterprise tier")
    second = e2e.wait_open(round_=2)[0]
    assert second["node_output"] == "Draft 2 about pricing page. Revised after review: add the enterprise tier"
    shown = e2e.hitl("show", second["id"]).stdout
    assert "1  resolved  revise   add the enterprise tier" in shown
    e2e.decide(second["id"], "approve")
    data = run.result(timeout=60)["data"]
    assert data["status"] == "succeeded"
    assert data["outputs"]["text"].endswith("Revised after review: add the enterprise tier")
