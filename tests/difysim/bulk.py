"""POST /_sim/apps/{app}/bulk-runs: many runs at once, finishing on a known schedule (benchmarks; not Dify).

body (every key optional but count):
  {"count": 50000,                                  1..200000
   "statuses": {"succeeded": 8, "failed": 1, "stopped": 1, "partial-succeeded": 0},
                                                    weights of the final record status (default all succeeded)
   "created_at_spread_s": 3600,                     created_at spread evenly over the last N seconds (default 0: now)
   "finish_in_s": [5, 600],                         each run finishes at a uniform random time this many seconds
                                                    after the call (default [0, 0]: finished already)
   "users": 10, "user_prefix": "bulk-user",         session ids bulk-user-0 .. bulk-user-9 (default 1 user)
   "seed": 0,                                       the same seed gives the same mix and schedule
   "include_runs": true}                            false: leave the per-run list out of the answer
-> 201 {"app_id", "count", "created_at": {"min", "max"}, "finishes_at": {"min", "max"},
        "runs": [{"id", "task_id", "created_at", "finishes_at", "status"}]}   (status: the final one)

A bulk run has no graph execution: its record says `running` (listed in the logs from its start)
until `finishes_at` (Unix seconds, float), when one background task writes its final status,
`finished_at` and `elapsed_time` (within a few milliseconds of the promised time), and sends a
`workflow_finished` to any re-attached stream. So a poller can measure how stale it was.
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .admin_runs import bad_request, find_app
from .bulk_schedule import finish
from .runs import Run
from .service_api import TERMINAL_STATUSES, json_body
from .state import SimState

MAX_COUNT = 200_000


def parse_request(body: dict) -> dict[str, Any] | str:
    """The validated parameters, or the reason they are refused."""
    count = body.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        return f"count must be an integer in 1..{MAX_COUNT}"
    statuses = body.get("statuses") or {"succeeded": 1}
    if not isinstance(statuses, dict) or not statuses or any(s not in TERMINAL_STATUSES for s in statuses) \
            or any(not isinstance(w, (int, float)) or w < 0 for w in statuses.values()) or not sum(statuses.values()):
        return f"statuses must map some of {list(TERMINAL_STATUSES)} to non-negative weights"
    finish_in = body.get("finish_in_s") or [0, 0]
    if not (isinstance(finish_in, list) and len(finish_in) == 2 and 0 <= finish_in[0] <= finish_in[1]):
        return "finish_in_s must be [min, max] seconds with 0 <= min <= max"
    spread = float(body.get("created_at_spread_s") or 0)
    users = int(body.get("users") or 1)
    if spread < 0 or users < 1:
        return "created_at_spread_s must be >= 0 and users >= 1"
    return {"count": count, "statuses": statuses, "finish_in": (float(finish_in[0]), float(finish_in[1])),
            "spread": spread, "users": users, "prefix": str(body.get("user_prefix") or "bulk-user"),
            "seed": body.get("seed") or 0, "include_runs": body.get("include_runs", True) is not False}


async def bulk_runs(request: Request) -> Response:
    state: SimState = request.app.state.sim
    app = find_app(state, request.path_params["app"])
    if app is None or not app.is_published:
        return JSONResponse({"error": f"no published app {request.path_params['app']!r}"}, status_code=404)
    params = parse_request(await json_body(request))
    if isinstance(params, str):
        return bad_request(params)
    rng = random.Random(params["seed"])
    now = time.time()
    count, spread, (soonest, latest) = params["count"], params["spread"], params["finish_in"]
    finals = rng.choices(list(params["statuses"]), weights=list(params["statuses"].values()), k=count)
    end_users = [state.store.end_user(app, f"{params['prefix']}-{i}") for i in range(params["users"])]
    runs, schedule, done_now = [], [], []
    for i in range(count):
        if i and i % 2000 == 0:
            await asyncio.sleep(0)  # 50,000 runs take seconds to make: let the running ones go on meanwhile
        run = Run(app, app.workflow, end_users[i % len(end_users)], {})
        run.created_at = run.segment_created_at = int(now - spread + spread * (i + 1) / count)  # oldest first
        finishes_at = now + rng.uniform(soonest, latest)
        runs.append((run, finishes_at, finals[i]))
        (done_now if latest == 0 else schedule).append((finishes_at, run, finals[i]))
    state.store.add_runs([run for run, _, _ in runs])
    for finishes_at, run, status in done_now:
        finish(run, status, finishes_at)
    if schedule:
        state.bulk_finisher.schedule(schedule)
    created = [run.created_at for run, _, _ in runs]
    finishing = [f for _, f, _ in runs]
    answer: dict[str, Any] = {"app_id": app.id, "count": count,
                              "created_at": {"min": min(created), "max": max(created)},
                              "finishes_at": {"min": min(finishing), "max": max(finishing)}}
    if params["include_runs"]:
        answer["runs"] = [{"id": run.id, "task_id": run.task_id, "created_at": run.created_at,
                           "finishes_at": round(finishes_at, 6), "status": status}
                          for run, finishes_at, status in runs]
    return JSONResponse(answer, status_code=201)
