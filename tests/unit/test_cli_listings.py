"""`hitl checkpoints`, `runs`, `run-show`, `hash-password` against the real ingest API (in memory): what each
shows, and the arguments they refuse."""
from __future__ import annotations

import json
import time

import pytest

from shared.passwords import verify_password
from shared.store import runs as run_store
from tests.unit.cli_support import cli_world

RUN = "5f0c2a8e-1b7d-4c3a-9e2f-6a8b0c1d2e3f"


@pytest.fixture
async def world(sqlite_url):
    async for w in cli_world(sqlite_url):
        yield w


async def test_checkpoints_show_kind_assignees_and_who_decided(world):
    open_cp = world.add_checkpoint(id="aaaa1111-0000-4000-8000-000000000000", assignees=["bob", "group:legal"])
    form = world.add_checkpoint(id="bbbb2222-0000-4000-8000-000000000000", kind="dify-form", node_id="approve_form")
    decided = world.add_checkpoint(id="cccc3333-0000-4000-8000-000000000000")
    assert (await world.hitl("decide", decided["id"], "approve", reviewer="carol")).code == 0
    table = (await world.hitl("checkpoints")).out
    header, *rows = table.splitlines()
    assert "KIND" in header and "ASSIGNEES" in header and "DECIDED BY" in header
    by_id = {row.split()[0]: row for row in rows if row[:8] in ("aaaa1111", "bbbb2222", "cccc3333")}
    assert "http" in by_id["aaaa1111"] and "bob, group:legal" in by_id["aaaa1111"]
    assert "dify-form" in by_id["bbbb2222"] and "anyone" in by_id["bbbb2222"]
    assert "approve" in by_id["cccc3333"] and "carol" in by_id["cccc3333"]
    assert open_cp["workflow_run_id"] in by_id["aaaa1111"] and form["node_id"] in by_id["bbbb2222"]
    assert rows[-1] == "3 in all"


async def test_checkpoints_say_when_only_a_page_is_shown(world):
    for _ in range(3):
        world.add_checkpoint()
    assert (await world.hitl("checkpoints", "--limit", "2")).out.splitlines()[-1] == \
        "3 in all (first 2 shown: --limit for more)"


async def test_runs_status_is_checked_by_the_cli_and_by_the_api(world):
    bad = await world.hitl("runs", "--status", "sucess")
    assert bad.code == 2 and "invalid choice: 'sucess'" in bad.err
    status, data = await world.call("GET", "/v1/runs", status="sucess")
    assert status == 400 and data["error"]["code"] == "invalid_field" and "succeeded" in data["error"]["message"]
    ok = await world.hitl("runs", "--status", "succeeded")
    assert ok.code == 0 and ok.out.strip() == "no runs tracked"


def record_run(world, nodes):
    now = time.time()
    with world.db.write() as conn:
        run_store.ensure(conn, "demo", RUN, "api", status="running", created_at=now)
        for i, (execution, node_id, title, node_type, status, loop) in enumerate(nodes):
            in_loop = node_id in ("n_write", "n_check")
            run_store.upsert_node(conn, "demo", RUN, execution, status, node_id=node_id, title=title,
                                  node_type=node_type, loop_id="n_loop" if in_loop else None, loop_index=loop,
                                  elapsed_time=0.5 + i, started_at=now)


async def test_run_show_prints_node_titles_and_loop_iterations_like_the_console(world):
    record_run(world, [("e1", "n_start", "Start", "start", "succeeded", None),
                       ("e2", "n_write", "Write draft", "template-transform", "succeeded", 0),
                       ("e3", "n_check", "Human checkpoint", "http-request", "succeeded", 0),
                       ("e4", "n_write", "Write draft", "template-transform", "succeeded", 1),
                       # Dify reports loop_index when a child finishes: the running one is counted
                       ("e5", "n_check", "Human checkpoint", "http-request", "running", None)])
    world.add_checkpoint(run_id=RUN, node_id="n_write", round_=2)
    shown = (await world.hitl("run-show", RUN)).out
    nodes = [line for line in shown.splitlines() if "●" in line]
    assert len(nodes) == 5
    assert nodes[0].split("●")[1].split()[0] == "Start" and "loop" not in nodes[0]
    assert "Write draft" in nodes[1] and "n_write" in nodes[1] and "loop 1" in nodes[1]
    assert "Write draft" in nodes[3] and "loop 2" in nodes[3]
    # the one node-state rule (shared/views.node_state): the running HTTP node holds the open checkpoint
    assert "Human checkpoint" in nodes[4] and "loop 2" in nodes[4] and "waiting for a person" in nodes[4]


async def test_run_show_marks_a_never_finished_node_of_an_ended_run_stopped(world):
    record_run(world, [("e1", "n_write", "Write draft", "llm", "running", None)])
    with world.db.write() as conn:
        run_store.set_status(conn, "demo", RUN, "stopped")
    shown = (await world.hitl("run-show", RUN)).out
    assert "Write draft" in shown and "stopped" in next(line for line in shown.splitlines() if "●" in line)


async def test_hash_password_prints_the_hash_alone_and_says_where_it_goes(world):
    answer = await world.hitl("hash-password", "--name", "alice", stdin="a long passphrase\n")
    assert answer.code == 0, answer.text
    hashed = answer.out.strip()
    assert "\n" not in hashed and verify_password("a long passphrase", hashed)
    assert "password_hash of reviewer alice in HITL_REVIEWERS" in answer.err
    snippet = next(line for line in answer.err.splitlines() if line.strip().startswith("[{"))
    assert json.loads(snippet.replace("…", "x"))[0] == {"name": "alice", "token": "x", "apps": ["x"],
                                                        "password_hash": hashed}


async def test_hash_password_refuses_a_short_password(world):
    answer = await world.hitl("hash-password", stdin="short\n")
    assert answer.code == 2 and "at least 8 characters" in answer.err and answer.out == ""
