"""Dify misbehaves while runs are being tracked: down (the simulator's outage switch answers 502),
answering 429 / 500 / 503, or slower than the poller's read timeout. Runs end during the fault
(reviewers decide their checkpoints); the poller cannot see it then, and must catch up afterwards:
every run recorded with the status Dify reports, none lost, no poller crash."""
from __future__ import annotations

import time
from concurrent.futures import wait

import httpx
import pytest

from tests.e2e.harness import E2E, set_checkpoint_body
from tests.e2e.test_long_waits_and_restarts import fast_retries
from tests.faults.conftest import scaled
from tests.faults.helpers import REVIEWER_TOKEN, StoreView

pytestmark = pytest.mark.timeout(900)
FAULTS = {"outage": {"outage": True}, "429": {"status": 429}, "500": {"status": 500}, "503": {"status": 503},
          "slow": {"latency_s": 2.5}}
CLEAR = {"outage": False, "status": None, "latency_s": 0}
TERMINAL = {"succeeded", "partial-succeeded", "failed", "stopped"}


@pytest.fixture(scope="module")
def stack(stacks):
    # The poller's Dify timeout (1 s) is below the simulated latency (2.5 s): every poll times out.
    # HITL_POLL_LEASE_S=8 (default 60) bounds the wait should a failed poll ever keep its lease again
    # (test_a_failed_poll_is_rescheduled_with_backoff_not_left_to_its_lease shows it is released).
    return stacks("dify", env={"HITL_DIFY_TIMEOUT_S": "1", "HITL_POLL_MAX_INTERVAL_S": "2",
                               "HITL_DISCOVERY_INTERVAL_S": "2", "HITL_POLL_LEASE_S": "8"})


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_poller_catches_up_after_dify_was_down_slow_or_failing(stack, fault, row):
    e2e = E2E(stack)
    e2e.register(lambda g: (fast_retries(g, read_s=10, interval_ms=500), set_checkpoint_body(g, read_timeout_s=10)))
    store = StoreView(stack.db_url)
    n = scaled(12, minimum=2)
    started = time.monotonic()
    seen_before = {c["id"] for c in store.checkpoints()}
    futures = [e2e.start_run(f"{fault} {i}") for i in range(n)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = [c for c in store.checkpoints() if c["id"] not in seen_before]
            if len(mine) >= n:
                break
            time.sleep(0.2)
        run_ids = {c["workflow_run_id"] for c in mine}
        # the poller tracks each run from its checkpoint before the fault starts
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not run_ids <= set(store.runs()):
            time.sleep(0.2)
        httpx.post(f"{stack.sim_url}/_sim/faults", json=FAULTS[fault]).raise_for_status()
        fault_on = time.monotonic()
        for cp in mine:
            r = httpx.post(f"{stack.ingest_url}/v1/checkpoints/{cp['id']}/decision", json={"action": "approve"},
                           headers={"Authorization": f"Bearer {REVIEWER_TOKEN}"}, timeout=15)
            assert r.status_code in (200, 202), r.text
        wait(futures, timeout=60)
        time.sleep(max(0.0, 6 - (time.monotonic() - fault_on)))  # a few poll rounds against the fault
        during = {i: store.runs().get(i, {}).get("status") for i in run_ids}
        seen_during = sum(1 for s in during.values() if s in TERMINAL)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/faults", json=CLEAR).raise_for_status()
    cleared = time.monotonic()
    dify = {f.result()["data"]["id"]: f.result()["data"]["status"] for f in futures}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        recorded = {i: store.runs().get(i, {}).get("status") for i in dify}
        if all(recorded[i] == dify[i] for i in dify):
            break
        time.sleep(0.5)
    caught_up = time.monotonic() - cleared
    lost = sum(1 for i in dify if recorded[i] != dify[i])
    poller_alive = stack.procs["poller"].poll() is None
    row(f"Dify {fault} → poller catches up", iterations=n, opened=len(mine), delivered=n - lost, lost=lost,
        errors=0 if poller_alive else 1, seconds=time.monotonic() - started, seen_during_fault=seen_during,
        catch_up_s=round(caught_up, 1))
    print(f"\ndify {fault}: recorded during the fault {seen_during}/{n}, caught up {caught_up:.1f}s after, mismatches "
          f"{[(i, dify[i], recorded[i]) for i in dify if recorded[i] != dify[i]][:5]}")
    assert poller_alive
    assert set(dify.values()) <= {"succeeded"}, dify
    assert lost == 0
    if fault != "slow":
        assert seen_during == 0, "the fault did not hide the runs' ends: it was not exercised"
    store.close()


@pytest.fixture(scope="module")
def per_run_stack(stacks):
    """The same stack with every live run polled by id (HITL_STATUS_SOURCE=per_run): with the logs
    listing a run is polled by id only at moments (its end, a form submit), and this test needs a
    poll by id while Dify answers 500."""
    return stacks("dify-per-run", env={"HITL_DIFY_TIMEOUT_S": "1", "HITL_POLL_MAX_INTERVAL_S": "2",
                                       "HITL_DISCOVERY_INTERVAL_S": "2", "HITL_POLL_LEASE_S": "8",
                                       "HITL_STATUS_SOURCE": "per_run"})


def test_a_failed_poll_is_rescheduled_with_backoff_not_left_to_its_lease(per_run_stack, row):
    stack = per_run_stack
    e2e = E2E(stack)
    e2e.register(lambda g: (fast_retries(g, read_s=10, interval_ms=500), set_checkpoint_body(g, read_timeout_s=10)))
    store = StoreView(stack.db_url)
    seen = {c["id"] for c in store.checkpoints()}
    future = e2e.start_run("lease")
    cp = None
    for _ in range(200):
        cp = next((c for c in store.checkpoints() if c["id"] not in seen), None)
        if cp and cp["workflow_run_id"] in store.runs():
            break
        time.sleep(0.1)
    run_id = cp["workflow_run_id"]
    httpx.post(f"{stack.sim_url}/_sim/faults", json={"status": 500}).raise_for_status()
    try:
        deadline, state = time.monotonic() + 6, None
        while time.monotonic() < deadline:
            with store.engine.connect() as c:
                from sqlalchemy import text
                state = dict(c.execute(text("SELECT poll_failures, lease_owner FROM runs WHERE id = :i"),
                                       {"i": run_id}).first()._mapping)
            if state["poll_failures"] >= 1 and state["lease_owner"] is None:
                break
            time.sleep(0.2)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/faults", json=CLEAR).raise_for_status()
        httpx.post(f"{stack.ingest_url}/v1/checkpoints/{cp['id']}/decision", json={"action": "approve"},
                   headers={"Authorization": f"Bearer {REVIEWER_TOKEN}"}, timeout=15)
        future.result(timeout=60)
    crashes = (stack.workdir / "poller.log").read_text(errors="replace").count("on_poll_error() takes")
    print(f"\npoll error handling: run state after 6 s of 500s {state}; TypeErrors in poller.log: {crashes}")
    store.close()
    assert state["poll_failures"] >= 1 and state["lease_owner"] is None, state
