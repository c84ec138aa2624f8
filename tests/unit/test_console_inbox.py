"""The inbox filters, searches and pages in the query (not over the 500 soonest deadlines): with
10,000 open checkpoints a 24 h checkpoint assigned to dave is in his view, totals are honest, decided
checkpoints can be browsed and searched, and bad page numbers are a 400. On SQLite and PostgreSQL."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from services.console.auth import Session
from services.console.inbox import InboxFilters, inbox
from shared.passwords import hash_password
from shared.settings import ReviewerConfig
from shared.store import Database
from shared.store.tables import checkpoints
from tests.conftest import make_settings
from tests.unit.console_support import TestClient, console_app, sign_in

PASSWORD = "dave's password"
DAVE = ReviewerConfig(name="dave", token="rv-dave-token", apps=["demo"], groups=["legal"],
                      password_hash=hash_password(PASSWORD, iterations=1000))
CAROL = ReviewerConfig(name="carol", token="rv-carol-token", apps=["demo"])


def row(i: int, now: float, **values) -> dict:
    base = dict(id=str(uuid.uuid4()), app="demo", kind="http", workflow_run_id=f"run-{i:05d}", node_id=f"node{i % 7}",
                round=1, status="open", mode="hold", message=f"Check draft {i}", node_output=f"Draft number {i}.",
                workflow_id="wf-1", timeout_s=300, deadline=now + 300 + i, on_timeout="abort", assignees=[],
                max_rounds=3, created_at=now - i, updated_at=now - i, attach_count=1, published=True,
                action=None, decided_by=None, resolved_at=None, feedback=None, decision_channel=None)
    return {**base, **values}  # every row the same keys: an executemany INSERT takes the first row's


def fill(db: Database, rows: list[dict]) -> None:
    with db.write() as conn:
        conn.execute(checkpoints.insert(), rows)


@pytest.fixture
def store(database_url):
    db = Database(database_url)
    db.migrate()
    yield db, database_url
    db.dispose()


def app_on(db: Database, url: str):
    settings = make_settings(url, reviewers=[DAVE, CAROL])
    return console_app(settings, db, page_size=50)


def session_of(reviewer: ReviewerConfig) -> Session:
    return Session(reviewer, "csrf", time.time() + 60, "token")


def test_a_24h_checkpoint_assigned_to_dave_among_10000_open_is_in_his_views(store, capsys):
    db, url = store
    now = time.time()
    rows = [row(i, now) for i in range(10_000)]
    rows.append(row(10_001, now, workflow_run_id="run-daves", node_id="legal_review", deadline=now + 86_400,
                    assignees=["dave"], message="Contract clause for dave"))
    rows.append(row(10_002, now, workflow_run_id="run-group", node_id="legal_review", deadline=now + 90_000,
                    assignees=["group:legal"]))
    fill(db, rows)
    settings = make_settings(url, reviewers=[DAVE, CAROL])
    views = {"mine": InboxFilters(mine=True), "node": InboxFilters(node="legal_review"),
             "search": InboxFilters(q="run-daves"), "mine+node": InboxFilters(mine=True, node="legal_review")}
    timings = {}
    for label, f in views.items():
        with db.read() as conn:
            started = time.perf_counter()
            data = inbox(conn, settings, session_of(DAVE), frozenset({"demo"}), f, 50)
            timings[label] = (time.perf_counter() - started) * 1000
        assert "run-daves" in [r["workflow_run_id"] for r in data["rows"]], label
    with db.read() as conn:
        mine = inbox(conn, settings, session_of(DAVE), frozenset({"demo"}), InboxFilters(mine=True), 50)
        started = time.perf_counter()
        first = inbox(conn, settings, session_of(DAVE), frozenset({"demo"}), InboxFilters(), 50)
        timings["first page"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        last = inbox(conn, settings, session_of(DAVE), frozenset({"demo"}), InboxFilters(page=201), 50)
        timings["page 201"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        text = inbox(conn, settings, session_of(DAVE), frozenset({"demo"}), InboxFilters(q="number 9999."), 50)
        timings["output text search"] = (time.perf_counter() - started) * 1000
    assert mine["total"] == 2  # named, and through the group
    assert first["total"] == 10_002 and first["pages"] == 201 and len(first["rows"]) == 50
    assert first["rows"][0]["workflow_run_id"] == "run-00000"  # nearest deadline first
    assert [r["workflow_run_id"] for r in last["rows"]] == ["run-daves", "run-group"]
    assert [r["workflow_run_id"] for r in text["rows"]] == ["run-09999"]
    with capsys.disabled():  # the figure for the report (no timing assertion: the machine is shared)
        print(f"\ninbox query, 10,002 open, {db.engine.dialect.name}: "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))


def test_decided_checkpoints_are_listed_latest_first_with_who_decided_and_can_be_searched(store):
    db, url = store
    now = time.time()
    fill(db, [row(1, now), row(2, now, status="resolved", action="approve", decided_by="carol", resolved_at=now - 50,
                                decision_channel="console", feedback=None),
              row(3, now, status="resolved", action="revise", decided_by="dave", resolved_at=now - 10,
                  feedback="needs the 50% discount"),
              row(4, now, status="expired", action="abort", decided_by="system", resolved_at=now - 5),
              row(5, now, status="cancelled", decided_by="system", resolved_at=now - 1)])
    client = TestClient(app_on(db, url))
    assert sign_in(client, "dave", PASSWORD).status_code == 303
    decided = client.get("/?status=decided").text
    assert decided.index("run-00003") < decided.index("run-00002")
    assert ">carol</td>" not in decided and "carol" in decided and "via console" in decided
    assert "Decided at" in decided and "run-00001" not in decided
    assert "run-00004" in client.get("/?status=expired").text and "run-00005" in client.get("/?status=cancelled").text
    everything = client.get("/?status=all&q=carol").text  # search by the reviewer who decided
    assert "run-00002" in everything and "run-00003" not in everything
    assert "run-00003" in client.get("/?status=all&q=50%25").text  # a literal %, not a wildcard
    assert "run-00001" not in client.get("/?status=all&q=50%25").text
    assert "run-00001" in client.get("/?q=draft+number+1.").text  # the text of the output


def test_paging_shows_totals_and_a_page_that_is_not_a_number_is_a_400(store):
    db, url = store
    now = time.time()
    fill(db, [row(i, now) for i in range(120)])
    client = TestClient(app_on(db, url))
    sign_in(client, "dave", PASSWORD)
    page2 = client.get("/?page=2").text
    assert re.search(r"120 open checkpoints · showing 51–100", page2) and "page 2 of 3" in page2
    assert len(re.findall(r'<tr data-href="/checkpoints/', page2)) == 50
    for bad in ("abc", "0", "99999999999999999999", "-1"):
        answer = client.get(f"/?page={bad}")
        assert answer.status_code == 400, bad
        assert client.get(f"/?page={bad}", headers={"Accept": "application/json"}).json()["error"]["code"] == \
            "invalid_field"
    assert client.get("/runs?page=99999999999999999999").status_code == 400
    assert "No checkpoint matches these filters on page 9" in client.get("/?page=9").text


def test_the_age_filter_and_the_filter_menus_come_from_the_query(store):
    db, url = store
    now = time.time()
    fill(db, [row(1, now, created_at=now - 30, node_id="fresh"), row(2, now, created_at=now - 7200, node_id="old")])
    client = TestClient(app_on(db, url))
    sign_in(client, "dave", PASSWORD)
    young = client.get("/?age=new").text
    assert "run-00001" in young and "run-00002" not in young
    old = client.get("/?age=1h").text
    assert "run-00002" in old and "run-00001" not in old
    assert '<option value="fresh"' in young and '<option value="old"' in young  # every node, not just this page's
