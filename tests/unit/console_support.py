"""What the console's in-process tests share (Starlette TestClient, a real SQLite store, a stand-in for the
decider's replies): the app, signing in, the CSRF token, checkpoints as ingest and the decider write them,
and the reviewers, votes, timers and claims of the policy tests. The `console` fixture is in
tests/unit/conftest.py; the policy, delegation and bulk modules define theirs over `policy_console`."""
from __future__ import annotations

import re
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from services.console.app import create_app
from services.console.config import ConsoleSettings
from shared.models import Reply, Resolution
from shared.passwords import hash_password
from shared.policy import Approval, EscalationStep, Policy, snapshot
from shared.settings import AppConfig, ReviewerConfig, Settings
from shared.store import Database, timers, votes
from shared.store import checkpoints as store
from tests.conftest import make_settings, memory_broker

with warnings.catch_warnings():  # starlette's note about httpx2; the client works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "alice's password"


class Replies:
    """Stands in for ReplyRouter: records decisions and commands, answers what the test says (`answer`,
    or `answer_for(decision)` when each decision gets its own)."""

    def __init__(self) -> None:
        self.decisions = []
        self.answer: Reply | None = None
        self.answer_for = None
        self.commands = []  # (exchange, routing key, message)
        self.command_answer: Reply | None = None

    async def submit_decision(self, decision, wait_s):
        self.decisions.append(decision)
        return self.answer_for(decision) if self.answer_for else self.answer

    async def request(self, exchange, routing_key, message, wait_s):
        self.commands.append((exchange, routing_key, message))
        return self.command_answer

    def fail_all(self) -> None:
        pass


SECRET = "unit-test-secret-0123456789"


def console_app(settings: Settings, db: Database, **console: Any):
    """The console app on `db`, its broker in memory and not started, the decider's replies stood in for
    (`app.state.replies`, a Replies); `console`: ConsoleSettings beyond the secret."""
    app = create_app(settings, ConsoleSettings(**{"secret": SECRET, **console}), db, memory_broker(settings),
                     start_broker=False)
    app.state.replies = Replies()
    return app


def plain_console(sqlite_url: str) -> Iterator[tuple[Any, Database]]:
    """(app, db) with alice (a password) and bob (his token) reviewing app demo: the `console` fixture."""
    db = Database(sqlite_url)
    db.migrate()
    settings = make_settings(sqlite_url, reviewers=[
        ReviewerConfig(name="alice", token="rv-alice-token", password_hash=hash_password(PASSWORD, iterations=1000),
                       apps=["demo"]),
        ReviewerConfig(name="bob", token="rv-bob-token", apps=["demo"])])
    yield console_app(settings, db, login_attempts=3), db
    db.dispose()


def add_checkpoint(db: Database, node_output="Draft 1 about **tests**.", assignees=()) -> str:
    cid, now = str(uuid.uuid4()), time.time()
    with db.write() as conn:
        store.insert_if_absent(conn, dict(
            id=cid, app="demo", kind="http", workflow_run_id=str(uuid.uuid4()), node_id="draft", round=1, status="open",
            mode="hold", message="Check the draft", node_output=node_output, timeout_s=300, deadline=now + 300,
            on_timeout="abort", assignees=list(assignees), max_rounds=5, created_at=now, updated_at=now))
    return cid


def sign_in(client: TestClient, name="alice", password=PASSWORD, next_="/"):
    page = client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"name": name, "password": password, "csrf": nonce, "next": next_},
                       follow_redirects=False)


def csrf_of(client: TestClient, path="/") -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get(path).text).group(1)


def resolved(cid: str, action="approve") -> Reply:
    return Reply(outcome="applied", checkpoint_id=cid,
                 resolution=Resolution(action=action, checkpoint_id=cid, round=1, decided_by="alice"))


# ---------------------------------------------------------------------- the policy tests
REVIEWERS = [
    ReviewerConfig(name="alice", token="rv-alice-token", password_hash=hash_password(PASSWORD, iterations=1000),
                   apps=["demo"]),
    ReviewerConfig(name="bob", token="rv-bob-token", apps=["demo"], end_users=["e2e-user"]),
    ReviewerConfig(name="carol", token="rv-carol-token", apps=["demo"], groups=["legal"]),
    ReviewerConfig(name="dave", token="rv-dave-token", apps=["demo"], groups=["legal"], delegate_to="erin"),
    ReviewerConfig(name="erin", token="rv-erin-token", apps=["demo"]),
    ReviewerConfig(name="ops", token="rv-ops-token", role="admin"),
    ReviewerConfig(name="zoe", token="rv-zoe-token", apps=["other"], groups=["outsiders"]),
]
TOKENS = {r.name: r.token for r in REVIEWERS}
APPS = [AppConfig(name="demo", checkpoint_token="cp-test-token-0001"),
        AppConfig(name="other", checkpoint_token="cp-other-token-01")]


def policy_console(sqlite_url: str) -> Iterator[tuple[Any, Database]]:
    """(app, db) with REVIEWERS over APPS: the `console` fixture of the policy, delegation and bulk tests."""
    db = Database(sqlite_url)
    db.migrate()
    yield console_app(make_settings(sqlite_url, reviewers=REVIEWERS, apps=APPS), db), db
    db.dispose()


def client_for(app, name: str) -> TestClient:
    client = TestClient(app)
    answer = sign_in(client, name, PASSWORD if name == "alice" else TOKENS[name])
    assert answer.status_code == 303, answer.text
    return client


def add(db: Database, *, assignees=(), policy: Policy | None = None, electorate=None, delegated=None,
        user: str | None = None, round_: int = 1, max_rounds: int = 5, status: str = "open",
        claimed_by: str | None = None, claimed_at: float | None = None, kind: str = "http", form=None,
        node_output: Any = "Draft 1 about tests.", created_at: float | None = None, app: str = "demo") -> str:
    cid, now = str(uuid.uuid4()), created_at or time.time()
    snap = snapshot(policy or Policy(), assignees=list(assignees), electorate=list(electorate or assignees),
                    delegated=dict(delegated or {}), app=app)
    with db.write() as conn:
        store.insert_if_absent(conn, dict(
            id=cid, app=app, kind=kind, workflow_run_id=f"run-{uuid.uuid4().hex[:8]}", node_id="draft",
            round=round_, status=status, mode="hold", message="Check the draft", node_output=node_output,
            timeout_s=600, deadline=now + 600, on_timeout="abort", assignees=list(assignees), max_rounds=max_rounds,
            created_at=now, updated_at=now, user=user, policy=snap, claimed_by=claimed_by, claimed_at=claimed_at,
            form=form, decided_by="bob" if status != "open" else None, action="approve" if status != "open" else None,
            resolved_at=now if status != "open" else None, decision_channel="api" if status != "open" else None))
    return cid


def quorum(m: int = 2, mode: str = "m_of_n", **more) -> Policy:
    return Policy(approval=Approval(mode=mode, m=m if mode == "m_of_n" else None), **more)


def ladder(*steps: dict) -> list[EscalationStep]:
    return [EscalationStep(**s) for s in steps]


def vote(db: Database, cid: str, voter: str, action: str = "approve", channel: str = "api",
         feedback: str | None = None) -> None:
    """A vote as the decider records it: the vote row and the checkpoint's tally."""
    with db.write() as conn:
        assert votes.cast(conn, checkpoint_id=cid, voter=voter, action=action, channel=channel, at=time.time(),
                          message_id=uuid.uuid4().hex, feedback=feedback)
        cp = store.get(conn, cid)
        rows = votes.of(conn, cid)
        approved = [v["voter"] for v in rows if v["action"] == "approve"]
        rejected = [{"voter": v["voter"], "action": v["action"]} for v in rows if v["action"] != "approve"]
        need = cp["policy"]["required"]
        progress = f"{len(approved)} of {need} approved" + (f": {', '.join(approved)}" if approved else "")
        if rejected:
            progress += "; " + ", ".join(f"{r['action']} by {r['voter']}" for r in rejected)
        store.update_open(conn, cid, time.time(), tally={"required": need, "electorate": cp["policy"]["electorate"],
                                                         "approved": approved, "rejected": rejected,
                                                         "progress": progress})


def timer(db: Database, cid: str, kind: str, step: int, due_at: float, fired: str | None = None) -> None:
    with db.write() as conn:
        timers.schedule(conn, cid, kind, step, due_at)
        if fired:
            row = next(t for t in timers.of(conn, cid) if t["kind"] == kind and t["step"] == step)
            timers.fire(conn, row["id"], due_at, outcome=fired)


def section(page: str, live: str) -> str:
    """One live region of a page (up to the next one; the claim notice is nested in the decision's)."""
    start = page.index(f'data-live="{live}"')
    following = page.find("data-live=", start + 10)
    while following > 0 and page.startswith('data-live="claim-notice"', following):
        following = page.find("data-live=", following + 10)
    return page[start:following if following > 0 else len(page)]
