"""(4) One poller tracking many live runs of one app against the simulator, at a per-app limit of
HITL_DIFY_RATE_PER_S (10 requests/s by default).

For each size N: N runs made in the simulator in one call (`POST /_sim/apps/{app}/bulk-runs`),
created over the last hour (the live window), all `running`, each finishing at a promised time in a
window after the poller has discovered them all (through the logs listing, as runs started
elsewhere). Measured: requests/s the poller used while the runs finished (the simulator's request
log), staleness = the store's first terminal status row of a run − the time the simulator finished it
(p50 / p99 / max), whether every finished run was recorded with Dify's status, and the simulator
itself (its time per logs page at that size, its CPU) so that it is not what limits the figures.

The bound of one pass over the listing is (runs created in the live window ÷ 100) ÷ rate: a finished
run is seen at most one pass later. The former algorithm (HITL_STATUS_SOURCE=per_run, one GET per
live run) is measured beside it as the baseline; its staleness is about N ÷ rate.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from bench.common import raise_nofile, summary_ms, worst_window
from bench.stack import DIFY_APP_KEY, BenchStack

TERMINAL = ("succeeded", "failed", "stopped", "partial-succeeded")
MIX = {"succeeded": 8, "failed": 1, "stopped": 1}


def bound_s(runs: int, rate_per_s: float) -> float:
    return (runs / 100) / rate_per_s


async def poller(db_kind: str, *, sizes: list[int], rate_per_s: float, baseline_sizes: list[int],
                 spread_s: float = 3600, finish_window_s: float = 30, finishing: int = 2000,
                 log=print) -> dict[str, Any]:
    raise_nofile(65536)
    out: dict[str, Any] = {"db": db_kind, "rate_limit_per_s": rate_per_s, "sizes": [], "baseline": []}
    for source, chosen in (("listing", sizes), ("per_run", baseline_sizes)):
        for n in chosen:
            out["sizes" if source == "listing" else "baseline"].append(await one_size(
                db_kind, n, rate_per_s=rate_per_s, source=source, spread_s=spread_s,
                finish_window_s=finish_window_s, finishing=min(n, finishing), log=log))
    return out


async def one_size(db_kind: str, n: int, *, rate_per_s: float, source: str, spread_s: float,
                   finish_window_s: float, finishing: int, log=print) -> dict[str, Any]:
    """n live runs; `finishing` of them (spread among the others) finish while we watch, the rest stay
    live — every live run costs the listing its share of pages; staleness is measured on the finished."""
    from bench.scenarios import Sampler
    from tests.e2e.graphs import template_graph

    env = {"HITL_DIFY_RATE_PER_S": str(rate_per_s), "HITL_DISCOVERY_LOOKBACK_S": str(spread_s + 600),
           "HITL_STATUS_SOURCE": source, "HITL_DISCOVERY_INTERVAL_S": "2", "HITL_LOG_LEVEL": "WARNING"}
    bound = bound_s(n, rate_per_s)
    result: dict[str, Any] = {"runs": n, "finishing": finishing, "status_source": source,
                              "rate_limit_per_s": rate_per_s, "bound_s": round(bound, 2), "spread_s": spread_s}
    async with BenchStack(db_kind, sim=True, watched=True, env=env, ingest=1, decider=1) as stack:
        sim = stack.ps.sim_url
        async with httpx.AsyncClient(base_url=sim, timeout=120) as http:
            (await http.post("/_sim/apps", json={"name": "bulk", "graph": template_graph(),
                                                 "api_key": DIFY_APP_KEY})).raise_for_status()
            # Discovery walks n/100 pages at the rate limit (and writes n runs): they finish after that.
            start_in = bound * 1.5 + 30
            made_at = time.perf_counter()
            if n > finishing:  # the ones that stay live all along (they finish long after the bench)
                (await http.post("/_sim/apps/bulk/bulk-runs", json={
                    "count": n - finishing, "created_at_spread_s": spread_s, "users": 50, "seed": 1,
                    "finish_in_s": [86400, 86400], "include_runs": False})).raise_for_status()
            made = (await http.post("/_sim/apps/bulk/bulk-runs", json={
                "count": finishing, "statuses": MIX, "created_at_spread_s": spread_s, "users": 50, "seed": 2,
                "finish_in_s": [start_in, start_in + finish_window_s]})).json()
            result["sim_bulk_create_s"] = round(time.perf_counter() - made_at, 2)
            t_made = time.time()
            result["sim_page_ms"] = await page_cost(http, made)
            finishes = {r["id"]: (r["finishes_at"], r["status"]) for r in made["runs"]}
            log(f"  poller {db_kind} ({source}): {n} live runs, rate {rate_per_s}/s, bound {bound:.1f} s; "
                f"a logs page takes the simulator {result['sim_page_ms']['page_1']} ms")
            db_url = stack.database_url
            discovered = await wait_tracked(db_url, n, deadline=time.time() + start_in)
            result["tracked"] = discovered[0]
            result["discovered_after_s"] = round(discovered[1] - t_made, 1)
            first_finish = made["finishes_at"]["min"]
            await asyncio.sleep(max(0.0, first_finish - time.time() - 1))
            sampler = Sampler({k: v for k, v in stack.pids().items() if k in ("poller", "sim")}).start()
            since = time.time()
            # the baseline sees a finished run ~n/rate later: give it that, twice over
            limit_s = finish_window_s + (2.5 * n / rate_per_s if source == "per_run" else 4 * bound + 60)
            recorded = await wait_recorded(db_url, finishing, deadline=made["finishes_at"]["max"] + limit_s)
            result["usage"] = sampler.stop()
            result.update(staleness(db_url, finishes))
            requests = (await http.get("/_sim/requests", params={"since": since})).json()["requests"]
            result.update(request_figures(requests, since, recorded[1]))
            # how much of the simulator's time its answers to the poller took (it is not the bottleneck)
            result["sim_busy_share"] = round(result["requests_per_s"] * result["sim_page_ms"]["page_1"] / 1000, 3)
            result["recorded"] = recorded[0]
            result["ratio_p99_to_bound"] = round(result["staleness"]["p99_ms"] / 1000 / bound, 2) \
                if result["staleness"]["p99_ms"] is not None else None
            log(f"    recorded {recorded[0]}/{finishing} finished; staleness p50 {result['staleness']['p50_ms']} ms, "
                f"p99 {result['staleness']['p99_ms']} ms ({result['ratio_p99_to_bound']} × bound); "
                f"{result['requests_per_s']} requests/s")
    return result


async def page_cost(http: httpx.AsyncClient, made: dict[str, Any], repeat: int = 15) -> dict[str, float]:
    """The simulator's own time per logs page at this size (over loopback HTTP, JSON included)."""
    middle = (made["created_at"]["min"] + made["created_at"]["max"]) / 2
    window = {"created_at__after": iso(middle - 60), "created_at__before": iso(middle + 60)}
    figures = {}
    for name, params in (("page_1", {}), ("window_page_1", window)):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            (await http.get("/v1/workflows/logs", params={"limit": 100, **params},
                            headers={"Authorization": f"Bearer {DIFY_APP_KEY}"})).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = round(statistics.median(times), 2)
    return figures


def iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def wait_tracked(db_url: str, n: int, *, deadline: float) -> tuple[int, float]:
    return await _wait(db_url, "SELECT count(*) FROM runs", n, deadline)


async def wait_recorded(db_url: str, n: int, *, deadline: float) -> tuple[int, float]:
    sql = f"SELECT count(*) FROM runs WHERE status IN ({', '.join(repr(s) for s in TERMINAL)})"
    return await _wait(db_url, sql, n, deadline)


async def _wait(db_url: str, sql: str, n: int, deadline: float) -> tuple[int, float]:
    from shared.store import Database

    db = Database(db_url)
    try:
        count = 0
        while time.time() < deadline:
            with db.read() as conn:
                count = conn.execute(text(sql)).scalar_one()
            if count >= n:
                break
            await asyncio.sleep(0.5)
        return count, time.time()
    finally:
        db.dispose()


def staleness(db_url: str, finishes: dict[str, tuple[float, str]]) -> dict[str, Any]:
    """From each run's promised finish to the store's first terminal status row for it."""
    from shared.store import Database

    db = Database(db_url)
    try:
        with db.read() as conn:
            rows = conn.execute(text(
                "SELECT run_id, min(at), min(status) FROM run_history WHERE kind = 'status' AND status IN "
                f"({', '.join(repr(s) for s in TERMINAL)}) GROUP BY run_id")).all()
    finally:
        db.dispose()
    lags, wrong = [], 0
    for run_id, at, status in rows:
        if run_id in finishes:
            finished_at, expected = finishes[run_id]
            lags.append(max(0.0, at - finished_at))
            wrong += status != expected
    return {"staleness": summary_ms(lags), "recorded_with_another_status": wrong}


def request_figures(requests: list[dict[str, Any]], since: float, until: float) -> dict[str, Any]:
    window = [r for r in requests if since <= r["time"] <= until]
    times = sorted(r["time"] for r in window)
    kinds: dict[str, int] = {}
    for r in window:
        kind = "logs" if "/workflows/logs" in r["path"] else "get_run" if "/workflows/run/" in r["path"] else r["path"]
        kinds[kind] = kinds.get(kind, 0) + 1
    seconds = max(1e-6, until - since)
    return {"requests_per_s": round(len(window) / seconds, 2), "requests_by_kind": kinds,
            "measured_s": round(seconds, 1), "worst_1s_window": worst_window(times, 1.0) if times else 0,
            "worst_5s_window": worst_window(times, 5.0) if times else 0}
