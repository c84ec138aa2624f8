"""Terminal rendering for `hitl`: colors only on a terminal (and never with NO_COLOR)."""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any

COLORS = {"green": "32", "red": "31", "yellow": "33", "blue": "34", "grey": "90", "bold": "1"}
STATUS_COLOR = {"open": "blue", "resolved": "green", "expired": "yellow", "cancelled": "grey"}
ACTION_COLOR = {"approve": "green", "edit": "green", "revise": "yellow", "abort": "red"}


def paint(text: str, color: str | None) -> str:
    if not color or os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return f"\033[{COLORS[color]}m{text}\033[0m"


def error(text: str) -> str:
    return paint(text, "red")


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def countdown(deadline: float | None) -> str:
    if not deadline:
        return "-"
    left = deadline - time.time()
    if left <= 0:
        return "due"
    minutes, seconds = divmod(int(left), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 120 else f"{minutes // 60}h"


def checkpoint_table(data: dict[str, Any]) -> str:
    rows = data.get("checkpoints", [])
    if not rows:
        return "no checkpoints"
    lines = [f"{'ID':36}  {'STATUS':9}  {'APP':10}  {'NODE':16}  {'RND':>3}  {'LEFT':>7}  RUN"]
    for cp in rows:
        status = cp["status"] if cp["status"] != "resolved" else (cp.get("action") or "resolved")
        color = STATUS_COLOR.get(cp["status"]) if cp["status"] != "resolved" else ACTION_COLOR.get(cp.get("action"))
        left = countdown(cp["deadline"]) if cp["status"] == "open" else ""
        lines.append(f"{cp['id']:36}  {paint(f'{status:9}', color)}  {cp['app'][:10]:10}  {cp['node_id'][:16]:16}  "
                     f"{cp['round']:>3}  {left:>7}  {cp['workflow_run_id']}")
    lines.append(f"{data.get('total', len(rows))} in all")
    return "\n".join(lines)


def pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def checkpoint_detail(cp: dict[str, Any]) -> str:
    status_color = STATUS_COLOR.get(cp["status"])
    out = [paint(f"Checkpoint {cp['id']}", "bold"),
           f"  status    {paint(cp['status'], status_color)}"
           + (f"  ({paint(cp['action'], ACTION_COLOR.get(cp['action']))} by {cp['decided_by']}, {cp['reason']})"
              if cp.get("action") else f"  (deadline in {countdown(cp['deadline'])}, then {cp['on_timeout']})"),
           f"  app       {cp['app']}   run {cp['workflow_run_id']}   node {cp['node_id']}   round {cp['round']}"
           f"/{cp['max_rounds']}",
           f"  opened    {when(cp['created_at'])}"]
    if cp.get("assignees"):
        out.append(f"  assignees {', '.join(cp['assignees'])}")
    if cp.get("message"):
        out += ["", paint("Message", "bold"), "  " + cp["message"].replace("\n", "\n  ")]
    out += ["", paint("Node output", "bold"), "  " + pretty(cp.get("node_output")).replace("\n", "\n  ")]
    if cp.get("action") in ("edit",) or (cp.get("output") is not None and cp.get("output") != cp.get("node_output")):
        out += ["", paint("Output sent to Dify", "bold"), "  " + pretty(cp.get("output")).replace("\n", "\n  ")]
    if cp.get("feedback"):
        out += ["", paint("Feedback", "bold"), "  " + cp["feedback"]]
    rounds = cp.get("rounds") or []
    if len(rounds) > 1:
        out += ["", paint("Rounds", "bold")]
        for r in rounds:
            mark = "→" if r["checkpoint_id"] == cp["id"] else " "
            out.append(f" {mark} {r['round']:>2}  {r['status']:9} {r.get('action') or '':8} {r.get('feedback') or ''}")
    out += ["", paint("History", "bold")]
    for h in cp.get("history", []):
        what = h["kind"] + (f" {h['action']}" if h.get("action") else "") + (f" → {h['outcome']}" if h.get("outcome") else "")
        if h.get("code"):
            what += f" ({h['code']})"
        color = "red" if h.get("outcome") == "rejected" else None
        out.append(f"  {when(h['at'])}  {(h.get('actor') or '-')[:12]:12} {(h.get('channel') or '-'):8} {paint(what, color)}")
    return "\n".join(out)


def decision_result(data: dict[str, Any]) -> str:
    if data.get("status") == "accepted":
        return paint("queued", "yellow") + f": {data.get('message')} (decision {data.get('decision_id')})"
    r = data.get("resolution", {})
    return (paint(f"{r.get('action')} applied", ACTION_COLOR.get(r.get("action"))) +
            f" to checkpoint {r.get('checkpoint_id')} (round {r.get('round')}) by {r.get('decided_by')}")
