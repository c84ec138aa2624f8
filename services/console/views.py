"""What each page shows, read from the store: plain dicts for the templates, nothing secret.

Every function takes an open (read) Connection; the handlers run them in a thread.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from services.cli.render import ACTION_COLOR, RUN_COLOR, STATUS_COLOR, node_state
from services.console import render
from services.decider.logic import public_view
from services.poller.recorder import public_run
from shared.settings import ReviewerConfig
from shared.store import checkpoints as cp_store
from shared.store import runs as run_store
from shared.store.tables import runs as runs_table

SECRET_FIELDS = {"secret", "form_token"}
AGES = {"": None, "new": (0, 300), "5m": (300, None), "1h": (3600, None), "1d": (86400, None)}
AGE_LABELS = {"": "any age", "new": "under 5 min", "5m": "over 5 min", "1h": "over 1 hour", "1d": "over 1 day"}
RUN_STATUSES = ("running", "waiting", "paused", "succeeded", "partial-succeeded", "failed", "stopped")
RUNS_PAGE = 50
INBOX_LIMIT = 500


def safe(cp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in public_view(cp).items() if k not in SECRET_FIELDS}


def checkpoint_color(cp: dict[str, Any]) -> str:
    if cp["status"] == "resolved":
        return ACTION_COLOR.get(cp.get("action") or "", "grey")
    return STATUS_COLOR.get(cp["status"], "grey")


def checkpoint_label(cp: dict[str, Any]) -> str:
    if cp["status"] == "open":
        return "waiting for a person"
    if cp["status"] == "resolved":
        return {"approve": "approved", "revise": "revise requested", "edit": "edited",
                "abort": "aborted"}.get(cp.get("action") or "", cp.get("action") or "resolved")
    return cp["status"]


def assigned_to(cp: dict[str, Any], reviewer: ReviewerConfig) -> bool:
    names = set(cp.get("assignees") or [])
    return reviewer.name in names or bool({f"group:{g}" for g in reviewer.groups} & names)


def may_decide(cp: dict[str, Any], reviewer: ReviewerConfig) -> bool:
    return not cp.get("assignees") or assigned_to(cp, reviewer)


# ---------------------------------------------------------------------- inbox
def inbox(conn, reviewer: ReviewerConfig, *, app: str = "", workflow: str = "", node: str = "", mine: bool = False,
          age: str = "") -> dict[str, Any]:
    rows, total = cp_store.listing(conn, status="open", limit=INBOX_LIMIT)  # by deadline, soonest first
    rows = [safe(r) for r in rows]
    options = {"app": sorted({r["app"] for r in rows}), "workflow": sorted({r["workflow_id"] for r in rows if r.get("workflow_id")}),
               "node": sorted({r["node_id"] for r in rows})}
    now = time.time()
    low, high = AGES.get(age) or (None, None)
    shown = [r for r in rows
             if (not app or r["app"] == app) and (not workflow or r.get("workflow_id") == workflow)
             and (not node or r["node_id"] == node) and (not mine or assigned_to(r, reviewer))
             and (low is None or now - r["created_at"] >= low) and (high is None or now - r["created_at"] < high)]
    for r in shown:
        r["mine"] = assigned_to(r, reviewer)
        r["may_decide"] = may_decide(r, reviewer)
    return {"rows": shown, "total_open": total, "options": options, "truncated": total > len(rows)}


def open_count(conn) -> int:
    return cp_store.count_open(conn)


# ---------------------------------------------------------------------- one checkpoint
def checkpoint(conn, checkpoint_id: str) -> dict[str, Any] | None:
    row = cp_store.get(conn, checkpoint_id)
    if row is None:
        return None
    cp = safe(row)
    rounds = [safe(r) for r in cp_store.rounds(conn, cp["workflow_run_id"], cp["node_id"])]
    diffs = []
    for before, after in zip(rounds, rounds[1:]):
        if after["round"] > cp["round"]:
            break
        diffs.append({"from": before, "to": after, "feedback": before.get("feedback"),
                      "lines": render.diff_lines(render.as_text(before["node_output"]), render.as_text(after["node_output"]))})
    later = [r for r in rounds if r["round"] > cp["round"]]
    history = cp_store.history_of(conn, checkpoint_id)
    for h in history:
        h["summary"] = history_summary(h)
    run = run_store.get(conn, cp["workflow_run_id"])
    return {"cp": cp, "rounds": rounds, "diffs": diffs, "next_round": later[0] if later else None,
            "history": history, "run": public_run(run) if run else None,
            "kind": render.output_kind(cp["node_output"]), "output_html": render.render_output(cp["node_output"]),
            "edit_text": render.as_text(cp["node_output"]),
            "sent_html": render.render_output(cp["output"]) if cp["status"] != "open" and cp.get("action") == "edit" else None}


def history_summary(h: dict[str, Any]) -> str:
    detail = h.get("detail") or {}
    parts = []
    if detail.get("feedback"):
        parts.append(f"feedback: {detail['feedback']}")
    if detail.get("reason") and detail.get("reason") != detail.get("feedback"):
        parts.append(f"reason: {detail['reason']}")
    if "output" in detail:
        text = render.as_text(detail["output"])
        parts.append(f"output: {text[:200]}{'…' if len(text) > 200 else ''}")
    for key in ("round", "waited_s", "error", "status"):
        if detail.get(key) is not None and not parts:
            parts.append(f"{key}: {detail[key]}")
    return " · ".join(parts)


# ---------------------------------------------------------------------- runs
def waiting_runs(conn) -> dict[str, int]:
    rows, _ = cp_store.listing(conn, status="open", limit=INBOX_LIMIT)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["workflow_run_id"]] = counts.get(r["workflow_run_id"], 0) + 1
    return counts


def run_color(run: dict[str, Any], waiting: bool) -> tuple[str, str]:
    if waiting and run["status"] in ("running", "paused"):
        return "blue", "waiting for a person"
    return RUN_COLOR.get(run["status"], "grey"), run["status"]


def runs(conn, *, status: str = "", app: str = "", page: int = 1) -> dict[str, Any]:
    waiting = waiting_runs(conn)
    offset = (max(page, 1) - 1) * RUNS_PAGE
    if status == "waiting":
        rows = [r for r in (run_store.get(conn, rid) for rid in waiting) if r and (not app or r["app"] == app)]
        rows.sort(key=lambda r: r["tracked_at"], reverse=True)
        total, rows = len(rows), rows[offset:offset + RUNS_PAGE]
    else:
        rows, total = run_store.listing(conn, status=status or None, app=app or None, limit=RUNS_PAGE, offset=offset)
    shown = []
    for r in rows:
        run = public_run(r)
        run["color"], run["label"] = run_color(run, r["id"] in waiting)
        run["open_checkpoints"] = waiting.get(r["id"], 0)
        run["elapsed"] = run_elapsed(run)
        shown.append(run)
    apps = sorted(conn.execute(select(runs_table.c.app).distinct()).scalars())
    return {"rows": shown, "total": total, "page": max(page, 1), "pages": max(1, -(-total // RUNS_PAGE)),
            "apps": apps, "statuses": RUN_STATUSES}


def run_elapsed(run: dict[str, Any]) -> float | None:
    if run.get("elapsed_time") is not None:
        return run["elapsed_time"]
    if run.get("created_at") and run.get("finished_at"):
        return run["finished_at"] - run["created_at"]
    return None


def run(conn, run_id: str) -> dict[str, Any] | None:
    row = run_store.get(conn, run_id)
    if row is None:
        return None
    cps, _ = cp_store.listing(conn, run_id=run_id, limit=500)
    cps = [safe(c) for c in reversed(cps)]  # oldest first
    waiting = any(c["status"] == "open" for c in cps)
    info = public_run(row)
    info["color"], info["label"] = run_color(info, waiting)
    info["elapsed"] = run_elapsed(info)
    nodes, ended = [], row["status"] in run_store.RUN_TERMINAL
    for n in run_store.nodes_of(conn, run_id):
        # A node still "running" in a run that ended never finished: it was stopped with the run.
        state = "stopped" if ended and n["status"] not in run_store.NODE_FINAL else node_state(n, waiting)
        nodes.append({**{k: n.get(k) for k in ("id", "node_id", "node_type", "title", "status", "loop_index",
                                               "retries", "error", "elapsed_time", "started_at", "finished_at")},
                      "state": state, "color": RUN_COLOR.get(state, "grey"),
                      "label": "waiting for a person" if state == "waiting" else state})
    for c in cps:
        c["color"], c["label"] = checkpoint_color(c), checkpoint_label(c)
    return {"run": info, "nodes": nodes, "checkpoints": cps, "history": run_store.history_of(conn, run_id)[-200:],
            "waiting": waiting}
