"""Duplicated, reordered and poison messages on the broker (published with shared.broker.Broker).

- the same decision twice (same message id), a conflicting one before or after it, the same
  checkpoint request twice: one checkpoint, one applied decision, one answer to the held call;
- a decision that names a checkpoint by run + node before the checkpoint exists (out of order): parked
  in the store, never dead-lettered, and applied the moment the checkpoint opens;
- poison (not JSON, wrong schema, unknown checkpoint, bad action) on the decisions exchange and the
  checkpoint-request route: each lands in its DLQ with `x-hitl-reason` and the queue keeps flowing.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from shared.models import CheckpointRequested
from shared.topology import CHECKPOINT_REQUESTED, Names, dlq_name
from tests.faults.conftest import scaled
from tests.faults.helpers import (
    DifyNode,
    StoreView,
    account,
    checkpoint_body,
    finish,
    open_broker,
    publish_decision,
    start_call,
    wait_until,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack(stacks):
    return stacks("messages", processes=("sim", "decider", "ingest"))


async def open_many(stack, store, n, results, sem, node):
    calls = [start_call(node, checkpoint_body(), results, sem) for _ in range(n)]
    runs = {r.run_id for r in results}
    ok = await wait_until(lambda: len([c for c in store.checkpoints(runs) if c["status"] == "open"]) >= n, 60)
    assert ok, "checkpoints did not open"
    return calls, {c["workflow_run_id"]: c for c in store.checkpoints(runs)}


def test_duplicated_and_reordered_messages_have_one_effect(stack, row):
    store = StoreView(stack.db_url)
    names = Names(stack.env["HITL_NAMESPACE"])
    n = scaled(40, minimum=6)
    started = time.monotonic()

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=100, interval_s=0.2)
        broker = await open_broker(stack)
        results, sem = [], asyncio.Semaphore(100)
        calls, cps = await open_many(stack, store, n, results, sem, node)
        for i, (run_id, cp) in enumerate(cps.items()):
            first = {"checkpoint_id": cp["id"], "action": "edit", "output": {"text": f"v{i}"}, "actor": "alice",
                     "channel": "bot"}
            other = {"checkpoint_id": cp["id"], "action": "abort", "reason": "late", "actor": "bob", "channel": "bot"}
            mid = str(uuid.uuid4())
            order = [("first", first, mid), ("first", first, mid), ("other", other, None)]
            if i % 2:
                order = [order[2], order[0], order[1]]  # the conflicting one first
            # The decider handles deliveries concurrently (prefetch, handler threads): which of the two
            # wins is not fixed by publish order; what is fixed is one winner and one answer.
            for _, body, message_id in order:
                await publish_decision(broker, stack, body, message_id=message_id)
            if i % 3 == 0:  # Dify's request delivered twice (same message id), while held
                req = CheckpointRequested(app="demo", workflow_run_id=run_id, node_id="draft", round=None,
                                          node_output=cp.get("output"), timeout_s=300, max_rounds=5)
                for _ in range(2):
                    await broker.publish(names.commands, CHECKPOINT_REQUESTED, req.to_bytes(), message_id=req.id)
        unfinished = await finish(calls, 60)
        tally = account(results, store)
        tally.errors += unfinished
        odd = [r.run_id for r in results if r.answer and r.answer.get("action") not in ("edit", "abort")]
        tally.duplicated += len(odd)
        per_run = {}
        for c in store.checkpoints(set(cps)):
            per_run[c["workflow_run_id"]] = per_run.get(c["workflow_run_id"], 0) + 1
        extra = {r: k for r, k in per_run.items() if k != 1}
        if extra:
            tally.duplicated += len(extra)
            tally.problems.append(f"runs with more than one checkpoint: {extra}")
        await node.aclose()
        await broker.close()
        return tally

    tally = asyncio.run(scenario())
    row("duplicated + reordered messages", **tally.counts(), seconds=time.monotonic() - started)
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:10]
    store.close()


def test_a_decision_before_its_checkpoint_is_parked_and_applied_when_it_opens(stack, row):
    store = StoreView(stack.db_url)
    names = Names(stack.env["HITL_NAMESPACE"])
    n = scaled(10, minimum=3)

    async def scenario():
        broker = await open_broker(stack)
        node = DifyNode(stack.ingest_url, max_retries=100, interval_s=0.2)
        await drain(broker, dlq_name(names.decisions_queue))
        bodies = [checkpoint_body() for _ in range(n)]
        for b in bodies:  # by run + node, before any checkpoint of that run exists
            await publish_decision(broker, stack, {"workflow_run_id": b["workflow_run_id"], "node_id": "draft",
                                                   "action": "approve", "actor": "alice"})
        await asyncio.sleep(1.0)
        dead = await drain(broker, dlq_name(names.decisions_queue))
        results, sem = [], asyncio.Semaphore(50)
        calls = [start_call(node, b, results, sem) for b in bodies]
        # nobody decides again: the parked decisions answer the calls
        unfinished = await finish(calls, 60)
        tally = account(results, store, expected={b["workflow_run_id"]: "approve" for b in bodies})
        tally.errors += unfinished
        await node.aclose()
        await broker.close()
        return tally, dead

    tally, dead = asyncio.run(scenario())
    row("decision before its checkpoint (parked)", **tally.counts(), dead_lettered=len(dead))
    assert not dead, [d.headers.get("x-hitl-reason", "") for d in dead]
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:10]
    store.close()


async def drain(broker, queue: str, expect: int = 0, timeout_s: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        d = await broker.get_one(queue)
        if d is None:
            if len(got) >= expect:
                return got
            await asyncio.sleep(0.2)
            continue
        got.append(d)
    return got


POISON_DECISIONS = [
    b"not json {",
    b"\xff\xfe\x00binary",
    b"[]",
    b'{"type": "decision.submitted", "action": "approve"}',  # no actor
    b'{"type": "decision.submitted", "checkpoint_id": "nope", "action": "approve", "actor": "x"}',  # unknown
    b'{"type": "decision.submitted", "checkpoint_id": "x", "action": "dance", "actor": "x"}',  # bad action
    json.dumps({"type": "decision.submitted", "checkpoint_id": "x", "action": "approve", "actor": "a" * 500}).encode(),
]
POISON_REQUESTS = [
    b"{{{",
    b'{"type": "checkpoint.requested", "app": "demo"}',
    b'{"type": "checkpoint.requested", "app": "demo", "workflow_run_id": 5, "node_id": [], "timeout_s": "x", '
    b'"max_rounds": 1}',
]


def test_poison_messages_land_in_their_dlq_with_a_reason_and_do_not_block(stack, row):
    store = StoreView(stack.db_url)
    names = Names(stack.env["HITL_NAMESPACE"])
    rounds = scaled(10, minimum=2)
    started = time.monotonic()

    async def scenario():
        broker = await open_broker(stack)
        node = DifyNode(stack.ingest_url, max_retries=100, interval_s=0.2)
        await drain(broker, dlq_name(names.decisions_queue))
        await drain(broker, dlq_name(names.checkpoints_queue))
        results, sem = [], asyncio.Semaphore(50)
        latencies, calls = [], []
        for _ in range(rounds):
            for p in POISON_DECISIONS:
                await broker.publish(names.decisions, "", p, message_id=str(uuid.uuid4()))
            for p in POISON_REQUESTS:
                await broker.publish(names.commands, CHECKPOINT_REQUESTED, p, message_id=str(uuid.uuid4()))
            # right behind the poison: a real checkpoint and its decision go through at once
            body = checkpoint_body()
            calls.append(start_call(node, body, results, sem))
            cp = await wait_until(lambda body=body: next(iter(store.checkpoints({body["workflow_run_id"]})), None),
                                  20, 0.05)
            t0 = time.monotonic()
            await publish_decision(broker, stack, {"checkpoint_id": cp["id"], "action": "approve", "actor": "alice"})
            await finish([calls[-1]], 20)
            latencies.append(time.monotonic() - t0)
        dec = await drain(broker, dlq_name(names.decisions_queue), expect=rounds * len(POISON_DECISIONS))
        req = await drain(broker, dlq_name(names.checkpoints_queue), expect=rounds * len(POISON_REQUESTS))
        tally = account(results, store, expected={r.run_id: "approve" for r in results})
        await node.aclose()
        await broker.close()
        return tally, dec, req, latencies

    tally, dec, req, latencies = asyncio.run(scenario())
    no_reason = [d.body[:60] for d in dec + req if not d.headers.get("x-hitl-reason")]
    tally.iterations = rounds * (len(POISON_DECISIONS) + len(POISON_REQUESTS))
    dead = len(dec) + len(req)
    tally.lost += tally.iterations - dead  # a poison message that vanished instead of reaching its DLQ
    row("poison messages → DLQ", **tally.counts(), seconds=time.monotonic() - started, dead_lettered=dead,
        worst_decision_after_poison_s=round(max(latencies), 2))
    print(f"\npoison: reasons {sorted({d.headers.get('x-hitl-reason', '')[:50] for d in dec + req})[:12]}")
    assert len(dec) == rounds * len(POISON_DECISIONS), [d.body[:40] for d in dec]
    assert len(req) == rounds * len(POISON_REQUESTS), [d.body[:40] for d in req]
    assert not no_reason, no_reason
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:10]
    assert max(latencies) < 5, latencies
    store.close()
