"""`hitl checkpoints | show | decide | wait | decision` against the real ingest API and decider (in memory):
short ids, edits checked like the console checks them, the next round after a revise, what became of a 202."""
from __future__ import annotations

import asyncio
import json

import pytest

from services.cli import review
from tests.unit.cli_support import cli_world

RUN = "5f0c2a8e-1b7d-4c3a-9e2f-6a8b0c1d2e3f"


@pytest.fixture
async def world(sqlite_url, monkeypatch):
    monkeypatch.setattr(review, "POLL_S", 0.05)
    async for w in cli_world(sqlite_url):
        yield w


# ---------------------------------------------------------------------- short ids
async def test_show_takes_a_unique_prefix_of_six_characters(world):
    cp = world.add_checkpoint(id="3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10")
    world.add_checkpoint(id="77aa0000-0000-4000-8000-000000000000")
    shown = await world.hitl("show", "3f2a9c")
    assert shown.code == 0, shown.text
    assert f"Checkpoint {cp['id']}" in shown.out and "Draft 1" in shown.out


async def test_an_ambiguous_prefix_lists_the_candidates_and_decides_nothing(world):
    a = world.add_checkpoint(id="3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10", node_id="draft")
    b = world.add_checkpoint(id="3f2a9c99-0000-4000-8000-000000000000", node_id="polish")
    answer = await world.hitl("decide", "3f2a9c", "approve")
    assert answer.code == 1
    assert "3f2a9c matches 2 checkpoints" in answer.err
    assert a["id"] in answer.err and b["id"] in answer.err and "polish" in answer.err
    assert world.decisions(a["id"]) == [] and world.decisions(b["id"]) == []


async def test_a_prefix_shorter_than_six_characters_is_refused(world):
    world.add_checkpoint(id="3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10")
    answer = await world.hitl("show", "3f2a9")
    assert answer.code == 2 and "at least 6 characters" in answer.err


async def test_a_prefix_resolves_only_among_the_reviewers_own_apps(world):
    world.add_checkpoint(id="3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10", app="demo")
    theirs = world.add_checkpoint(id="3f2a9c99-0000-4000-8000-000000000000", app="other")
    mine = await world.hitl("show", "3f2a9c")  # alice sees demo only: not ambiguous for her
    assert mine.code == 0 and "3f2a9c11" in mine.out and "3f2a9c99" not in mine.text
    olga = await world.hitl("decide", "3f2a9c", "approve", reviewer="olga")  # olga sees other only
    assert olga.code == 0, olga.text
    assert world.checkpoint(theirs["id"])["decided_by"] == "olga"
    nobody = await world.hitl("show", "77aa00")
    assert nobody.code == 1 and "no checkpoint 77aa00 among your apps" in nobody.err


async def test_decide_by_prefix_applies_the_decision_through_the_decider(world):
    cp = world.add_checkpoint(id="3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10")
    answer = await world.hitl("decide", "3f2a9c11", "approve")
    assert answer.code == 0, answer.text
    assert f"approve applied to checkpoint {cp['id']} (round 1) by alice" in answer.out
    row = world.checkpoint(cp["id"])
    assert row["status"] == "resolved" and row["decided_by"] == "alice"
    assert world.decisions(cp["id"])[0]["channel"] == "api"


# ---------------------------------------------------------------------- edit: the console's rule
async def test_edit_of_a_json_output_refuses_broken_json_before_sending(world):
    cp = world.add_checkpoint(node_output={"title": "Draft", "tags": ["a"]})
    answer = await world.hitl("decide", cp["id"], "edit", "--output", '{"title": "Better",}')
    assert answer.code == 1
    assert "not sent" in answer.err and "not valid JSON" in answer.err and "--text" in answer.err
    assert world.decisions(cp["id"]) == [] and world.checkpoint(cp["id"])["status"] == "open"


async def test_edit_of_a_json_output_sends_the_parsed_value(world):
    cp = world.add_checkpoint(node_output={"title": "Draft"})
    answer = await world.hitl("decide", cp["id"], "edit", "--output", '{"title": "Better"}')
    assert answer.code == 0, answer.text
    assert world.checkpoint(cp["id"])["output"] == {"title": "Better"}


async def test_edit_of_json_held_in_a_string_is_checked_and_stays_a_string(world):
    cp = world.add_checkpoint(node_output='{"title": "Draft"}')
    refused = await world.hitl("decide", cp["id"], "edit", "--output", '{"title": ')
    assert refused.code == 1 and "not valid JSON" in refused.err
    answer = await world.hitl("decide", cp["id"], "edit", "--output", '{"title": "Better"}')
    assert answer.code == 0, answer.text
    assert world.checkpoint(cp["id"])["output"] == '{"title": "Better"}'


async def test_edit_of_a_text_output_sends_the_text_as_typed_even_when_it_parses(world):
    cp = world.add_checkpoint(node_output="Draft about pricing")
    answer = await world.hitl("decide", cp["id"], "edit", "--output", "42")
    assert answer.code == 0, answer.text
    assert world.checkpoint(cp["id"])["output"] == "42"


async def test_text_sends_a_string_on_purpose_where_json_is_expected(world, tmp_path):
    cp = world.add_checkpoint(node_output={"title": "Draft"})
    new = tmp_path / "new.txt"
    new.write_text("not JSON, and that is fine")
    answer = await world.hitl("decide", cp["id"], "edit", "--output-file", str(new), "--text")
    assert answer.code == 0, answer.text
    assert world.checkpoint(cp["id"])["output"] == "not JSON, and that is fine"


async def test_edit_of_a_dify_form_sends_the_text_for_its_paragraph_input(world):
    cp = world.add_checkpoint(kind="dify-form", node_output={"edited": "Draft"})  # the form's defaults
    sent = []
    real = world.app.state.replies

    class Recording:
        async def submit_decision(self, decision, wait_s):
            sent.append(decision)
            return None

        def fail_all(self):
            real.fail_all()

    world.app.state.replies = Recording()
    answer = await world.hitl("decide", cp["id"], "edit", "--output", "The corrected text")
    assert answer.code == 0, answer.text
    assert sent[0].output == "The corrected text" and sent[0].has_output


async def test_text_without_an_output_and_an_output_without_edit_are_usage_errors(world):
    cp = world.add_checkpoint()
    assert (await world.hitl("decide", cp["id"], "edit", "--text")).code == 2
    wrong = await world.hitl("decide", cp["id"], "approve", "--output", "x")
    assert wrong.code == 2 and "for edit" in wrong.err
    assert world.decisions(cp["id"]) == []


# ---------------------------------------------------------------------- revise: the next round
async def test_revise_prints_the_next_rounds_id_when_it_opens(world):
    cp = world.add_checkpoint(run_id=RUN)
    deciding = asyncio.create_task(world.hitl("decide", cp["id"][:8], "revise", "--feedback", "shorter"))
    await asyncio.sleep(0.3)
    await world.open_round(cp, 2)
    answer = await deciding
    assert answer.code == 0, answer.text
    listing = json.loads((await world.hitl("checkpoints", "--run", RUN, "--json")).out)["checkpoints"]
    second = next(c for c in listing if c["round"] == 2)
    assert "revise applied" in answer.out
    assert f"round 2 is open: {second['id']}" in answer.out


async def test_revise_says_how_to_wait_when_the_next_round_has_not_opened(world):
    cp = world.add_checkpoint(run_id=RUN)
    answer = await world.hitl("decide", cp["id"], "revise", "--feedback", "shorter", "--wait", "0")
    assert answer.code == 0, answer.text
    assert f"hitl wait {cp['id'][:8]}" in answer.out
    assert f"hitl wait --run {RUN} --node draft --round 2" in answer.out


async def test_revise_with_json_adds_the_next_checkpoint_to_the_apis_answer(world):
    cp = world.add_checkpoint(run_id=RUN)
    answer = await world.hitl("decide", cp["id"], "revise", "--feedback", "x", "--wait", "0", "--json")
    data = json.loads(answer.out)
    assert data["status"] == "applied" and data["resolution"]["action"] == "revise"
    assert data["next_checkpoint"] is None


async def test_a_forms_revise_does_not_wait_and_says_how_to_if_the_form_comes_back(world):
    from shared.models import Reply, Resolution

    cp = world.add_checkpoint(kind="dify-form", run_id=RUN, node_id="review_form", node_output={"edited": "x"})
    real = world.app.state.replies

    class Applied:
        async def submit_decision(self, decision, wait_s):
            return Reply(outcome="applied", resolution=Resolution(action="revise", checkpoint_id=cp["id"], round=1,
                                                                  decided_by="alice"))

        def fail_all(self):
            real.fail_all()

    world.app.state.replies = Applied()
    answer = await world.hitl("decide", cp["id"], "revise", "--action", "revise")
    assert answer.code == 0, answer.text
    assert "if the workflow brings this form back" in answer.out
    assert f"hitl wait --run {RUN} --node review_form --round 2" in answer.out


async def test_wait_on_a_revised_checkpoint_prints_the_next_round(world):
    cp = world.add_checkpoint(run_id=RUN)
    await world.hitl("decide", cp["id"], "revise", "--feedback", "x", "--wait", "0")
    waiting = asyncio.create_task(world.hitl("wait", cp["id"][:8], "--timeout", "20"))
    await asyncio.sleep(0.3)
    await world.open_round(cp, 2)
    answer = await waiting
    assert answer.code == 0, answer.text
    assert "revised:" in answer.out and "round 2" in answer.out and "hitl show" in answer.out


async def test_wait_on_an_open_checkpoint_returns_when_it_is_decided(world):
    cp = world.add_checkpoint()
    waiting = asyncio.create_task(world.hitl("wait", cp["id"], "--timeout", "20"))
    await asyncio.sleep(0.3)
    assert (await world.hitl("decide", cp["id"], "approve", reviewer="bob")).code == 0
    answer = await waiting
    assert answer.code == 0, answer.text
    assert answer.out.startswith("decided: ") and "approve by bob" in answer.out


async def test_wait_for_a_run_node_and_round_and_its_timeout(world):
    cp = world.add_checkpoint(run_id=RUN)
    timed_out = await world.hitl("wait", "--run", RUN, "--node", "draft", "--round", "2", "--timeout", "0.2")
    assert timed_out.code == 1 and f"round 2 of {RUN} / draft has not opened" in timed_out.err
    await world.hitl("decide", cp["id"], "revise", "--feedback", "x", "--wait", "0")
    waiting = asyncio.create_task(world.hitl("wait", "--run", RUN, "--node", "draft", "--round", "2", "--json"))
    await asyncio.sleep(0.3)
    await world.open_round(cp, 2)
    found = json.loads((await waiting).out)
    assert found["round"] == 2 and found["workflow_run_id"] == RUN and found["status"] == "open"


async def test_wait_needs_a_checkpoint_or_a_run(world):
    answer = await world.hitl("wait")
    assert answer.code == 2 and "--run" in answer.err


# ---------------------------------------------------------------------- after a 202
async def test_a_queued_decision_says_how_to_follow_it_and_decision_tells_what_became_of_it(world):
    cp = world.add_checkpoint()

    class Silent:  # the decider does not answer within the reply timeout
        def __init__(self, real):
            self.real = real

        async def submit_decision(self, decision, wait_s):
            self.sent = decision
            await self.real.broker.publish(self.real.names.decisions, "", decision.to_bytes(),
                                           message_id=decision.id)
            return None

        def fail_all(self):
            self.real.fail_all()

    silent = world.app.state.replies = Silent(world.app.state.replies)
    queued = await world.hitl("decide", cp["id"], "approve")
    assert queued.code == 0, queued.text
    assert "queued" in queued.out and f"hitl decision {silent.sent.id}" in queued.out
    await world.broker.drain()
    status = await world.hitl("decision", silent.sent.id)
    assert status.code == 0, status.text
    assert f"decision {silent.sent.id}: applied to checkpoint {cp['id']}" in status.out


async def test_decision_of_an_unknown_id_says_it_is_not_handled_yet(world):
    answer = await world.hitl("decision", "0b9c7d2e-5a61-4f0e-8f3c-2d1e6a7b8c90")
    assert answer.code == 1 and "not handled yet" in answer.err
    as_json = await world.hitl("decision", "0b9c7d2e-5a61-4f0e-8f3c-2d1e6a7b8c90", "--json")
    assert as_json.code == 1 and json.loads(as_json.out)["status"] == "unknown"


async def test_a_refused_decision_shows_the_winner(world):
    cp = world.add_checkpoint()
    assert (await world.hitl("decide", cp["id"], "approve", reviewer="bob")).code == 0
    late = await world.hitl("decide", cp["id"], "abort", "--reason", "no")
    assert late.code == 1
    assert "409 already_resolved" in late.err and "decided first: approve by bob" in late.err


def test_parked_answers_are_shown_as_parked_not_as_applied():
    from services.cli import render

    text = render.decision_result({"status": "parked", "decision_id": "d-1", "message": "kept until it opens"})
    assert text.startswith("parked: kept until it opens") and "hitl decision d-1" in text
