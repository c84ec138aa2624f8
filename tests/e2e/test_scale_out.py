"""Scale-out: two ingest, two decider and two poller processes on one PostgreSQL and one RabbitMQ,
under many simulated Dify runs, with decisions arriving from every channel at once (the HTTP API of
both ingests, the `hitl` CLI, a bot on the decisions exchange) — some of them racing for the same
checkpoint.

What must hold: every checkpoint ends with exactly one outcome; every held Dify call is answered on
the call itself by the ingest that holds it, whichever ingest took the decision (no run needed a
retry); no run is polled by two pollers at once; both replicas of each process did real work; two
notifier replicas tell a webhook receiver of every checkpoint exactly once, opened and resolved.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from demo.stack import APP_TOKEN, DEMO_BOT, DEMO_GRAPH, DIFY_APP_KEY, ProcessStack
from tests.e2e.harness import wait_for
from tests.fakes.webhook import WEBHOOK_SECRET, FakeReceiver

pytestmark = pytest.mark.e2e
RUNS_PER_APP = 15  # 30 runs: 15 held by ingest, 15 by ingest-2
APP2_TOKEN, APP2_KEY = "cp-demo2-token-change-me", "app-demo2-key"
REVIEWERS = [("alice", "rv-alice-token"), ("bob", "rv-bob-token")]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`, from a /metrics page."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.fixture
def receiver():
    with FakeReceiver().running() as hook:
        yield hook


@pytest.fixture
def stack(tmp_path, database_url, rabbitmq_url, receiver):
    probe = ProcessStack(tmp_path / "ports")  # only to know the simulator's port before configuring apps
    sim = f"http://127.0.0.1:{probe.ports['sim']}"
    apps = [{"name": "demo", "checkpoint_token": APP_TOKEN, "dify_base_url": sim, "dify_api_key": DIFY_APP_KEY},
            {"name": "demo2", "checkpoint_token": APP2_TOKEN, "dify_base_url": sim, "dify_api_key": APP2_KEY}]
    both = ["demo", "demo2"]
    reviewers = [{"name": n, "token": f"rv-{n}-token", "apps": both} for n in ("alice", "bob", "dana", "erin")]
    env = {"HITL_APPS": json.dumps(apps), "HITL_REVIEWERS": json.dumps(reviewers),
           "HITL_BOTS": json.dumps([{**DEMO_BOT, "apps": both}]),
           "HITL_POLL_MIN_INTERVAL_S": "0.5", "HITL_POLL_MAX_INTERVAL_S": "1.5",
           "HITL_DIFY_RATE_PER_S": "50", "HITL_DISCOVERY_INTERVAL_S": "3",
           # the notifier: every checkpoint to one webhook receiver, its links deciding as alice
           "HITL_CHANNELS": json.dumps({"webhook": {"secret": WEBHOOK_SECRET}}),
           "HITL_NOTIFY": json.dumps([{"app": "*", "targets": [{"channel": "webhook", "to": receiver.url,
                                                                 "reviewer": "alice"}]}])}
    with ProcessStack(tmp_path, database_url=database_url, rabbitmq_url=rabbitmq_url, ports=probe.ports,
                      env=env) as s:
        with ThreadPoolExecutor(3) as pool:  # the second replicas start side by side
            list(pool.map(lambda name: s.start(name, replica=2), ("decider", "poller", "ingest")))
            list(pool.map(lambda replica: s.start("notifier", replica=replica), (None, 2)))
        # The same workflow twice in the simulator: one app calls ingest, the other ingest-2.
        for name, url, token, key in (("demo-review", s.url("ingest"), APP_TOKEN, DIFY_APP_KEY),
                                      ("demo2-review", s.url("ingest-2"), APP2_TOKEN, APP2_KEY)):
            graph = DEMO_GRAPH.read_text().replace("__HITL_URL__", url).replace("__HITL_TOKEN__", token)
            httpx.post(f"{s.sim_url}/_sim/apps", json={"name": name, "graph": json.loads(graph), "api_key": key},
                       timeout=10).raise_for_status()
        yield s


def start_run(stack: ProcessStack, key: str, topic: str) -> dict:
    r = httpx.post(f"{stack.sim_url}/v1/workflows/run", headers=auth(key), timeout=120,
                   json={"inputs": {"topic": topic}, "response_mode": "blocking", "user": "load"})
    return r.json()


def checkpoints(stack: ProcessStack, status: str | None = None) -> list[dict]:
    query = f"?status={status}&limit=500" if status else "?limit=500"
    return httpx.get(f"{stack.url('ingest-2')}/v1/checkpoints{query}", headers=auth("rv-bob-token"),
                     timeout=10).json()["checkpoints"]


def api_decide(base: str, cp_id: str, token: str, **body) -> httpx.Response:
    return httpx.post(f"{base}/v1/checkpoints/{cp_id}/decision", headers=auth(token), json=body, timeout=30)


def cli_decide(stack: ProcessStack, base: str, cp_id: str, *args: str):
    import subprocess
    import sys

    from demo.stack import ROOT

    env = {**stack.env, "HITL_API_URL": base, "HITL_TOKEN": "rv-alice-token", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "services.cli.main", "decide", cp_id, *args], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def bot_publish(stack: ProcessStack, decisions: list[dict]) -> None:
    """A chat bot: JSON decisions published (confirmed) to the fanout exchange `<ns>.decisions`,
    signed with the bot's secret."""
    from shared.broker import Broker
    from shared.broker.signing import bot_headers
    from shared.topology import Names, build_topology

    names = Names(stack.env["HITL_NAMESPACE"])

    async def publish() -> None:
        broker = Broker(stack.env["HITL_RABBITMQ_URL"], name="test-bot", topology=build_topology(names))
        await broker.start(wait_s=15)
        try:
            bodies = [json.dumps(d).encode() for d in decisions]
            await asyncio.gather(*(broker.publish(names.decisions, "", b, message_id=uuid.uuid4().hex, sign=False,
                                                  headers=bot_headers(DEMO_BOT["name"], DEMO_BOT["secret"], b))
                                   for b in bodies))
        finally:
            await broker.close()

    asyncio.run(publish())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_replicas_of_everything_decide_each_checkpoint_once_and_answer_every_held_call(stack, receiver):
    ingest1, ingest2 = stack.url("ingest"), stack.url("ingest-2")
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=2 * RUNS_PER_APP + 16)
    runs = [pool.submit(start_run, stack, key, f"{app} topic {i}")
            for i in range(RUNS_PER_APP) for app, key in (("demo", DIFY_APP_KEY), ("demo2", APP2_KEY))]
    first = wait_for(lambda: (lambda c: c if len(c) >= 2 * RUNS_PER_APP else None)(checkpoints(stack, "open")),
                     60, f"{2 * RUNS_PER_APP} open checkpoints")
    first.sort(key=lambda c: c["id"])
    assert {c["app"] for c in first} == {"demo", "demo2"} and all(c["round"] == 1 for c in first)

    # One plan per checkpoint, all sent at once. Group 0 races three channels for the same checkpoint.
    expected: dict[str, str] = {}  # checkpoint id → the action its run must end with (None: whoever wins)
    tasks, bot, races, revised = [], [], [], []
    for i, cp in enumerate(first):
        group = i % 5
        if group == 0:
            races.append(cp["id"])
            tasks.append((cp["id"], pool.submit(api_decide, ingest1, cp["id"], "rv-alice-token", action="approve")))
            tasks.append((cp["id"], pool.submit(api_decide, ingest2, cp["id"], "rv-bob-token", action="edit",
                                                output=f"edited {cp['id']}")))
            bot.append({"checkpoint_id": cp["id"], "action": "abort", "actor": "dana", "channel": "slack",
                        "reason": "race"})
        elif group == 1:
            expected[cp["id"]] = "approve"
            tasks.append((cp["id"], pool.submit(api_decide, ingest1, cp["id"], "rv-alice-token", action="approve")))
        elif group == 2:
            expected[cp["id"]] = "edit"
            tasks.append((cp["id"], pool.submit(api_decide, ingest2, cp["id"], "rv-bob-token", action="edit",
                                                output=f"edited {cp['id']}")))
        elif group == 3:
            expected[cp["id"]] = "abort"  # the bot names the checkpoint by run and node
            bot.append({"workflow_run_id": cp["workflow_run_id"], "node_id": "draft", "action": "abort",
                        "actor": "dana", "channel": "slack", "reason": "not now"})
        else:
            revised.append(cp)  # revise through the CLI (against either ingest); round 2 comes next
            tasks.append((cp["id"], pool.submit(cli_decide, stack, ingest1 if i % 2 else ingest2, cp["id"], "revise",
                                                "--feedback", f"more about {cp['id'][:8]}")))
    tasks.append((None, pool.submit(bot_publish, stack, bot)))
    answers = [(cp_id, t.result(timeout=60)) for cp_id, t in tasks]
    for _, answer in answers:
        if isinstance(answer, httpx.Response):
            assert answer.status_code in (200, 409), answer.text
        elif answer is not None:
            assert answer.returncode == 0, answer.stdout + answer.stderr

    # Round 2 of the revised runs: approved by the bot (by run + node) and, at the same time, the API.
    second = wait_for(lambda: (lambda c: c if len(c) >= len(revised) else None)(
        [c for c in checkpoints(stack, "open") if c["round"] == 2]), 40, "round-2 checkpoints")
    assert {c["workflow_run_id"] for c in second} == {c["workflow_run_id"] for c in revised}
    both = [pool.submit(bot_publish, stack, [{"workflow_run_id": c["workflow_run_id"], "node_id": "draft",
                                              "action": "approve", "actor": "erin"} for c in second])]
    both += [pool.submit(api_decide, ingest2 if j % 2 else ingest1, c["id"], "rv-alice-token", action="approve")
             for j, c in enumerate(second)]
    for f in both:
        r = f.result(timeout=60)
        assert r is None or r.status_code in (200, 409), r.text
    for c in second:
        expected[c["id"]] = "approve"

    # Every run ends on the call itself: `succeeded`, never `partial-succeeded` (that would mean Dify
    # had to retry the checkpoint node because no ingest answered the held call).
    results = [r.result(timeout=60) for r in runs]
    statuses = sorted({r["data"]["status"] for r in results})
    assert statuses == ["succeeded"], [r["data"] for r in results if r["data"]["status"] != "succeeded"][:3]

    # Exactly one outcome per checkpoint, the one its run went on with.
    final = {c["id"]: c for c in checkpoints(stack)}
    assert len(final) == 2 * RUNS_PER_APP + len(revised)
    run_decision = {r["workflow_run_id"]: json.loads(r["data"]["outputs"]["decision"]) for r in results}
    for cp_id, cp in final.items():
        detail = httpx.get(f"{ingest1}/v1/checkpoints/{cp_id}", headers=auth("rv-alice-token"), timeout=10).json()
        applied = [h for h in detail["history"] if h.get("outcome") == "applied"]
        assert cp["status"] == "resolved" and len(applied) == 1, (cp_id, cp["status"], detail["history"])
        if cp_id in expected:
            assert cp["action"] == expected[cp_id], (cp_id, cp["action"], expected[cp_id])
        if cp["round"] == max(c["round"] for c in final.values() if c["workflow_run_id"] == cp["workflow_run_id"]):
            answered = run_decision[cp["workflow_run_id"]]
            assert (answered["action"], answered["checkpoint_id"]) == (cp["action"], cp["id"])
            if cp["action"] == "edit":
                assert answered["output"] == f"edited {cp_id}"
    for cp_id in races:  # the losers of a race saw the winner; every attempt is in the history
        detail = httpx.get(f"{ingest2}/v1/checkpoints/{cp_id}", headers=auth("rv-bob-token"), timeout=10).json()
        attempts = [h for h in detail["history"] if h["kind"] == "decision"]
        assert len(attempts) == 3 and sorted(h["outcome"] for h in attempts) == ["applied", "rejected", "rejected"]
        assert {h["code"] for h in attempts if h["outcome"] == "rejected"} == {"already_resolved"}
    for cp_id, answer in answers:  # a 409 names the decision that won
        if isinstance(answer, httpx.Response) and answer.status_code == 409:
            error = answer.json()["error"]
            assert error["code"] == "already_resolved" and error["winning_decision"]["action"] == final[cp_id]["action"]

    # The pollers: every run reaches its final status in our store, and none was polled by both at once.
    def tracked():
        rows = httpx.get(f"{ingest1}/v1/runs?limit=500", headers=auth("rv-alice-token"), timeout=10).json()["runs"]
        done = [r for r in rows if r["status"] == "succeeded"]
        return rows if len(done) >= len(results) else None
    wait_for(tracked, 40, "every run recorded as succeeded by the pollers")
    log = httpx.get(f"{stack.sim_url}/_sim/requests", timeout=10).json()["requests"]
    polls: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for req in log:
        m = re.fullmatch(r"/v1/workflows/run/([0-9a-f-]{36})", req["path"].split("?")[0])
        if req["method"] == "GET" and m:
            polls[m.group(1)].append((req["time"], req["time"] + req.get("duration_s", 0)))
    assert len(polls) >= len(results), "the pollers did not poll every run"
    for run_id, spans in polls.items():
        spans.sort()
        for (_, a_end), (b_start, _) in itertools.pairwise(spans):
            assert b_start >= a_end, f"run {run_id} polled twice at once: {spans}"

    # The notifiers: one card and one outcome per checkpoint at the receiver, however the work was shared.
    def told():
        kinds = [(h["type"], h["checkpoint"]["id"]) for h in receiver.accepted]
        return kinds if sum(k == "checkpoint.resolved" for k, _ in kinds) >= len(final) else None
    kinds = wait_for(told, 40, "a resolved notification per checkpoint")
    for cp_id in final:
        assert kinds.count(("checkpoint.opened", cp_id)) == 1 and kinds.count(("checkpoint.resolved", cp_id)) == 1
    assert len(kinds) == 2 * len(final) and receiver.refused == []

    # Both replicas of every process did real work, and every one serves its metrics.
    pages = {key: httpx.get(f"{stack.url(key)}/metrics", timeout=10).text
             for key in ("ingest", "ingest-2", "decider", "decider-2", "poller", "poller-2", "notifier",
                         "notifier-2")}
    ns = stack.env["HITL_NAMESPACE"]
    for key in ("decider", "decider-2"):
        assert sample(pages[key], "hitl_messages_consumed_total", queue=f"{ns}.checkpoints") > 0, key
        assert sample(pages[key], "hitl_messages_settled_total", outcome="acked") > 0, key
    assert sum(sample(pages[k], "hitl_checkpoints_opened_total") for k in ("decider", "decider-2")) == len(final)
    for key in ("poller", "poller-2"):
        assert sample(pages[key], "hitl_dify_calls_total", endpoint="get_run", status="200") > 0, key
    for key in ("notifier", "notifier-2"):
        assert sample(pages[key], "hitl_notifications_sent_total", channel="webhook") > 0, key
    for key in ("ingest", "ingest-2"):
        assert sample(pages[key], "hitl_held_calls") == 0, key
        assert sample(pages[key], "hitl_messages_consumed_total", queue="private") > 0, key  # its reply queue
    pool.shutdown(wait=False, cancel_futures=True)
    assert time.monotonic() - started < 90
