"""`hitl bulk-decide` against the real ingest API and decider (in memory): a dry run decides nothing and
says why each would be refused, an apply decides each selected checkpoint once, the selection stays
within the reviewer's apps, and what cannot be sent is refused before anything is."""
from __future__ import annotations

import json

import pytest

from services.cli.client import Api
from tests.unit.cli_support import cli_world


@pytest.fixture
async def world(sqlite_url):
    async for w in cli_world(sqlite_url):
        yield w


@pytest.fixture
def calls(monkeypatch):
    """Every HTTP call the CLI makes, as (method, path, body)."""
    seen: list[tuple[str, str, object]] = []
    real = Api.call

    def recording(self, method, path, body=None, params=None):
        seen.append((method, path, body))
        return real(self, method, path, body, params)

    monkeypatch.setattr(Api, "call", recording)
    return seen


def applied(world, checkpoint_id: str) -> list[dict]:
    return [d for d in world.decisions(checkpoint_id) if d["outcome"] == "applied"]


# ---------------------------------------------------------------------- the dry run
async def test_a_dry_run_decides_nothing_and_says_why_each_would_be_refused(world, calls):
    mine = world.add_checkpoint()
    bobs = world.add_checkpoint(assignees=["bob"])
    done = world.add_checkpoint(status="resolved", action="approve", decided_by="carol")
    answer = await world.hitl("bulk-decide", "approve", "--id", mine["id"], "--id", bobs["id"][:8],
                              "--id", done["id"], "--dry-run")
    assert answer.code == 1, answer.text  # some would be refused
    lines = answer.out.splitlines()
    assert "would decide 1 of 3" in lines[0] and "nothing was decided" in lines[0]
    assert any(line.strip().startswith("would decide") and mine["id"] in line for line in lines)
    refused_bob = next(line for line in lines if bobs["id"] in line)
    assert "would refuse" in refused_bob and "not_assignee" in refused_bob and "(bob)" in refused_bob
    refused_done = next(line for line in lines if done["id"] in line)
    assert "would refuse" in refused_done and "not open any more" in refused_done
    posted = [body for method, path, body in calls if method == "POST"]
    assert posted == [{"ids": [mine["id"], bobs["id"], done["id"]], "action": "approve", "preview": True}]
    for cp in (mine, bobs):
        assert world.decisions(cp["id"]) == [] and world.checkpoint(cp["id"])["status"] == "open"


async def test_a_dry_run_by_filter_lists_the_matching_open_checkpoints_as_json(world):
    a = world.add_checkpoint(node_id="draft")
    b = world.add_checkpoint(node_id="draft")
    other_node = world.add_checkpoint(node_id="polish")
    answer = await world.hitl("bulk-decide", "revise", "--app", "demo", "--node", "draft",
                              "--feedback", "shorter", "--dry-run", "--json")
    assert answer.code == 0, answer.text  # every one would be decided
    data = json.loads(answer.out)
    assert data["preview"] is True and {c["id"] for c in data["checkpoints"]} == {a["id"], b["id"]}
    assert all(c["may_decide"] for c in data["checkpoints"])
    for cp in (a, b, other_node):
        assert world.decisions(cp["id"]) == []


# ---------------------------------------------------------------------- apply
async def test_an_apply_decides_each_selected_checkpoint_once(world):
    a = world.add_checkpoint(node_id="draft")
    b = world.add_checkpoint(node_id="draft")
    polish = world.add_checkpoint(node_id="polish")
    first = await world.hitl("bulk-decide", "approve", "--app", "demo", "--node", "draft")
    assert first.code == 0, first.text
    for cp in (a, b):
        assert any(line.strip().startswith("applied") and cp["id"] in line for line in first.out.splitlines())
        row = world.checkpoint(cp["id"])
        assert row["status"] == "resolved" and row["action"] == "approve" and row["decided_by"] == "alice"
    assert first.out.splitlines()[-1] == "applied 2"
    assert world.checkpoint(polish["id"])["status"] == "open" and world.decisions(polish["id"]) == []

    again = await world.hitl("bulk-decide", "approve", "--app", "demo", "--node", "draft")
    assert again.code == 1 and "nothing to decide" in again.err
    by_ids = await world.hitl("bulk-decide", "approve", "--id", a["id"], "--id", b["id"])
    assert by_ids.code == 1 and by_ids.out.count("not open any more") == 2 and "refused 2" in by_ids.out
    for cp in (a, b):
        assert len(world.decisions(cp["id"])) == 1 and len(applied(world, cp["id"])) == 1


async def test_an_apply_prints_each_refusal_with_its_reason_and_exits_1(world):
    mine = world.add_checkpoint()
    bobs = world.add_checkpoint(assignees=["bob"])
    answer = await world.hitl("bulk-decide", "abort", "--app", "demo", "--reason", "off topic")
    assert answer.code == 1, answer.text
    refused = next(line for line in answer.out.splitlines() if bobs["id"] in line)
    assert "refused" in refused and "not_assignee" in refused and "alice is not among the assignees" in refused
    assert answer.out.splitlines()[-1] in ("applied 1, refused 1", "refused 1, applied 1")
    assert world.checkpoint(mine["id"])["action"] == "abort"
    assert world.checkpoint(bobs["id"])["status"] == "open" and applied(world, bobs["id"]) == []


async def test_json_gives_the_apis_counts_and_results(world):
    a = world.add_checkpoint()
    answer = await world.hitl("bulk-decide", "approve", "--id", a["id"][:8], "--json")
    assert answer.code == 0, answer.text
    data = json.loads(answer.out)
    assert data["counts"] == {"applied": 1}
    assert [(r["checkpoint_id"], r["status"]) for r in data["results"]] == [(a["id"], "applied")]


# ---------------------------------------------------------------------- scope
async def test_a_checkpoint_of_an_app_not_granted_is_never_selected_or_decided(world, calls):
    mine = world.add_checkpoint(app="demo", node_id="draft")
    theirs = world.add_checkpoint(app="other", node_id="draft")  # olga's app; alice sees demo only

    by_app = await world.hitl("bulk-decide", "approve", "--app", "other", "--dry-run")
    assert by_app.code == 1 and "nothing to decide" in by_app.err and theirs["id"] not in by_app.text
    by_app = await world.hitl("bulk-decide", "approve", "--app", "other")
    assert by_app.code == 1 and theirs["id"] not in by_app.text

    by_id = await world.hitl("bulk-decide", "approve", "--id", theirs["id"], "--id", mine["id"])
    assert by_id.code == 1 and "among your apps" in by_id.err  # unknown to her: nothing is sent
    assert not any(method == "POST" and body and theirs["id"] in json.dumps(body)
                   for method, _, body in calls)

    preview = await world.hitl("bulk-decide", "approve", "--node", "draft", "--dry-run", "--json")
    assert [c["id"] for c in json.loads(preview.out)["checkpoints"]] == [mine["id"]]
    by_node = await world.hitl("bulk-decide", "approve", "--node", "draft")
    assert by_node.code == 0, by_node.text
    assert mine["id"] in by_node.out and theirs["id"] not in by_node.text
    assert world.checkpoint(mine["id"])["status"] == "resolved"
    assert world.checkpoint(theirs["id"])["status"] == "open" and world.decisions(theirs["id"]) == []


# ---------------------------------------------------------------------- refused before sending
async def test_invalid_output_json_is_refused_before_anything_is_sent(world, calls):
    cp = world.add_checkpoint(node_output={"title": "Draft"})
    broken = await world.hitl("bulk-decide", "edit", "--id", cp["id"], "--output", '{"title": "Better",}')
    assert broken.code == 2 and "sends no output" in broken.err and "hitl decide ID edit" in broken.err
    as_text = await world.hitl("bulk-decide", "approve", "--app", "demo", "--output", "x", "--text")
    assert as_text.code == 2 and "sends no output" in as_text.err
    assert calls == []
    assert world.decisions(cp["id"]) == [] and world.checkpoint(cp["id"])["status"] == "open"


async def test_broken_requests_exit_2_and_send_nothing(world, calls):
    cp = world.add_checkpoint()
    cases = [
        (("approve",), "name the checkpoints"),
        (("approve", "--id", cp["id"], "--app", "demo"), "not both"),
        (("revise", "--app", "demo"), "revise needs --feedback"),
        (("edit", "--app", "demo"), "an edit is one checkpoint's"),
    ]
    for argv, said in cases:
        answer = await world.hitl("bulk-decide", *argv)
        assert answer.code == 2 and said in answer.err, (argv, answer.text)
    assert (await world.hitl("bulk-decide", "approve", "--id", "3f2a9")).code == 2  # too short a prefix
    assert calls == [] and world.decisions(cp["id"]) == []
