"""What the fault scenarios drive the real processes with, and how they count outcomes.

`DifyNode` behaves like Dify's HTTP Request node calling the checkpoint (DIFY.md): POST with the app
token; on a connection error, a read timeout or 429/500/502/503/504 it sends the same request again
after `interval_s`, up to `max_retries` times; any other answer is final. The caller's side is the
truth: every call must end with exactly one 200 answer, and that answer must agree with the store.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from demo.stack import APP_TOKEN, ProcessStack

REVIEWER_TOKEN = "rv-alice-token"
RETRYABLE = {429, 500, 502, 503, 504}


@dataclass
class CallResult:
    run_id: str
    body: dict
    answer: dict | None = None  # the final 200 answer
    status: int | None = None  # the final status (200, or the last seen)
    attempts: int = 0
    statuses: Counter = field(default_factory=Counter)
    gave_up: bool = False
    started_at: float = 0.0  # time.monotonic() of the first attempt
    ended_at: float = 0.0  # of the final answer, or of the last attempt when the retry budget ran out

    @property
    def waited_s(self) -> float:
        """How long the node kept calling: for a call that gave up, the outage it saw end to end."""
        return max(0.0, self.ended_at - self.started_at)

    @property
    def errors(self) -> int:
        """Answers no healthy ingest should give: 500s, and 4xx for a valid body."""
        return self.statuses.get(500, 0) + sum(n for s, n in self.statuses.items()
                                               if isinstance(s, int) and 400 <= s < 500 and s != 429)


class DifyNode:
    def __init__(self, base_url: str, token: str = APP_TOKEN, *, max_retries: int = 60, interval_s: float = 0.3,
                 read_timeout_s: float = 60.0) -> None:
        self.base_url = base_url
        self.token = token
        self.max_retries = max_retries
        self.interval_s = interval_s
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=read_timeout_s),
                                        limits=httpx.Limits(max_connections=500, max_keepalive_connections=0))

    async def call(self, body: dict, path: str = "/v1/checkpoints", res: CallResult | None = None) -> CallResult:
        """One node execution: the first attempt plus up to max_retries retries. Pass `res` to see
        the progress of a call that may be cancelled (it then counts as lost)."""
        res = res or CallResult(body["workflow_run_id"], body)
        res.started_at = res.started_at or time.monotonic()
        try:
            return await self._attempts(body, path, res)
        finally:
            res.ended_at = time.monotonic()

    @property
    def budget_s(self) -> float:
        """The least time this node keeps retrying: its retries × their interval (each attempt also
        waits for its answer, so the real budget is longer)."""
        return self.max_retries * self.interval_s

    async def _attempts(self, body: dict, path: str, res: CallResult) -> CallResult:
        for attempt in range(self.max_retries + 1):
            res.attempts = attempt + 1
            try:
                r = await self.client.post(self.base_url + path, json=body,
                                           headers={"Authorization": f"Bearer {self.token}"})
            except httpx.HTTPError as exc:  # refused, reset, read timeout: Dify retries the same call
                res.statuses[type(exc).__name__] += 1
                await asyncio.sleep(self.interval_s)
                continue
            res.statuses[r.status_code] += 1
            res.status = r.status_code
            if r.status_code == 200:
                res.answer = r.json()
                return res
            if r.status_code not in RETRYABLE:
                return res  # Dify: a failure after the retries → fail branch; for us, an error
            await asyncio.sleep(self.interval_s)
        res.gave_up = True
        return res

    async def aclose(self) -> None:
        await self.client.aclose()


def checkpoint_body(run_id: str | None = None, *, node_id: str = "draft", read_timeout_s: float = 4,
                    timeout_s: float = 300, on_timeout: str = "abort", **extra) -> dict:
    return {"workflow_run_id": run_id or str(uuid.uuid4()), "app_id": "faults", "workflow_id": "wf", "user": "faults",
            "node_id": node_id, "node_output": {"text": f"draft {random.randint(0, 10**6)}"},
            "message": "Check the draft", "read_timeout_s": read_timeout_s, "timeout_s": timeout_s,
            "on_timeout": on_timeout, **extra}


# ---------------------------------------------------------------------- the store, read directly
class StoreView:
    """Read-only SQL view of the stack's store: the independent witness of what was applied."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_pre_ping=True)

    def checkpoints(self, run_ids: set[str] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(text(
                "SELECT id, workflow_run_id, node_id, round, status, action, decided_by, reason, timeout_s, output "
                "FROM checkpoints"))]
        return [r for r in rows if run_ids is None or r["workflow_run_id"] in run_ids]

    def open_checkpoints(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(
                "SELECT id, workflow_run_id, node_id, timeout_s, assignees FROM checkpoints WHERE status = 'open'"))]

    def applied_counts(self) -> Counter:
        with self.engine.connect() as c:
            return Counter({r[0]: r[1] for r in c.execute(text(
                "SELECT checkpoint_id, count(*) FROM checkpoint_history WHERE outcome = 'applied' "
                "GROUP BY checkpoint_id"))})

    def history(self, checkpoint_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(
                "SELECT kind, actor, channel, action, outcome, code FROM checkpoint_history "
                "WHERE checkpoint_id = :id ORDER BY id"), {"id": checkpoint_id})]

    def runs(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as c:
            return {r.id: dict(r._mapping) for r in c.execute(text("SELECT id, status, dify_status FROM runs"))}

    def close(self) -> None:
        self.engine.dispose()


# ---------------------------------------------------------------------- accounting
@dataclass
class Tally:
    iterations: int = 0
    opened: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    errors: int = 0
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"iterations": self.iterations, "opened": self.opened, "delivered": self.delivered,
                "lost": self.lost, "duplicated": self.duplicated, "errors": self.errors}


def account(results: list[CallResult], store: StoreView, *, expected: dict[str, str] | None = None) -> Tally:
    """Count from the caller's side: one 200 per call, agreeing with the store; at most one `applied`
    per checkpoint; `expected` (run id → action) is what the deciding side made happen."""
    t = Tally(iterations=len(results))
    runs = {r.run_id for r in results}
    cps = {c["workflow_run_id"]: c for c in store.checkpoints(runs)}
    applied = store.applied_counts()
    t.opened = len(cps)
    for res in results:
        t.errors += res.errors
        cp = cps.get(res.run_id)
        if res.answer is None:
            t.lost += 1
            t.problems.append(f"{res.run_id}: no answer (gave_up={res.gave_up}, statuses={dict(res.statuses)}, "
                              f"store={cp and (cp['id'], cp['status'], cp['action'])})")
            continue
        t.delivered += 1
        if cp is None:
            t.lost += 1
            t.problems.append(f"{res.run_id}: answered {res.answer.get('action')} but no checkpoint in the store")
            continue
        if applied.get(cp["id"], 0) > 1:
            t.duplicated += 1
            t.problems.append(f"{cp['id']}: {applied[cp['id']]} applied decisions")
        if res.answer.get("checkpoint_id") != cp["id"] or res.answer.get("action") != cp["action"]:
            t.duplicated += 1
            t.problems.append(f"{res.run_id}: caller got {res.answer.get('action')} for "
                              f"{res.answer.get('checkpoint_id')}, store says {cp['action']} for {cp['id']} "
                              f"({cp['status']})")
        elif expected and res.run_id in expected and expected[res.run_id] != res.answer.get("action"):
            t.duplicated += 1
            t.problems.append(f"{res.run_id}: expected {expected[res.run_id]}, got {res.answer.get('action')}")
    return t


async def replay_all(node: DifyNode, results: list[CallResult], tally: Tally) -> None:
    """Dify re-sends a call that was already answered (a retry racing the answer): the same final
    answer must come back, never a second, different outcome."""
    sem = asyncio.Semaphore(50)

    async def one(res: CallResult) -> None:
        if res.answer is None:
            return
        async with sem:
            again = await node.call(res.body)
        if again.answer is None:
            tally.errors += 1
            tally.problems.append(f"{res.run_id}: replay got no answer {dict(again.statuses)}")
        elif (again.answer.get("action"), again.answer.get("checkpoint_id")) != (res.answer.get("action"),
                                                                                 res.answer.get("checkpoint_id")):
            tally.duplicated += 1
            tally.problems.append(f"{res.run_id}: replay answered {again.answer.get('action')}, "
                                  f"first {res.answer.get('action')}")

    await asyncio.gather(*(one(r) for r in results))


# ---------------------------------------------------------------------- deciding
def action_for(run_id: str) -> str:
    return ("approve", "edit", "abort")[int(uuid.UUID(run_id)) % 3]


def decision_body(action: str) -> dict:
    if action == "edit":
        return {"action": "edit", "output": {"text": "edited by the fault suite"}}
    if action == "abort":
        return {"action": "abort", "reason": "not this one"}
    return {"action": action}


class Reviewer:
    """Decides every open checkpoint it sees in the store (skipping ones meant to time out), over
    the HTTP API and, when ingest is down, as a bot on the decisions exchange."""

    def __init__(self, stack: ProcessStack, store: StoreView, broker=None, *, skip=lambda cp: False,
                 action=lambda cp: action_for(cp["workflow_run_id"]) if _is_uuid(cp["workflow_run_id"]) else "approve",
                 ) -> None:
        self.stack = stack
        self.store = store
        self.broker = broker
        self.skip = skip
        self.action = action
        self.sent: dict[str, float] = {}
        self.statuses: Counter = Counter()
        self.http = httpx.AsyncClient(timeout=10)

    async def decide(self, cp: dict) -> None:
        action = self.action(cp)
        body = decision_body(action)
        try:
            r = await self.http.post(f"{self.stack.ingest_url}/v1/checkpoints/{cp['id']}/decision", json=body,
                                     headers={"Authorization": f"Bearer {REVIEWER_TOKEN}"})
            self.statuses[r.status_code] += 1
            if r.status_code in (200, 202, 409):
                return
        except httpx.HTTPError as exc:
            self.statuses[type(exc).__name__] += 1
        if self.broker is not None:
            await publish_decision(self.broker, self.stack, {"checkpoint_id": cp["id"], "actor": "alice",
                                                             "channel": "bot", **body})
            self.statuses["bot"] += 1

    async def run(self, stop: asyncio.Event, period_s: float = 0.3, redecide_after_s: float = 8.0) -> None:
        while not stop.is_set():
            try:
                open_ = await asyncio.to_thread(self.store.open_checkpoints)
            except Exception:
                open_ = []
            now = time.monotonic()
            todo = [cp for cp in open_ if not self.skip(cp) and now - self.sent.get(cp["id"], -1e9) > redecide_after_s]
            for cp in todo:
                self.sent[cp["id"]] = now
            await asyncio.gather(*(self.decide(cp) for cp in todo), return_exceptions=True)
            try:
                await asyncio.wait_for(stop.wait(), period_s)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        await self.http.aclose()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


async def open_broker(stack: ProcessStack, url: str | None = None):
    from shared.broker import Broker
    from shared.topology import Names, build_topology

    broker = Broker(url or stack.env["HITL_RABBITMQ_URL"], name="faults-test",
                    topology=build_topology(Names(stack.env["HITL_NAMESPACE"])))
    await broker.start(wait_s=30)
    return broker


async def publish_decision(broker, stack: ProcessStack, decision: dict | bytes, *, message_id: str | None = None,
                           timeout_s: float = 20, signed: bool = True) -> None:
    """As a chat bot: to the decisions exchange, signed with the demo bot's secret (unless not)."""
    from demo.stack import DEMO_BOT
    from shared.broker.signing import bot_headers
    from shared.topology import Names

    body = decision if isinstance(decision, bytes) else json.dumps({"type": "decision.submitted", **decision}).encode()
    headers = bot_headers(DEMO_BOT["name"], DEMO_BOT["secret"], body) if signed else {}
    await broker.publish(Names(stack.env["HITL_NAMESPACE"]).decisions, "", body, headers=headers, sign=False,
                         message_id=message_id or str(uuid.uuid4()), timeout_s=timeout_s)


async def finish(tasks: list[asyncio.Task], timeout_s: float) -> int:
    """Wait for the calls (bounded); cancel what is still running: those count as lost. Returns how many."""
    if not tasks:
        return 0
    _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return len(pending)


def start_call(node: DifyNode, body: dict, results: list, sem: asyncio.Semaphore) -> asyncio.Task:
    res = CallResult(body["workflow_run_id"], body)
    results.append(res)

    async def run():
        async with sem:
            await node.call(body, res=res)
    return asyncio.create_task(run())


async def wait_until(predicate, timeout_s: float, period_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        await asyncio.sleep(period_s)
    return None


def ready(stack: ProcessStack, key: str) -> bool:
    path = "/_sim/health" if key == "sim" else "/readyz"
    try:
        return httpx.get(stack.url(key) + path, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
