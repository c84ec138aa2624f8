"""A 30 s Dify outage in the middle of 200 tracked runs: every run still reaches its final recorded
status, and Dify never saw more requests than the per-app rate limit allows."""
from __future__ import annotations

import time

import httpx
import pytest

from demo.stack import DIFY_APP_KEY, ProcessStack
from tests.e2e.graphs import slow_graph
from tests.e2e.harness import ok_endpoint, wait_for

pytestmark = pytest.mark.e2e
RUNS, HOLD_S, OUTAGE_S, RATE = 200, 20, 30, 10
REVIEWER = {"Authorization": "Bearer rv-alice-token"}


def runs_by_status(stack) -> dict[str, int]:
    data = httpx.get(f"{stack.ingest_url}/v1/runs?limit=500", headers=REVIEWER, timeout=10).json()
    counts: dict[str, int] = {}
    for run in data["runs"]:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    return counts


def test_a_30s_outage_during_200_tracked_runs_loses_nothing_and_keeps_the_rate_limit(tmp_path, sqlite_url,
                                                                                     rabbitmq_url):
    server = ok_endpoint(lambda: time.sleep(HOLD_S))
    env = {"HITL_DIFY_RATE_PER_S": str(RATE), "HITL_POLL_MAX_INTERVAL_S": "5", "HITL_DISCOVERY_INTERVAL_S": "2"}
    with ProcessStack(tmp_path, database_url=sqlite_url, rabbitmq_url=rabbitmq_url, env=env) as stack:
        graph = slow_graph(f"http://127.0.0.1:{server.server_address[1]}/slow")
        httpx.post(f"{stack.sim_url}/_sim/apps",
                   json={"name": "slow", "graph": graph, "api_key": DIFY_APP_KEY}).raise_for_status()
        # 200 runs started straight at Dify (behind our back): the poller finds them in the logs.
        with httpx.Client(base_url=stack.sim_url, headers={"Authorization": f"Bearer {DIFY_APP_KEY}"}) as dify:
            for i in range(RUNS):
                with dify.stream("POST", "/v1/workflows/run", json={"inputs": {"topic": f"t{i}"},
                                                                    "response_mode": "streaming", "user": "load"}) as r:
                    next(line for line in r.iter_lines() if line.startswith("data:"))  # started; leave
        wait_for(lambda: sum(runs_by_status(stack).values()) >= RUNS, 60, "all runs discovered", period_s=0.5)
        httpx.post(f"{stack.sim_url}/_sim/faults", json={"outage": True})
        time.sleep(OUTAGE_S)
        assert runs_by_status(stack).get("succeeded", 0) < RUNS  # they ended during the outage: unseen yet
        httpx.post(f"{stack.sim_url}/_sim/faults", json={"outage": False})
        final = wait_for(lambda: (c := runs_by_status(stack)).get("succeeded") == RUNS and c, 120,
                         "every run recorded succeeded", period_s=0.5)
        assert final == {"succeeded": RUNS}
        log = httpx.get(f"{stack.sim_url}/_sim/requests").json()["requests"]
    server.shutdown()
    polls = sorted(r["time"] for r in log if r["method"] == "GET")
    # The logs listing tells 100 runs' statuses a request: far fewer calls than runs are needed.
    assert any("/workflows/logs" in r["path"] for r in log) and polls
    # A token bucket of RATE/s with a burst of RATE: at most RATE * w + RATE requests in any w seconds.
    for window in (1.0, 5.0):
        worst = max(sum(1 for t in polls[i:] if t < start + window) for i, start in enumerate(polls))
        assert worst <= RATE * window + RATE, f"{worst} requests within {window}s"
