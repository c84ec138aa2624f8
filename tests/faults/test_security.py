"""Security at the edge: tokens on every endpoint, app vs reviewer tokens never interchangeable,
assignee rules, secrets never in logs or answers, constant-time token comparison, body limits, and a
cap on the calls one app token holds open in one ingest process (429 too_many_held)."""
from __future__ import annotations

import asyncio
import hmac
import json

import httpx
import pytest

from demo.stack import APP_TOKEN, DIFY_APP_KEY
from tests.faults.conftest import record, scaled
from tests.faults.helpers import DifyNode, StoreView, checkpoint_body, finish, start_call, wait_until

pytestmark = pytest.mark.timeout(600)
REVIEWERS = [{"name": "alice", "token": "rv-alice-token-s3cr3t", "apps": ["demo"]},
             {"name": "bob", "token": "rv-bob-token-s3cr3t", "apps": ["demo"]},
             {"name": "carol", "token": "rv-carol-token-s3cr3t", "groups": ["editors"], "apps": ["demo"]}]
ALICE, BOB, CAROL = (r["token"] for r in REVIEWERS)
SECRETS = [APP_TOKEN, DIFY_APP_KEY, ALICE, BOB, CAROL]
DIFY_FACING = [("POST", "/v1/checkpoints"), ("POST", "/api/user-confirmation"), ("POST", "/v1/events")]
REVIEWER_FACING = [("GET", "/v1/checkpoints"), ("GET", "/v1/checkpoints/x1"), ("POST", "/v1/checkpoints/x1/decision"),
                   ("POST", "/api/node-confirmation"), ("GET", "/v1/runs"), ("GET", "/v1/runs/r1"),
                   ("POST", "/v1/runs"),
                   ("POST", "/v1/runs/track"), ("POST", "/v1/runs/r1/rerun"), ("POST", "/v1/runs/r1/stop")]
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
ANSWERS: list[str] = []
STATS = {"calls": 0, "bad": 0}


@pytest.fixture(scope="module")
def stack(stacks):
    s = stacks("security", processes=("sim", "decider", "poller", "ingest"),
               env={"HITL_REVIEWERS": json.dumps(REVIEWERS), "HITL_LOG_LEVEL": "DEBUG"})
    yield s
    record("security (auth, assignees, secrets, limits)", iterations=STATS["calls"], errors=STATS["bad"],
           result="passed" if STATS["bad"] == 0 else "failed")


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=stack.ingest_url, timeout=20) as c:
        yield c


def call(client, method, path, token=None, body=None, raw_auth=None):
    headers = {}
    if raw_auth is not None:
        headers["Authorization"] = raw_auth
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    r = client.request(method, path, headers=headers, json=body if method == "POST" else None)
    STATS["calls"] += 1
    ANSWERS.append(r.text)
    return r


def test_every_endpoint_refuses_missing_and_wrong_tokens(client, stack):
    paths = json.loads(client.get("/openapi.json").text)["paths"]
    routes = [(m.upper(), p.replace("{", "").replace("}", "")) for p, ops in paths.items() for m in ops]
    assert len(routes) >= 20
    bad = []
    for method, path in routes:
        if path in PUBLIC:
            continue
        for auth in (None, "", "Bearer", "Bearer nope-nope-nope", "Basic YWxpY2U6eA==", f"Token {ALICE}",
                     f"Bearer {ALICE}x", f"Bearer {ALICE[:-1]}"):
            r = call(client, method, path, raw_auth=auth, body={})
            if r.status_code != 401:
                bad.append((method, path, auth, r.status_code))
    STATS["bad"] += len(bad)
    assert not bad, bad[:10]


def test_reviewer_tokens_cannot_call_dify_endpoints_and_app_tokens_cannot_decide(client):
    bad = []
    for method, path in DIFY_FACING:
        for token in (ALICE, BOB, CAROL, DIFY_APP_KEY):
            r = call(client, method, path, token,
                     {"workflow_run_id": "r", "node_id": "n", "event": "e", "mode": "detached"})
            if r.status_code != 401 or r.json()["error"]["code"] != "unauthorized":
                bad.append((path, token[:6], r.status_code))
    for method, path in REVIEWER_FACING:
        for token in (APP_TOKEN, DIFY_APP_KEY):
            r = call(client, method, path, token, {"action": "approve", "app": "demo", "run_id": "r", "node_id": "n",
                                                   "satisfied": True, "workflow_id": "r"})
            if r.status_code != 401:
                bad.append((path, token[:6], r.status_code))
    STATS["bad"] += len(bad)
    assert not bad, bad


def test_assignee_rules_and_actor_mismatch(client, stack):
    store = StoreView(stack.db_url)
    n = scaled(10, minimum=2)

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=100, interval_s=0.2)
        results, sem = [], asyncio.Semaphore(50)
        bodies = []
        for _ in range(n):
            bodies.append(checkpoint_body(assignees=["bob"]))
            bodies.append(checkpoint_body(assignees=["group:editors"]))
        calls = [start_call(node, b, results, sem) for b in bodies]
        runs = {b["workflow_run_id"]: b for b in bodies}
        assert await wait_until(lambda: len(store.checkpoints(set(runs))) >= len(bodies), 60)
        bad = []
        for cp in store.checkpoints(set(runs)):
            rightful = BOB if runs[cp["workflow_run_id"]]["assignees"] == ["bob"] else CAROL
            url = f"/v1/checkpoints/{cp['id']}/decision"
            r = await asyncio.to_thread(call, client, "POST", url, ALICE, {"action": "approve"})
            if r.status_code != 422 or r.json()["error"]["code"] != "not_assignee":
                bad.append(("not assignee", r.status_code, r.text[:80]))
            r = await asyncio.to_thread(call, client, "POST", url, rightful, {"action": "approve", "actor": "alice"})
            if r.status_code != 403 or r.json()["error"]["code"] != "actor_mismatch":
                bad.append(("actor mismatch", r.status_code))
            r = await asyncio.to_thread(call, client, "POST", url, rightful, {"action": "approve"})
            if r.status_code != 200:
                bad.append(("assignee", r.status_code, r.text[:80]))
        unfinished = await finish(calls, 30)
        await node.aclose()
        answers = [r.answer for r in results]
        ANSWERS.extend(json.dumps(a) for a in answers)
        return bad, unfinished, answers

    bad, unfinished, answers = asyncio.run(scenario())
    STATS["bad"] += len(bad) + unfinished
    store.close()
    assert not bad and not unfinished, bad[:10]
    assert all(a and a["action"] == "approve" and a["decided_by"] in ("bob", "carol") for a in answers)


def test_body_size_limit_on_every_post_endpoint(client):
    big = {"node_output": "x" * (1024 * 1024 + 1)}
    bad = []
    # every POST that reads a body (stop takes none: it answers 404 for an unknown run without reading one)
    for method, path in DIFY_FACING + [r for r in REVIEWER_FACING if r[0] == "POST" and not r[1].endswith("/stop")]:
        token = APP_TOKEN if (method, path) in DIFY_FACING else ALICE
        r = call(client, method, path, token, big)
        if r.status_code != 413 or r.json()["error"]["code"] != "body_too_large":
            bad.append((path, r.status_code))
    STATS["bad"] += len(bad)
    assert not bad, bad


def test_token_comparison_is_constant_time_and_checks_every_token(monkeypatch):
    """Spy on hmac.compare_digest: every configured token is compared, with no early exit on a match,
    and no other comparison decides (a wrong token still costs the same number of calls)."""
    from shared.settings import AppConfig, ReviewerConfig, Settings

    settings = Settings(apps=[AppConfig(name=f"a{i}", checkpoint_token=f"cp-token-{i:04d}", dify_base_url="http://d",
                                        dify_api_key=f"app-key-{i:04d}") for i in range(3)],
                        reviewers=[ReviewerConfig(name=f"r{i}", token=f"rv-token-{i:04d}") for i in range(4)])
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    for token, fn, n, expect in [("rv-token-0000", settings.reviewer_for_token, 4, "r0"),
                                 ("rv-token-0003", settings.reviewer_for_token, 4, "r3"),
                                 ("nope", settings.reviewer_for_token, 4, None),
                                 ("cp-token-0001", settings.app_for_token, 3, "a1"),
                                 ("app-key-0002", settings.app_for_dify_key, 3, "a2"),
                                 ("rv-token-0000", settings.app_for_token, 3, None)]:
        calls.clear()
        found = fn(token)
        assert (found.name if found else None) == expect
        assert len(calls) == n, f"{fn.__name__}({token}) compared {len(calls)} of {n} tokens"
    # the HTTP edge uses exactly these helpers (no ad-hoc == on a token)
    import inspect

    from services.ingest import gateway, http
    src = inspect.getsource(http) + inspect.getsource(gateway)
    assert "app_for_token(" in src and "reviewer_for_token(" in src and "app_for_dify_key(" in src
    assert "token ==" not in src and "== token" not in src


def test_secrets_never_appear_in_logs_or_answers(stack, client):
    # a few more answers that carry checkpoint data, runs and events
    for path in ("/v1/checkpoints?limit=500", "/v1/runs?limit=500"):
        call(client, "GET", path, ALICE)
    listing = json.loads(call(client, "GET", "/v1/checkpoints?limit=5", ALICE).text)["checkpoints"]
    for cp in listing:
        call(client, "GET", f"/v1/checkpoints/{cp['id']}", ALICE)
    call(client, "GET", "/metrics")
    leaks = []
    for text in ANSWERS:
        leaks += [(s[:6], text[:80]) for s in SECRETS if s in text]
    for log in stack.workdir.glob("*.log"):
        if log.name == "sim.log":  # the Dify simulator stands for Dify itself, not our process
            continue
        content = log.read_text(errors="replace")
        leaks += [(s[:6], log.name) for s in SECRETS if s in content]
    STATS["bad"] += len(leaks)
    print(f"\nsecrets: {len(ANSWERS)} answers and {len(list(stack.workdir.glob('*.log')))} logs scanned; "
          f"leaks {leaks[:5]}")
    assert not leaks, leaks[:10]


def test_held_calls_per_client_are_capped(stacks):
    stack = stacks("held-cap", env={"HITL_MAX_HELD_PER_APP": "100"}, processes=("decider", "ingest"))
    n = 300

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=0, read_timeout_s=10)
        results, sem = [], asyncio.Semaphore(n)
        calls = [start_call(node, checkpoint_body(read_timeout_s=4, mode="hold"), results, sem) for _ in range(n)]
        await finish(calls, 20)
        await node.aclose()
        return [r.status for r in results]

    statuses = asyncio.run(scenario())
    print(f"\nheld calls from one token: {n} sent, 429s: {statuses.count(429)}, 503s: {statuses.count(503)}")
    assert 429 in statuses, "no per-client cap: every one of the calls was held"
