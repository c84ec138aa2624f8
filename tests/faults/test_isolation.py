"""Apps are tenants, under attack: app beta's token and beta's reviewer try every door into app alpha.

Alpha's Dify node holds its calls; alpha's reviewer (alice) decides them. Meanwhile beta, knowing
alpha's run ids, node ids and even checkpoint ids:
- calls POST /v1/checkpoints and /api/user-confirmation with alpha's run and node (re-attach), and
  opens round 2 of a run alpha revised before alpha's node calls it again;
- reports `workflow_finished` (stopped, failed), `stopped`, `workflow_paused` and
  `human_input_required` for alpha's runs on POST /v1/events;
- reads alpha's checkpoints, runs and decisions with beta's app token and with bob's reviewer token
  (granted beta only), over the API and the review console;
- decides alpha's checkpoints as bob over HTTP (by id, bulk, claim/reassign), /api/node-confirmation
  (parked for beta, never taken by alpha's next round) and the bus (beta's bot).
Alice decides partly through alpha's bot claiming `channel: "console"` and over HTTP claiming it with
X-HITL-Channel: recorded as `bot:alpha-bot` and `api`. (Forged broker messages: test_forgeries.py.)

Counted: a leak is any of alpha's texts or checkpoint ids in an answer beta got, any change to an
alpha checkpoint not made by alice, any alpha history row by bob or a forged channel. 0 leaked,
and alpha's and beta's calls each end with their own reviewer's decision (0 lost, 0 duplicated).
"""
from __future__ import annotations

import asyncio
import json as jsonlib
import re
import time
import uuid

import httpx
import pytest

from shared.topology import Names, dlq_name
from tests.faults.attacks import (
    ALPHA,
    APP_TOKENS,
    BETA,
    PASSWORD,
    REVIEWER_TOKENS,
    AppStore,
    Leaks,
    bearer,
    decision_bytes,
    drain,
    reason_of,
    signed_by,
    snapshot,
    two_app_env,
    unique,
)
from tests.faults.conftest import scaled
from tests.faults.helpers import (
    CallResult,
    DifyNode,
    Tally,
    account,
    checkpoint_body,
    finish,
    open_broker,
    start_call,
    wait_until,
)

pytestmark = pytest.mark.timeout(600)
ALICE, BOB = bearer(REVIEWER_TOKENS["alice"]), bearer(REVIEWER_TOKENS["bob"])
A_TOKEN, B_TOKEN = bearer(APP_TOKENS[ALPHA]), bearer(APP_TOKENS[BETA])


@pytest.fixture(scope="module")
def stack(stacks):
    s = stacks("isolation", env=two_app_env(), processes=("decider", "poller", "ingest"))
    s.start("console")
    return s


def alpha_plan(i: int) -> str:
    """What alice does with alpha's i-th checkpoint (and through which door)."""
    return ("approve", "edit", "bot-abort", "revise-beta-first", "approve", "edit", "bot-abort", "revise-parked")[i % 8]


class Prober:
    """Beta's side: every answer beta gets is scanned for alpha's secrets; statuses are tallied."""

    def __init__(self, http: httpx.AsyncClient, leaks: Leaks) -> None:
        self.http = http
        self.leaks = leaks
        self.unexpected: list[str] = []
        self.requests = 0

    async def __call__(self, method: str, url: str, expect: set[int], *, headers=None, json=None, data=None,
                       sent: str = "") -> httpx.Response | None:
        self.requests += 1
        try:
            r = await self.http.request(method, url, headers=headers, json=json, data=data)
        except httpx.HTTPError as exc:
            self.unexpected.append(f"{method} {url}: {type(exc).__name__}")
            return None
        sent += url + (jsonlib.dumps(json) if json is not None else "")
        self.leaks.scan(f"{method} {url.split('?')[0][-60:]} {r.status_code}", r.text, sent=sent)
        if r.status_code not in expect:
            self.unexpected.append(f"{method} {url[-80:]}: {r.status_code} {r.text[:160]}")
        return r


def call_on(node: DifyNode, body: dict, path: str, results: list, sem: asyncio.Semaphore) -> asyncio.Task:
    res = CallResult(body["workflow_run_id"], body)
    results.append(res)

    async def run() -> None:
        async with sem:
            await node.call(body, path=path, res=res)
    return asyncio.create_task(run())


async def probe_console(probe: Prober, console: httpx.AsyncClient, method: str, path: str, expect: set[int],
                        json=None) -> None:
    """The console's pages and its decision endpoint, as bob signed in; CSRF as the page gives it."""
    headers = {}
    if method == "POST":
        page = await console.get("/")
        token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        headers = {"X-CSRF-Token": token.group(1)} if token else {}
    probe.http, saved = console, probe.http
    try:
        await probe(method, path, expect, headers=headers, json=json)
    finally:
        probe.http = saved


async def console_session(base: str, name: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=15)
    page = await client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = await client.post("/login", data={"name": name, "password": PASSWORD, "csrf": nonce, "next": "/"})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    return client


def test_another_apps_token_and_reviewer_reach_nothing_of_an_app(stack, row):
    alpha, beta = AppStore(stack.db_url, ALPHA), AppStore(stack.db_url, BETA)
    n = scaled(40, minimum=8)
    started = time.monotonic()
    leaks = Leaks()

    async def scenario():
        node_a = DifyNode(stack.ingest_url, APP_TOKENS[ALPHA], max_retries=300, interval_s=0.2)
        node_b = DifyNode(stack.ingest_url, APP_TOKENS[BETA], max_retries=300, interval_s=0.2)
        http = httpx.AsyncClient(timeout=20)
        probe = Prober(http, leaks)
        broker = await open_broker(stack)
        sem = asyncio.Semaphore(200)
        ingest = stack.ingest_url

        # ---- alpha opens n held checkpoints; their texts are alpha's secrets
        a_bodies = [checkpoint_body(node_output={"text": unique("alpha-output")}, message=unique("alpha-message"))
                    for _ in range(n)]
        runs = [b["workflow_run_id"] for b in a_bodies]
        leaks.markers |= {b["node_output"]["text"] for b in a_bodies} | {b["message"] for b in a_bodies}
        a_results: list = []
        a_calls = [start_call(node_a, b, a_results, sem) for b in a_bodies]
        assert await wait_until(lambda: len(alpha.open_checkpoints()) >= n, 60), "alpha's checkpoints did not open"
        a_cps = {c["workflow_run_id"]: c for c in alpha.checkpoints(set(runs))}
        a_ids = {c["id"] for c in a_cps.values()}
        leaks.markers |= a_ids
        # a control: alpha's own report of a stop cancels alpha's checkpoint (so that beta's same
        # reports below are shown to be refused, not merely unread)
        control = checkpoint_body(mode="detached")
        r = await http.post(f"{ingest}/v1/checkpoints", json=control, headers=A_TOKEN)
        assert r.status_code == 200 and r.json()["action"] == "pending", r.text
        before = snapshot(alpha, skip_run=control["workflow_run_id"])

        # ---- beta's node calls with alpha's run and node, on both checkpoint paths (re-attach)
        b_results: list = []
        b_bodies = {}
        for i, run_id in enumerate(runs):
            if i % 2 == 0:
                b_bodies[run_id] = checkpoint_body(run_id, node_output={"text": unique("beta-output")})
        b_calls = [call_on(node_b, body, "/v1/checkpoints" if k % 2 == 0 else "/api/user-confirmation", b_results, sem)
                   for k, body in enumerate(b_bodies.values())]
        assert await wait_until(lambda: len(beta.open_checkpoints()) >= len(b_bodies), 60), "beta's did not open"

        # ---- beta reports events for alpha's runs
        for run_id in runs:
            for event in ({"event": "workflow_finished", "data": {"status": "stopped"}},
                          {"event": "workflow_finished", "data": {"status": "failed", "error": "beta says so"}},
                          {"event": "stopped"},
                          {"event": "workflow_paused", "data": {"reasons": [{"TYPE": "human_input_required",
                                                                              "form_token": "forged-token",
                                                                              "node_id": "draft"}]}},
                          {"event": "human_input_required", "node_id": "draft",
                           "data": {"form_token": "forged-token", "form_content": "approve me"}}):
                await probe("POST", f"{ingest}/v1/events", {202}, headers=B_TOKEN,
                            json={"workflow_run_id": run_id, **event})
        r = await http.post(f"{ingest}/v1/events", headers=A_TOKEN,
                            json={"workflow_run_id": control["workflow_run_id"], "event": "workflow_finished",
                                  "data": {"status": "stopped"}})
        assert r.status_code == 202, r.text

        # ---- beta's app token reads and decides: not a reviewer token
        some = sorted(a_ids)[0]
        for method, path in (("GET", "/v1/checkpoints"), ("GET", f"/v1/checkpoints/{some}"), ("GET", "/v1/runs"),
                             ("GET", f"/v1/runs/{runs[0]}"), ("POST", f"/v1/checkpoints/{some}/decision"),
                             ("POST", "/api/node-confirmation"), ("GET", f"/v1/decisions/{uuid.uuid4()}")):
            await probe(method, f"{ingest}{path}", {401}, headers=B_TOKEN,
                        json={"action": "approve"} if method == "POST" else None)

        # ---- bob (granted beta only) reads alpha's checkpoints and runs
        for run_id, cp in a_cps.items():
            cid = cp["id"]
            await probe("GET", f"{ingest}/v1/checkpoints/{cid}", {404}, headers=BOB)
            await probe("GET", f"{ingest}/v1/checkpoints?id_prefix={cid[:8]}", {200}, headers=BOB)
            listing = await probe("GET", f"{ingest}/v1/checkpoints?run_id={run_id}", {200}, headers=BOB)
            if listing is not None and listing.status_code == 200:
                for item in listing.json()["checkpoints"]:
                    if item["app"] != BETA or item["id"] in a_ids:
                        leaks.flag(f"bob's listing of run {run_id} shows {item['app']} {item['id']}")
            shown = await probe("GET", f"{ingest}/v1/runs/{run_id}", {200, 404}, headers=BOB)
            if shown is not None and shown.status_code == 200 and shown.json().get("app") != BETA:
                leaks.flag(f"bob sees run {run_id} of {shown.json().get('app')}")
            # and decides them: by id, claims, reassigns, bulk
            await probe("POST", f"{ingest}/v1/checkpoints/{cid}/decision", {404}, headers=BOB,
                        json={"action": "approve"})
            await probe("POST", f"{ingest}/v1/checkpoints/{cid}/claim", {404}, headers=BOB, json={})
            await probe("POST", f"{ingest}/v1/checkpoints/{cid}/reassign", {404}, headers=BOB, json={"to": "bob"})
        for query in ("", "?app=alpha", "?status=open&limit=500"):
            listing = await probe("GET", f"{ingest}/v1/checkpoints{query}", {200}, headers=BOB)
            if listing is not None and any(c["app"] != BETA for c in listing.json()["checkpoints"]):
                leaks.flag(f"bob's /v1/checkpoints{query} shows another app")
        for query in ("", "?app=alpha"):
            await probe("GET", f"{ingest}/v1/runs{query}", {200}, headers=BOB)
        bulk = await probe("POST", f"{ingest}/v1/checkpoints/bulk-decision", {200}, headers=BOB,
                           json={"ids": sorted(a_ids), "action": "approve"})
        if bulk is not None and bulk.status_code == 200 and bulk.json()["counts"] != {"refused": len(a_ids)}:
            leaks.flag(f"bob's bulk decision over alpha's ids: {bulk.json()['counts']}")
        for body in ({"filter": {"app": ALPHA}, "action": "abort", "preview": True},
                     {"filter": {"app": ALPHA}, "action": "abort"}):
            bulk = await probe("POST", f"{ingest}/v1/checkpoints/bulk-decision", {200}, headers=BOB, json=body)
            if bulk is not None and bulk.status_code == 200 and (bulk.json().get("count") or sum(
                    bulk.json().get("counts", {}).values())):
                leaks.flag(f"bob's bulk filter app=alpha matched {bulk.text[:200]}")
        # the review console, signed in as bob
        console = await console_session(stack.console_url, "bob")
        for cid in sorted(a_ids)[:5]:
            await probe_console(probe, console, "GET", f"/checkpoints/{cid}", {404})
            await probe_console(probe, console, "POST", f"/checkpoints/{cid}/decision", {403, 404},
                                json={"action": "approve"})
        for path in ("/", f"/?app={ALPHA}", "/runs", f"/runs/{runs[0]}"):
            await probe_console(probe, console, "GET", path, {200, 404})
        await console.aclose()

        # ---- bob's node-confirmations name alpha's runs: beta's own checkpoint (even runs) or parked
        # for beta (odd runs), never alpha's
        for run_id in runs:
            # 409: beta's own checkpoint of that run, cancelled by beta's own stop report above
            r = await probe("POST", f"{ingest}/api/node-confirmation", {200, 202, 409}, headers=BOB,
                            json={"workflow_id": run_id, "node_id": "draft", "satisfied": True})
            if r is not None and r.status_code == 200 and r.json().get("resolution", {}).get("checkpoint_id") in a_ids:
                leaks.flag(f"bob's node-confirmation applied to alpha's checkpoint of {run_id}")

        # ---- beta's bot names alpha's checkpoints on the bus
        names = Names(stack.env["HITL_NAMESPACE"])
        for cid in a_ids:
            body = decision_bytes(checkpoint_id=cid, action="approve", actor="bob")
            await broker.publish(names.decisions, "", body, headers=signed_by("beta-bot", body), sign=False,
                                 message_id=str(uuid.uuid4()))
        bus_dead = await drain(broker, dlq_name(names.decisions_queue), expect=len(a_ids))
        not_found = [d for d in bus_dead if reason_of(d).startswith("not_found")]

        # nothing of alpha changed so far (the control aside)
        await asyncio.sleep(1.0)  # let the last events reach the poller and the decider
        after = snapshot(alpha, skip_run=control["workflow_run_id"])
        for cid, state in before.items():
            if after.get(cid) != state:
                leaks.flag(f"alpha checkpoint {cid} changed under beta: {state} → {after.get(cid)}")
        control_cp = await wait_until(lambda: next((c for c in alpha.all_rows()
                                                    if c["workflow_run_id"] == control["workflow_run_id"]
                                                    and c["status"] == "cancelled"), None), 20)

        # ---- alice decides alpha's checkpoints (her edits and feedback are alpha's secrets too)
        expected_output: dict[str, object] = {}
        for i, run_id in enumerate(runs):
            cp, plan = a_cps[run_id], alpha_plan(i)
            if plan == "bot-abort":  # a valid bot that claims to be the console
                reason = unique("alpha-reason")
                leaks.markers.add(reason)
                body = decision_bytes(checkpoint_id=cp["id"], action="abort", reason=reason, actor="alice",
                                      channel="console")
                await broker.publish(names.decisions, "", body, headers=signed_by("alpha-bot", body), sign=False,
                                     message_id=str(uuid.uuid4()))
                continue
            decision = {"action": "approve"}
            if plan == "edit":
                decision = {"action": "edit", "output": {"text": unique("alpha-edit")}}
                leaks.markers.add(decision["output"]["text"])
                expected_output[run_id] = decision["output"]
            elif plan.startswith("revise"):
                decision = {"action": "revise", "feedback": unique("alpha-feedback")}
                leaks.markers.add(decision["feedback"])
            else:
                expected_output[run_id] = cp["node_output"]
            r = await http.post(f"{ingest}/v1/checkpoints/{cp['id']}/decision", json=decision,
                                headers={**ALICE, "X-HITL-Channel": "console"})
            if r.status_code not in (200, 202):
                leaks.flag(f"alice's decision on {cp['id']}: {r.status_code} {r.text[:300]}")
        if await finish(a_calls, 60):
            leaks.problems.append("alpha's round-1 calls did not all end")

        # ---- round 2: beta opens it first on some runs; on others alpha opens it while bob's
        # node-confirmation for the same run and node waits parked for beta
        revised = [(i, run_id) for i, run_id in enumerate(runs) if alpha_plan(i).startswith("revise")]
        b2_results: list = []
        for i, run_id in revised:
            if alpha_plan(i) == "revise-beta-first":
                body = checkpoint_body(run_id, round=2, node_output={"text": unique("beta-round2")})
                b_calls.append(start_call(node_b, body, b2_results, sem))
        await asyncio.sleep(1.0)
        a2_results: list = []
        a2_calls = []
        for k, (_i, run_id) in enumerate(revised):
            text2 = unique("alpha-round2")
            leaks.markers.add(text2)
            expected_output[run_id] = {"text": text2}
            extra = {"round": 2} if k % 2 == 0 else {}  # explicit round, or the new output says it
            a2_calls.append(start_call(node_a, checkpoint_body(run_id, node_output={"text": text2}, **extra),
                                       a2_results, sem))
        await wait_until(lambda: all(any(c["workflow_run_id"] == run_id and c["round"] == 2
                                         for c in alpha.all_rows()) for _, run_id in revised), 30)
        for _, run_id in revised:
            r = await http.post(f"{ingest}/api/node-confirmation", headers=ALICE,
                                json={"workflow_id": run_id, "node_id": "draft", "satisfied": True})
            if r.status_code not in (200, 202):  # someone else decided alpha's round 2
                leaks.flag(f"alice's round-2 decision for {run_id}: {r.status_code} {r.text[:300]}")
        unfinished_a = await finish(a2_calls, 60)

        # ---- bob decides beta's own checkpoints that are still open (his node-confirmations did most)
        for cp in beta.open_checkpoints():
            await http.post(f"{ingest}/v1/checkpoints/{cp['id']}/decision", json={"action": "approve"}, headers=BOB)
        unfinished_b = await finish(b_calls, 60)
        for res in b_results + b2_results:
            if res.answer is not None:
                leaks.scan(f"beta's call for {res.run_id}", str(res.answer), sent=str(res.body))

        # ---- bob asks what became of alice's decisions
        for cp in alpha.all_rows():
            for h in alpha.full_history(cp["id"]):
                if h["kind"] == "decision" and h["message_id"]:
                    await probe("GET", f"{ingest}/v1/decisions/{h['message_id']}", {404}, headers=BOB)

        # each round against its own rows; beta's round 1 ended as beta's own reports made it
        # (cancelled by its stop, or approved by bob first), its round 2 with bob's parked approval
        round1 = {run_id: {"bot-abort": "abort", "edit": "edit"}.get(alpha_plan(i), alpha_plan(i).split("-")[0])
                  for i, run_id in enumerate(runs)}
        tally = Tally()
        for results, store, expected in (
                (a_results, AppStore(stack.db_url, ALPHA, 1), round1),
                (a2_results, AppStore(stack.db_url, ALPHA, 2), {run_id: "approve" for _, run_id in revised}),
                (b_results, AppStore(stack.db_url, BETA, 1), None),
                (b2_results, AppStore(stack.db_url, BETA, 2), {r.run_id: "approve" for r in b2_results})):
            part = account(results, store, expected=expected)
            store.close()
            for key in ("iterations", "opened", "delivered", "lost", "duplicated", "errors"):
                setattr(tally, key, getattr(tally, key) + getattr(part, key))
            tally.problems += part.problems
        tally.errors += unfinished_a + unfinished_b
        a_final = {r.run_id: r for r in a_results + a2_results if r.answer and r.answer.get("action") != "revise"}
        for run_id, output in expected_output.items():
            got = a_final.get(run_id)
            if got is not None and got.answer.get("output") != output:
                leaks.flag(f"alpha's call for {run_id} got output {got.answer.get('output')}, not alpha's {output}")
        for res in b_results + b2_results:
            if res.answer and res.answer.get("checkpoint_id") in a_ids:
                leaks.flag(f"beta's call for {res.run_id} was answered from alpha's checkpoint")

        # ---- the audit: only alice and the system in alpha's history, each with the channel observed
        plan_of = {run_id: alpha_plan(i) for i, run_id in enumerate(runs)}
        for cp in alpha.all_rows():
            for h in alpha.full_history(cp["id"]):
                if h["kind"] != "decision":
                    continue
                want = "bot:alpha-bot" if plan_of.get(cp["workflow_run_id"]) == "bot-abort" and cp["round"] == 1 \
                    else "api"
                if h["actor"] not in ("alice", "system") or (h["actor"] == "alice" and h["channel"] != want):
                    leaks.flag(f"alpha checkpoint {cp['id']} history: {h['actor']} via {h['channel']} (want {want})")
        for kept in alpha.parked():
            if kept["checkpoint_id"] in a_ids | {c["id"] for c in alpha.all_rows()} and kept["actor"] != "alice":
                leaks.flag(f"parked decision of {kept['actor']} settled on alpha's {kept['checkpoint_id']}")
        forms = [c for c in alpha.all_rows() + beta.all_rows() if c["kind"] == "dify-form"]
        if forms:
            leaks.flag(f"reported events opened {len(forms)} Dify form checkpoints")
        await http.aclose()
        await node_a.aclose()
        await node_b.aclose()
        await broker.close()
        return tally, probe, control_cp, len(bus_dead), len(not_found)

    tally, probe, control_cp, bus_dead, not_found = asyncio.run(scenario())
    tally.errors += len(probe.unexpected)
    tally.iterations += probe.requests + bus_dead  # beta's attempts besides the Dify calls of both apps
    row("cross-app attempts (API, console, events, bus)", **tally.counts(), leaked=leaks.count,
        seconds=time.monotonic() - started, requests=probe.requests, scanned=leaks.scanned, bus_dlq=bus_dead)
    print(f"\nisolation: {probe.requests} requests by beta, {leaks.scanned} answers scanned, "
          f"leaks {leaks.problems[:10]}, unexpected {probe.unexpected[:10]}, problems {tally.problems[:10]}")
    assert control_cp is not None, "alpha's own stop report did not cancel its checkpoint: the control failed"
    assert bus_dead == not_found == n, (bus_dead, not_found)
    assert leaks.count == 0, leaks.problems[:20]
    assert not probe.unexpected, probe.unexpected[:20]
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:20]
