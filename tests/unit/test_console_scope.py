"""A reviewer of app A never sees app B: every page and endpoint of the console, tested one by one
(the inbox in every status, its search and filter menus, a checkpoint, a decision, the runs list, a
run, the step view's "next node", the live stream)."""
from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest

from shared.settings import AppConfig, ReviewerConfig
from shared.store import Database
from shared.store import checkpoints as cp_store
from shared.store import runs as run_store
from tests.conftest import make_settings
from tests.unit.console_support import TestClient, console_app, csrf_of, sign_in

AMY = ReviewerConfig(name="amy", token="rv-amy-token-a", apps=["app-a"])
SECRET_WORD = "only-in-app-b"


def add(db: Database, app: str, status: str = "open", run_id: str | None = None, node_output=None) -> dict:
    cid, now, run_id = str(uuid.uuid4()), time.time(), run_id or f"{app}-{uuid.uuid4().hex[:8]}"
    with db.write() as conn:
        cp_store.insert_if_absent(conn, dict(
            id=cid, app=app, kind="http", workflow_run_id=run_id, node_id=f"{app}-node", round=1, status=status,
            mode="hold", message=f"Review {SECRET_WORD if app == 'app-b' else 'a draft'}",
            node_output=node_output if node_output is not None else f"text {SECRET_WORD if app == 'app-b' else ''}",
            workflow_id=f"wf-{app}", timeout_s=300, deadline=now + 300, on_timeout="abort", assignees=[],
            max_rounds=1, created_at=now, updated_at=now, decided_by="bob" if status != "open" else None,
            resolved_at=now if status != "open" else None, action="approve" if status == "resolved" else None))
        run_store.ensure(conn, app, run_id, "gateway", workflow_id=f"wf-{app}", inputs={"topic": SECRET_WORD})
    return {"id": cid, "run_id": run_id}


@pytest.fixture
def two_apps(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    settings = make_settings(sqlite_url, reviewers=[AMY], bots=[],
                             apps=[AppConfig(name="app-a", checkpoint_token="tok-app-a-0"),
                                   AppConfig(name="app-b", checkpoint_token="tok-app-b-0")])
    app = console_app(settings, db)
    a, b = add(db, "app-a"), add(db, "app-b")
    b_decided = add(db, "app-b", status="resolved")
    client = TestClient(app)
    assert sign_in(client, "amy", "rv-amy-token-a").status_code == 303
    yield app, db, client, a, b, b_decided
    db.dispose()


@pytest.mark.parametrize("query", ["", "?status=decided", "?status=all", "?status=expired", "?status=cancelled",
                                   f"?status=all&q={SECRET_WORD}", "?status=all&app=app-b", "?status=all&q=app-b",
                                   "?node=app-b-node", "?workflow=wf-app-b"])
def test_the_inbox_never_lists_or_offers_another_apps_checkpoints(two_apps, query):
    _, _, client, a, b, b_decided = two_apps
    page = client.get("/" + query).text
    listed = page[page.index('<section data-live="inbox-list">'):]  # what the query found (not what was asked)
    offered = " ".join(re.findall(r"<option [^>]*>[^<]*</option>", page))  # the filter menus
    for leak in (b["id"], b["run_id"], b_decided["id"], SECRET_WORD, "wf-app-b", "app-b-node", "app-b"):
        assert leak not in listed and leak not in offered, (query, leak)


def test_the_open_count_is_of_the_reviewers_apps_only(two_apps):
    _, _, client, *_ = two_apps
    assert '<title>(1) Inbox — dify-hitl</title>' in client.get("/").text


def test_another_apps_checkpoint_page_and_decision_are_404(two_apps):
    app, _, client, a, b, _ = two_apps
    assert client.get(f"/checkpoints/{a['id']}").status_code == 200
    page = client.get(f"/checkpoints/{b['id']}")
    assert page.status_code == 404 and SECRET_WORD not in page.text
    answer = client.post(f"/checkpoints/{b['id']}/decision", json={"action": "approve"},
                         headers={"X-CSRF-Token": csrf_of(client)})
    assert answer.status_code == 404 and app.state.replies.decisions == []


def test_another_apps_runs_are_neither_listed_nor_shown(two_apps):
    _, _, client, a, b, _ = two_apps
    listing = client.get("/runs?status=").text
    assert a["run_id"] in listing and b["run_id"] not in listing and "app-b" not in listing
    assert client.get("/runs?app=app-b").text.count('data-run="') == 0
    assert client.get(f"/runs/{b['run_id']}").status_code == 404
    assert client.get(f"/runs/{a['run_id']}").status_code == 200


def test_the_step_views_next_node_comes_from_the_same_app_only(two_apps):
    _, db, client, *_ = two_apps
    step = {"start": {"topic": "x"}, "llm": {"text": "y"}}
    mine = add(db, "app-a", node_output=step)
    with db.write() as conn:  # app B ran a node after "llm" in a run of the same workflow id
        for app in ("app-b",):
            run_store.ensure(conn, app, "b-earlier", "gateway", workflow_id="wf-app-a")
            for node in ("llm", "secret_next_of_b"):
                run_store.upsert_node(conn, app, "b-earlier", f"{app}-{node}", "succeeded", node_id=node, title=node)
    page = client.get(f"/checkpoints/{mine['id']}").text
    assert "secret_next_of_b" not in page


async def test_the_live_stream_carries_only_the_reviewers_apps(two_apps):
    app, *_ = two_apps
    hub = app.state.hub
    client = hub.subscribe(frozenset({"app-a"}))
    for name in ("app-a", "app-b"):
        hub.publish({"type": "checkpoint.opened", "app": name, "checkpoint_id": name})
    hub.publish({"type": "checkpoint.opened"})  # no app: nobody's
    seen = [client.get_nowait() for _ in range(client.qsize())]
    assert [e["checkpoint_id"] for e in seen] == ["app-a"]
    await asyncio.sleep(0)
