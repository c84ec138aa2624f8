"""POST /_sim/apps/{app}/bulk-runs and the logs listing over many runs (logs_index.py)."""
from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime

from tests.difysim import bench_logs
from tests.difysim.testing import echo_graph, in_process, register

MIX = {"succeeded": 5, "failed": 2, "stopped": 1, "partial-succeeded": 1}


def scenario(steps):
    async def main():
        async with in_process() as client:
            auth = await register(client, echo_graph())
            return await steps(client, auth)

    return asyncio.run(main())


async def bulk(client, **body) -> dict:
    answer = await client.post("/_sim/apps/app/bulk-runs", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def logs(client, auth, query: str = "") -> dict:
    answer = await client.get(f"/v1/workflows/logs?{query}", headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_bulk_runs_are_listed_newest_first_across_pages_with_total_and_has_more():
    async def steps(client, auth):
        made = await bulk(client, count=250, statuses=MIX, created_at_spread_s=5000, users=3)
        pages = [await logs(client, auth, f"limit=100&page={p}") for p in (1, 2, 3, 4)]
        return made, pages

    made, pages = scenario(steps)
    assert [(p["total"], p["has_more"], len(p["data"])) for p in pages] == \
        [(250, True, 100), (250, True, 100), (250, False, 50), (250, False, 0)]
    listed = [row["workflow_run"]["id"] for p in pages for row in p["data"]]
    newest_first = [r["id"] for r in sorted(made["runs"], key=lambda r: r["created_at"], reverse=True)]
    assert sorted(listed) == sorted(newest_first) and len(set(listed)) == 250
    times = [row["workflow_run"]["created_at"] for p in pages for row in p["data"]]
    assert times == sorted(times, reverse=True)
    assert made["created_at"]["max"] - made["created_at"]["min"] >= 4900


def test_every_filter_answers_what_a_full_scan_would():
    rng = random.Random(7)

    async def steps(client, auth):
        made = await bulk(client, count=400, statuses=MIX, created_at_spread_s=4000, users=4, seed=3)
        for i in range(5):  # ordinary runs, created now, among the back-dated bulk ones
            await client.post("/v1/workflows/run", json={"inputs": {"topic": f"t{i}"}, "user": "bulk-user-1"},
                              headers=auth)
        runs = sorted(client.sim.store.runs.values(), key=lambda r: (r.created_at, r.seq), reverse=True)
        low, high = made["created_at"]["min"], made["created_at"]["max"]
        checks = []
        for _ in range(40):
            status = rng.choice([None, "succeeded", "failed", "stopped"])
            session = rng.choice([None, "bulk-user-0", "bulk-user-1"])
            after, before = sorted(rng.uniform(low - 10, high + 10) for _ in range(2))
            limit, page = rng.choice([1, 7, 50]), rng.choice([1, 2, 5])
            query = f"limit={limit}&page={page}&created_at__after={iso(after)}&created_at__before={iso(before)}"
            query += f"&status={status}" if status else ""
            query += f"&created_by_end_user_session_id={session}" if session else ""
            expected = [r for r in runs if (status is None or r.status == status)
                        and (session is None or r.session_id == session)
                        and int(after) <= r.created_at <= int(before)]
            answer = await logs(client, auth, query)
            checks.append((answer["total"], [row["workflow_run"]["id"] for row in answer["data"]],
                           len(expected), [r.id for r in expected[(page - 1) * limit:page * limit]]))
        return checks

    for total, page, expected_total, expected_page in scenario(steps):
        assert (total, page) == (expected_total, expected_page)


def test_bulk_runs_run_until_their_finish_time_then_show_their_final_status():
    async def steps(client, auth):
        made = await bulk(client, count=60, statuses={"succeeded": 1, "failed": 1}, finish_in_s=[0.05, 0.3])
        during = (await logs(client, auth, "limit=100"))["data"]
        finished_early = (await logs(client, auth, "status=succeeded"))["total"]
        await asyncio.sleep(max(r["finishes_at"] for r in made["runs"]) - time.time() + 0.2)
        records = {r["id"]: (await client.get(f"/v1/workflows/run/{r['id']}", headers=auth)).json()
                   for r in made["runs"]}
        return made, during, finished_early, records

    made, during, finished_early, records = scenario(steps)
    assert {row["workflow_run"]["status"] for row in during} == {"running"} and finished_early == 0
    for promised in made["runs"]:
        record = records[promised["id"]]
        assert record["status"] == promised["status"]
        assert record["finished_at"] in (int(promised["finishes_at"]), int(promised["finishes_at"]) + 1)
        assert (record["error"] is None) == (promised["status"] == "succeeded")


def test_a_re_attached_stream_hears_when_a_bulk_run_finishes():
    async def steps(client, auth):
        made = await bulk(client, count=1, finish_in_s=[0.2, 0.2], user_prefix="watcher")
        run_id = made["runs"][0]["id"]
        stream = await client.get(f"/v1/workflow/{run_id}/events?user=watcher-0", headers=auth)
        return [json.loads(line[5:]) for line in stream.text.splitlines() if line.startswith("data:")]

    events = scenario(steps)
    assert [(e["event"], e["data"]["status"]) for e in events] == [("workflow_finished", "succeeded")]


def test_bulk_runs_refuses_bad_requests():
    async def steps(client, auth):
        return [(await client.post(path, json=body)).status_code for path, body in [
            ("/_sim/apps/app/bulk-runs", {"count": 0}),
            ("/_sim/apps/app/bulk-runs", {"count": 5, "statuses": {"paused": 1}}),
            ("/_sim/apps/app/bulk-runs", {"count": 5, "finish_in_s": [5, 1]}),
            ("/_sim/apps/nope/bulk-runs", {"count": 5})]]

    assert scenario(steps) == [400, 400, 400, 404]


def test_the_listing_benchmark_reports_a_figure_for_every_query():
    results = bench_logs.run([300], repeat=1)
    assert set(results[300]) == {"bulk-runs (create)", *bench_logs.queries(300, time.time())}
    assert "| page 1 |" in bench_logs.table(results)
