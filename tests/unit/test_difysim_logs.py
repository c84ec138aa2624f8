"""GET /v1/workflows/logs of the simulator: filters, paging and the row shape of fixture 10."""
from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.difysim.testing import echo_graph, http_graph, in_process, register

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
LOGS = SHARED / "dify-fixtures" / "10-logs"
BASE_TIME = 1795613400


def recorded(name: str) -> dict:
    return json.loads((LOGS / name).read_text())["response"]


def key_tree(value):
    """Nested key sets of a JSON object (values ignored)."""
    if isinstance(value, dict):
        return {k: key_tree(v) for k, v in value.items()}
    return None


async def seven_runs(client) -> dict:
    """Seven finished runs, one per 10 s of fake creation time; users alternate fx-log-user-0/1."""
    auth = await register(client, echo_graph())
    for i in range(7):
        await client.post("/v1/workflows/run", json={"inputs": {"topic": f"t{i}"}, "user": f"fx-log-user-{i % 2}"},
                          headers=auth)
    for i, run in enumerate(client.sim.store.runs.values()):
        run.created_at = BASE_TIME + 10 * i
    return auth


def query(params: str):
    async def scenario():
        async with in_process() as client:
            auth = await seven_runs(client)
            return await client.get(f"/v1/workflows/logs{params}", headers=auth)

    return asyncio.run(scenario())


def test_pages_are_newest_first_with_total_and_has_more():
    first, second = query("?limit=5&page=1").json(), query("?limit=5&page=2").json()
    assert (first["page"], first["limit"], first["total"], first["has_more"], len(first["data"])) == (1, 5, 7, True, 5)
    assert (second["page"], second["total"], second["has_more"], len(second["data"])) == (2, 7, False, 2)
    times = [row["workflow_run"]["created_at"] for row in first["data"] + second["data"]]
    assert times == sorted(times, reverse=True)


def test_row_has_exactly_the_recorded_shape():
    row = query("?limit=1").json()["data"][0]
    expected = recorded("app01-nofilter-limit5-page1.json")["body"]["data"][0]
    assert key_tree(row) == key_tree(expected)
    assert row["created_from"] == "service-api" and row["workflow_run"]["triggered_from"] == "app-run"
    assert row["created_by_end_user"]["session_id"] == "fx-log-user-0"


def test_status_filter_accepts_only_succeeded_failed_or_stopped():
    assert query("?status=failed").json()["total"] == 0
    assert query("?status=succeeded&limit=2").json()["has_more"] is True
    for bad in ("running", "partial-succeeded", "paused"):
        answer = query(f"?status={bad}")
        assert answer.status_code == 400
        assert answer.json() == recorded(f"app01-status-{bad}.json")["body"]


def test_limit_above_100_is_rejected_with_dify_text():
    answer = query("?limit=1000")
    assert (answer.status_code, answer.json()) == (400, recorded("app01-limit-1000.json")["body"])


def test_created_at_after_accepts_iso_with_z_or_offset_and_rejects_unix_numbers():
    cut = datetime.fromtimestamp(BASE_TIME + 35, tz=UTC)
    assert query("?created_at__after=" + cut.strftime("%Y-%m-%dT%H:%M:%SZ")).json()["total"] == 3
    assert query("?created_at__after=" + cut.isoformat().replace("+", "%2B")).json()["total"] == 3
    answer = query(f"?created_at__after={BASE_TIME}")
    assert (answer.status_code, answer.json()["message"]) == (400, "ISO time too short")
    assert query("?created_at__after=yesterday").json()["message"] == "invalid literal for int() with base 10: b'yest'"


def test_created_at_before_keeps_older_runs():
    cut = datetime.fromtimestamp(BASE_TIME + 15, tz=UTC)
    assert query("?created_at__before=" + cut.strftime("%Y-%m-%dT%H:%M:%SZ")).json()["total"] == 2


def test_session_id_filter_and_keyword():
    assert query("?created_by_end_user_session_id=fx-log-user-1").json()["total"] == 3
    assert query("?keyword=t6").json()["total"] == 1


def test_a_running_run_is_listed_from_its_start():
    release = asyncio.Event()

    async def slow_checkpoint(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={"action": "approve"})

    async def scenario():
        node_http = httpx.AsyncClient(transport=httpx.MockTransport(slow_checkpoint))
        async with in_process(node_http=node_http) as client:
            auth = await register(client, http_graph("http://checkpoint.test/cp"))
            blocking = asyncio.create_task(client.post("/v1/workflows/run", headers=auth,
                                                       json={"inputs": {"topic": "x"}, "user": "u"}))
            await asyncio.sleep(0.1)
            during = (await client.get("/v1/workflows/logs", headers=auth)).json()
            release.set()
            await blocking
            after = (await client.get("/v1/workflows/logs", headers=auth)).json()
            return during, after

    during, after = asyncio.run(scenario())
    running = during["data"][0]["workflow_run"]
    assert (running["status"], running["finished_at"], running["total_steps"], running["elapsed_time"]) == \
        ("running", None, 0, 0.0)
    assert after["data"][0]["workflow_run"]["status"] == "succeeded"
