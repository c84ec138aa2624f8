"""Bodies the store cannot hold, in every field, over HTTP and the bus, on SQLite and on PostgreSQL.

NUL characters, lone UTF-16 surrogates and JSON nested 256 deep, put into each field of each body
ingest takes (checkpoint calls on both paths, decisions, node-confirmations, events, runs, claims,
reassigns, bulk decisions) and into path ids; then into every field of decisions a bot publishes and
of checkpoint requests signed with our own key. What is counted:
- over HTTP, each request is refused at the edge (400, or 404 for a path id) or accepted — and
  what is accepted takes effect: a detached checkpoint call is answered `pending` (never a 503 of a
  request the decider could not open), a decision answered 200/202 is applied or parked;
- on the bus, each message is dead-lettered at once with an `invalid …` reason, or takes effect;
- no message reaches a DLQ for any other reason (the store refusing it), nothing is left waiting.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter

import httpx
import pytest

from demo.stack import APP_TOKEN
from shared.broker import Broker
from shared.topology import CHECKPOINT_REQUESTED, Names, build_topology, dlq_name
from tests.faults.attacks import drain, reason_of
from tests.faults.conftest import scaled
from tests.faults.helpers import REVIEWER_TOKEN, StoreView, checkpoint_body, open_broker, publish_decision

pytestmark = pytest.mark.timeout(600)
INTERNAL_KEY = "faults-internal-key-0123456789abcdef"
APP, ALICE = {"Authorization": f"Bearer {APP_TOKEN}"}, {"Authorization": f"Bearer {REVIEWER_TOKEN}"}


def deep(levels: int = 256):
    value: object = "bottom"
    for _ in range(levels):
        value = [value]
    return value


BAD = {"nul": "a\x00b", "surrogate": "x\ud800y", "deep": deep()}
# (path, token, the valid body, its text fields, its JSON fields)
BODIES = [
    ("/v1/checkpoints", APP, lambda: checkpoint_body(mode="detached"),
     ["workflow_run_id", "node_id", "message", "app_id", "workflow_id", "user"], ["node_output", "default_output"]),
    ("/api/user-confirmation", APP, lambda: checkpoint_body(mode="detached"),
     ["workflow_run_id", "node_id", "message", "user"], ["node_output"]),
    ("/api/node-confirmation", ALICE, lambda: {"workflow_id": str(uuid.uuid4()), "node_id": "draft",
                                               "satisfied": False, "feedback": "shorter"},
     ["workflow_id", "node_id", "feedback"], []),
    *[("/v1/events", APP, lambda event=event: {"workflow_run_id": str(uuid.uuid4()), "event": event, "node_id": "draft",
                                                "data": {"title": "t"}}, ["workflow_run_id", "event", "node_id"],
       ["data"]) for event in ("node_started", "node_finished", "workflow_started", "workflow_finished", "milestone")],
    ("/v1/runs/track", ALICE, lambda: {"run_id": str(uuid.uuid4()), "app": "demo"}, ["run_id", "app"], []),
    ("/v1/runs", ALICE, lambda: {"app": "demo", "inputs": {"topic": "t"}, "user": "u"}, ["app", "user", "workflow_id"],
     ["inputs"]),
]
# the same for bodies that name an open checkpoint: (path template, the valid body, text fields, JSON fields)
ON_CHECKPOINT = [
    ("/v1/checkpoints/{id}/decision", lambda: {"action": "revise", "feedback": "shorter"},
     ["feedback", "reason", "actor", "idempotency_key", "form_action"], []),
    ("/v1/checkpoints/{id}/decision", lambda: {"action": "edit", "output": {"text": "new"}}, [],
     ["output", "form_inputs"]),
    ("/v1/checkpoints/{id}/claim", lambda: {"note": "mine"}, ["note"], []),
    ("/v1/checkpoints/{id}/reassign", lambda: {"to": "bob", "note": "yours"}, ["to", "replace", "note"], []),
    ("/v1/checkpoints/bulk-decision", lambda: {"ids": ["{id}"], "action": "abort", "reason": "no"},
     ["reason", "feedback"], []),
]
PATH_IDS = ["/v1/checkpoints/a%00b", "/v1/checkpoints/a%00b/decision", "/v1/checkpoints/%ED%A0%80/claim",
            "/v1/runs/a%00b", "/v1/decisions/a%00b", "/v1/runs/a%00b/stop"]


def placed(body: dict, field: str, kind: str, as_json: bool) -> dict:
    """The body with the bad value in `field`: as the field itself, or inside it for a JSON field."""
    value = BAD[kind]
    if as_json and kind != "deep":
        # under the keys a consumer copies into text columns (a node's title, type, error, a run's
        # status and workflow id), besides one that stays JSON
        value = {key: value for key in ("text", "title", "node_type", "error", "status", "workflow_id", "node_id")}
    return {**body, field: value}


def encoded(body) -> bytes:
    return json.dumps(body).encode()  # ASCII escapes: \u0000 and \ud800 travel as JSON text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request, stacks):
    import os

    if request.param == "postgresql" and not os.environ.get("DATABASE_URL"):
        pytest.skip("needs a PostgreSQL server (DATABASE_URL)")
    s = stacks(f"unstorable-{request.param}", processes=(), env={"HITL_INTERNAL_KEY": INTERNAL_KEY})
    if request.param == "sqlite" and not s.db_url.startswith("sqlite"):
        s.env["HITL_DATABASE_URL"] = s.db_url = f"sqlite:///{s.workdir / 'hitl.db'}"
    for p in ("sim", "decider", "poller", "ingest"):
        s.start(p)
    s.register_app()  # POST /v1/runs starts real simulator runs
    s.store_name = request.param
    yield s
    s.stop_all()  # before the other store's stack starts


class Verdicts:
    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.failures: list[str] = []
        self.promised: list[str] = []  # decision ids answered 200/202

    def http(self, what: str, r: httpx.Response, *, path_id: bool = False) -> None:
        s = r.status_code
        if s in (400, 404, 422) and r.json().get("error", {}).get("code"):
            self.counts["refused"] += 1
            if path_id and s != 404:
                self.failures.append(f"{what}: {s} for a path id")
            return
        if s in (200, 201, 202):
            self.counts["accepted"] += 1
            body = r.json()
            if body.get("decision_id"):
                self.promised.append(body["decision_id"])
            return
        self.counts[f"failed {s}"] += 1
        self.failures.append(f"{what}: {s} {r.text[:200]}")


def test_bodies_the_store_cannot_hold_are_refused_at_the_edge_or_stored(stack, row):
    names = Names(stack.env["HITL_NAMESPACE"])
    store = StoreView(stack.db_url)
    started = time.monotonic()
    rounds = scaled(10, minimum=1)

    async def scenario():
        verdicts = Verdicts()
        http = httpx.AsyncClient(base_url=stack.ingest_url, timeout=30)
        sent = 0
        targets: list[str] = []  # checkpoints opened for the decisions to name (not counted)

        async def post(path: str, token: dict, body, count: bool = True) -> httpx.Response:
            nonlocal sent
            sent += count
            try:
                return await http.post(path, content=encoded(body),
                                       headers={**token, "Content-Type": "application/json"})
            except httpx.HTTPError as exc:  # no answer at all: counted like a 500
                return httpx.Response(599, json={"no answer": type(exc).__name__})

        async def target() -> str:
            r = await post("/v1/checkpoints", APP, checkpoint_body(mode="detached"), count=False)
            assert r.status_code == 200, r.text
            targets.append(r.json()["checkpoint_id"])
            return targets[-1]

        for _ in range(rounds):
            for path, token, make, text_fields, json_fields in BODIES:
                for field in text_fields + json_fields:
                    for kind in BAD:
                        r = await post(path, token, placed(make(), field, kind, field in json_fields))
                        verdicts.http(f"{path} {field} {kind}", r)
            for kind in BAD:  # the whole body, and a key of the output
                verdicts.http(f"body {kind}", await post("/v1/checkpoints", APP, [BAD[kind]] if kind != "deep"
                                                         else deep()))
                verdicts.http(f"key {kind}", await post("/v1/checkpoints", APP, {
                    **checkpoint_body(mode="detached"), "node_output": {str(BAD[kind])[:8]: 1}}))
            for template, make, text_fields, json_fields in ON_CHECKPOINT:
                for field in text_fields + json_fields:
                    for kind in BAD:
                        cid = await target()
                        body = json.loads(json.dumps(make()).replace("{id}", cid))
                        r = await post(template.replace("{id}", cid), ALICE, placed(body, field, kind,
                                                                                   field in json_fields))
                        verdicts.http(f"{template} {field} {kind}", r)
            for path in PATH_IDS:
                sent += 1
                method, body = ("POST", {"note": "x"} if path.endswith("/claim") else {"action": "approve"}) \
                    if path.endswith(("/decision", "/claim", "/stop")) else ("GET", None)
                r = await http.request(method, path, headers=ALICE, json=body)
                verdicts.http(f"{method} {path}", r, path_id=True)
        # what was accepted took effect: every decision answered 200/202 is applied or parked
        for decision_id in verdicts.promised:
            r = await http.get(f"/v1/decisions/{decision_id}", headers=ALICE)
            for _ in range(40):
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.25)
                r = await http.get(f"/v1/decisions/{decision_id}", headers=ALICE)
            if r.status_code != 200 or r.json()["status"] not in ("applied", "parked", "refused"):
                verdicts.failures.append(f"decision {decision_id} answered 202 and is {r.status_code} {r.text[:100]}")
        await asyncio.sleep(1.0)  # the events and run tracking reach the poller
        broker = await open_broker(stack)
        dead = []
        for queue in (names.checkpoints_queue, names.decisions_queue, names.runs_queue):
            dead += await drain(broker, dlq_name(queue), quiet_s=0.5)
        await broker.close()
        await http.aclose()
        return verdicts, sent, dead, len(targets)

    verdicts, sent, dead, targets = asyncio.run(scenario())
    lost = len(dead) + len(verdicts.failures)
    row(f"unstorable bodies over HTTP ({stack.store_name})", iterations=sent, opened=len(store.checkpoints()) - targets,
        delivered=verdicts.counts["refused"] + verdicts.counts["accepted"], lost=lost, errors=len(verdicts.failures),
        seconds=time.monotonic() - started, answers=dict(verdicts.counts), dead_lettered=len(dead))
    print(f"\nunstorable HTTP ({stack.store_name}): {sent} requests {dict(verdicts.counts)}, dead-lettered "
          f"{[(d.queue, d.routing_key, reason_of(d)[:300], d.body[:300]) for d in dead][:8]}, "
          f"failures {verdicts.failures[:5]}")
    assert not verdicts.failures, verdicts.failures[:20]
    assert not dead, [reason_of(d)[:200] for d in dead][:10]
    store.close()


def bus_decisions(cid: str) -> list[tuple[str, dict]]:
    base = {"checkpoint_id": cid, "action": "revise", "feedback": "shorter", "actor": "alice"}
    out = []
    for field in ("checkpoint_id", "feedback", "reason", "actor", "channel", "idempotency_key", "form_action"):
        for kind in BAD:
            out.append((f"decision {field} {kind}", {**base, field: BAD[kind]}))
    for field in ("output", "form_inputs"):
        for kind in BAD:
            value = placed({}, "v", kind, True)["v"]
            out.append((f"decision {field} {kind}", {**base, "action": "edit", "output": {"text": "new"},
                                                     field: value}))
    return out


def bus_requests() -> list[tuple[str, dict]]:
    out = []
    for field, as_json in (("workflow_run_id", False), ("node_id", False), ("message", False), ("user", False),
                           ("app_id", False), ("node_output", True), ("default_output", True)):
        for kind in BAD:
            base = {"app": "demo", "workflow_run_id": str(uuid.uuid4()), "node_id": "draft", "node_output": "x",
                    "timeout_s": 300, "max_rounds": 3, "mode": "detached"}
            out.append((f"request {field} {kind}", placed(base, field, kind, as_json)))
    return out


def test_messages_the_store_cannot_hold_are_dead_lettered_at_once_or_stored(stack, row):
    names = Names(stack.env["HITL_NAMESPACE"])
    store = StoreView(stack.db_url)
    started = time.monotonic()

    async def scenario():
        http = httpx.AsyncClient(base_url=stack.ingest_url, timeout=30)
        ours = Broker(stack.env["HITL_RABBITMQ_URL"], name="faults-internal", topology=build_topology(names),
                      signing_key=INTERNAL_KEY.encode())
        await ours.start(wait_s=30)
        bot = await open_broker(stack)
        for queue in (names.checkpoints_queue, names.decisions_queue):
            await drain(bot, dlq_name(queue), quiet_s=0.5)
        sent: dict[str, tuple[str, str, dict]] = {}  # message id → (what, kind of message, body)
        for what, body in bus_requests():
            mid = str(uuid.uuid4())
            sent[mid] = (what, "request", body)
            await ours.publish(names.commands, CHECKPOINT_REQUESTED, json.dumps(
                {"type": "checkpoint.requested", "id": mid, **body}).encode(), message_id=mid)
        targets = []
        for _ in bus_decisions("x"):
            r = await http.post("/v1/checkpoints", json=checkpoint_body(mode="detached"), headers=APP)
            targets.append(r.json()["checkpoint_id"])
        for cid, (what, body) in zip(targets, [(w, b) for w, b in bus_decisions("x")], strict=True):
            mid = str(uuid.uuid4())
            body = {**body, "checkpoint_id": cid} if body["checkpoint_id"] == "x" else body
            sent[mid] = (what, "decision", body)
            await publish_decision(bot, stack, encoded({"type": "decision.submitted", "id": mid, **body}),
                                   message_id=mid)
        dead = await drain(bot, dlq_name(names.checkpoints_queue), quiet_s=1.0)
        dead += await drain(bot, dlq_name(names.decisions_queue), quiet_s=1.0)
        by_id = {d.message_id: d for d in dead}
        failures, counts = [], Counter()
        for mid, (what, kind, body) in sent.items():
            d = by_id.get(mid) or next((x for x in dead if mid.encode() in x.body), None)
            if d is not None:
                counts["dead-lettered at once"] += 1
                if not reason_of(d).startswith("invalid"):
                    failures.append(f"{what}: dead-lettered for {reason_of(d)[:160]}")
                continue
            counts["taken"] += 1
            if kind == "request":
                if not any(c["workflow_run_id"] == body["workflow_run_id"] for c in store.checkpoints()):
                    failures.append(f"{what}: neither dead-lettered nor opened")
            else:
                r = await http.get(f"/v1/decisions/{mid}", headers={"Authorization": f"Bearer {REVIEWER_TOKEN}"})
                if r.status_code != 200 or r.json()["status"] != "applied":
                    failures.append(f"{what}: neither dead-lettered nor applied ({r.status_code} {r.text[:100]})")
        await ours.close()
        await bot.close()
        await http.aclose()
        return sent, dead, failures, counts

    sent, dead, failures, counts = asyncio.run(scenario())
    row(f"unstorable messages on the bus ({stack.store_name})", iterations=len(sent),
        delivered=len(sent) - len(failures), lost=len(failures), seconds=time.monotonic() - started,
        answers=dict(counts), dead_lettered=len(dead))
    print(f"\nunstorable bus ({stack.store_name}): {len(sent)} messages {dict(counts)}, failures {failures[:5]}")
    assert not failures, failures[:20]
    store.close()
