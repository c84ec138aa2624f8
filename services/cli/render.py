"""Terminal rendering for `hitl`: colors only on a terminal (and never with NO_COLOR)."""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from shared.dify import form_inputs
from shared.views import ACTION_COLOR, RUN_COLOR, STATUS_COLOR, loop_iterations, node_label, node_state

COLORS = {"green": "32", "red": "31", "yellow": "33", "blue": "34", "grey": "90", "bold": "1"}


def paint(text: str, color: str | None) -> str:
    if not color or os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return f"\033[{COLORS[color]}m{text}\033[0m"


def error(text: str) -> str:
    return paint(text, "red")


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def countdown(deadline: float | None) -> str:
    if not deadline:
        return "-"
    left = deadline - time.time()
    if left <= 0:
        return "due"
    minutes, seconds = divmod(int(left), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 120 else f"{minutes // 60}h"


def short_id(value: str | None, n: int = 8) -> str:
    """The first characters of an id, as the console shows it; `hitl show` / `decide` take it back."""
    return (value or "")[:n]


def cut(text: str | None, width: int) -> str:
    text = text or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def outcome_of(cp: dict[str, Any]) -> tuple[str, str | None]:
    """(the word shown for a checkpoint's state, its colour): the action once decided."""
    if cp["status"] == "resolved":
        return cp.get("action") or "resolved", ACTION_COLOR.get(cp.get("action") or "")
    return cp["status"], STATUS_COLOR.get(cp["status"])


def checkpoint_table(data: dict[str, Any]) -> str:
    rows = data.get("checkpoints", [])
    if not rows:
        return "no checkpoints"
    lines = [f"{'ID':8}  {'STATUS':9}  {'KIND':9}  {'APP':10}  {'NODE':16}  {'RND':>3}  {'LEFT':>7}  "
             f"{'ASSIGNEES':16}  {'DECIDED BY':12}  RUN"]
    for cp in rows:
        status, color = outcome_of(cp)
        left = countdown(cp["deadline"]) if cp["status"] == "open" else ""
        assignees = ", ".join(cp.get("assignees") or []) or "anyone"
        lines.append(f"{short_id(cp['id']):8}  {paint(f'{status:9}', color)}  {cut(cp.get('kind') or 'http', 9):9}  "
                     f"{cut(cp['app'], 10):10}  {cut(cp['node_id'], 16):16}  {cp['round']:>3}  {left:>7}  "
                     f"{cut(assignees, 16):16}  {cut(cp.get('decided_by'), 12):12}  {cp['workflow_run_id']}")
    shown = len(rows)
    total = data.get("total", shown)
    lines.append(f"{total} in all" + (f" (first {shown} shown: --limit for more)" if total > shown else ""))
    return "\n".join(lines)


def checkpoint_line(cp: dict[str, Any]) -> str:
    """One checkpoint on one line (ambiguous prefixes, `hitl wait`)."""
    status, color = outcome_of(cp)
    decided = f" by {cp['decided_by']}" if cp.get("decided_by") else ""
    return (f"{cp['id']}  {paint(status, color)}{decided}  {cp['app']}  {cp['node_id']}  round {cp['round']}  "
            f"run {cp['workflow_run_id']}")


def pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def checkpoint_detail(cp: dict[str, Any]) -> str:
    status_color = STATUS_COLOR.get(cp["status"])
    kind = f"  ({cp['kind']})" if cp.get("kind") not in (None, "http") else ""
    out = [paint(f"Checkpoint {cp['id']}", "bold") + kind,
           f"  status    {paint(cp['status'], status_color)}"
           + (f"  ({paint(cp['action'], ACTION_COLOR.get(cp['action']))} by {cp['decided_by']}"
              + (f" via {cp['decision_channel']}" if cp.get("decision_channel") else "") + f", {cp['reason']})"
              if cp.get("action") else f"  (deadline in {countdown(cp['deadline'])}, then {cp['on_timeout']})"),
           f"  app       {cp['app']}   run {cp['workflow_run_id']}   node {cp['node_id']}   round {cp['round']}"
           f"/{cp['max_rounds']}",
           f"  opened    {when(cp['created_at'])}"]
    if cp.get("assignees"):
        out.append(f"  assignees {', '.join(cp['assignees'])}")
    out += policy_lines(cp)
    if cp.get("message"):
        out += ["", paint("Message", "bold"), "  " + cp["message"].replace("\n", "\n  ")]
    if cp.get("kind") == "dify-form":
        out += form_detail(cp)
    else:
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
            out.append(f" {mark} {r['round']:>2}  {r['status']:9} {r.get('action') or '':8} "
                       f"{r.get('feedback') or ''}".rstrip())
    out += ["", paint("History", "bold")]
    for h in cp.get("history", []):
        what = h["kind"] + (f" {h['action']}" if h.get("action") else "") + \
            (f" → {h['outcome']}" if h.get("outcome") else "")
        if h.get("code"):
            what += f" ({h['code']})"
        color = "red" if h.get("outcome") == "rejected" else None
        out.append(f"  {when(h['at'])}  {(h.get('actor') or '-')[:12]:12} {(h.get('channel') or '-'):8} "
                   f"{paint(what, color)}")
    return "\n".join(out)


DELIVERY_COLOR = {"resumed": "green", "resume_stuck": "red", "resume_unconfirmed": "red", "resumed_as_stopped": "red",
                  "failed": "red"}


def form_detail(cp: dict[str, Any]) -> list[str]:
    form = cp.get("form") or {}
    out = ["", paint("Dify form", "bold") + f"  (Human Input node {form.get('node_title') or cp['node_id']}, "
           f"expires {when(form.get('expiration_time'))})",
           "  " + (form.get("form_content") or "").replace("\n", "\n  ")]
    defaults = form.get("resolved_default_values") or {}
    for i in form.get("inputs") or []:
        name = i.get("output_variable_name")
        value = f": {defaults[name]!r}" if defaults.get(name) not in (None, "") else ""
        out.append(f"  input {name} — {form_inputs.describe(i)}{value}")
    out.append("  actions: " + ", ".join(f"{a.get('id')} ({a.get('title')})" for a in form.get("actions") or []))
    if cp.get("delivery"):
        color = DELIVERY_COLOR.get(cp["delivery"])
        detail = f" — {cp['delivery_detail']}" if cp.get("delivery_detail") else ""
        out.append("  delivery: " + paint(cp["delivery"], color) + detail)
    return out


def policy_lines(cp: dict[str, Any]) -> list[str]:
    """The policy snapshotted when the checkpoint opened, the votes so far, who has claimed it."""
    policy = cp.get("policy") or {}
    out = []
    approval = policy.get("approval") or {}
    if policy.get("required", 1) > 1:
        out.append(f"  quorum    {policy['required']} of {len(policy.get('electorate') or [])} "
                   f"({approval.get('mode')}{', a reject wins' if approval.get('reject_wins', True) else ''})")
    if (cp.get("tally") or {}).get("progress"):
        out.append(f"  votes     {cp['tally']['progress']}")
    timers = [f"remind every {policy['remind_every_s']:.0f}s"] if policy.get("remind_every_s") else []
    timers += [f"warn {policy['warn_before_s']:.0f}s before the deadline"] if policy.get("warn_before_s") else []
    timers += [f"after {s['after_s']:.0f}s " + (f"add {', '.join(s['add_assignees'])}" if s.get("add_assignees")
                                                else f"apply {s.get('apply')}") for s in policy.get("escalate") or []]
    if timers:
        out.append(f"  policy    {'; '.join(timers)}")
    if policy.get("no_self_approval"):
        out.append("  policy    the reviewer who started the run may not approve it")
    if cp.get("claimed_by"):
        out.append(f"  claimed   by {cp['claimed_by']} since {when(cp.get('claimed_at'))}")
    return out


def capture_text(run: dict[str, Any]) -> str:
    """Where the form of a paused run stands (the poller re-attaches with the run's user to capture it)."""
    capture, detail = run.get("capture"), run.get("capture_detail")
    if capture == "unavailable":
        return paint("its form cannot be captured", "red") + f": {detail}"
    if capture == "failed":
        return paint("capturing its form failed", "red") + f" ({detail}); retried every interval"
    if capture == "captured":
        return "its form was captured"
    return "capturing its form (a re-attach with the run's user)"


def decision_result(data: dict[str, Any]) -> str:
    follow = f"hitl decision {data.get('decision_id')}"
    if data.get("status") == "accepted":
        return paint("queued", "yellow") + f": {data.get('message')}\n  what became of it: {follow}"
    if data.get("status") == "parked":
        return paint("parked", "blue") + f": {data.get('message')}\n  what became of it: {follow}"
    if data.get("status") == "voted":
        progress = (data.get("progress") or {}).get("progress", "")
        return paint("vote counted", "yellow") + f" on checkpoint {data.get('checkpoint_id')}: {progress}"
    r = data.get("resolution", {})
    return (paint(f"{r.get('action')} applied", ACTION_COLOR.get(r.get("action") or "")) +
            f" to checkpoint {r.get('checkpoint_id')} (round {r.get('round')}) by {r.get('decided_by')}")


NOT_OPEN = "not open any more (decided, expired or cancelled), or not found"
BULK_WORDS = {"applied": ("applied", "green"), "voted": ("vote counted", "yellow"), "accepted": ("queued", "yellow"),
              "parked": ("parked", "blue"), "refused": ("refused", "red"), "not_queued": ("not queued", "red")}


def preview_reason(item: dict[str, Any]) -> str:
    """Why a previewed checkpoint would be refused: the API's reason when it gives one, else what its
    `may_decide` means (the assignee rule)."""
    if item.get("reason"):
        return f"{item.get('code') or 'refused'}: {item['reason']}"
    return f"not_assignee: you are not among its assignees ({', '.join(item.get('assignees') or [])})"


def bulk_preview(data: dict[str, Any]) -> str:
    """`hitl bulk-decide --dry-run`: what would be decided, what would be refused and why."""
    items, gone = data.get("checkpoints") or [], data.get("not_open_or_not_found") or []
    ok = [i for i in items if i.get("may_decide", True)]
    lines = [paint("dry run", "bold") + f": {data.get('action')} would decide {len(ok)} of {len(items) + len(gone)} "
             "checkpoint(s); nothing was decided"]
    for i in items:
        place = f"{i['id']}  {i.get('app')}  {i.get('node_id')}  round {i.get('round')}"
        if i.get("may_decide", True):
            lines.append(f"  {paint('would decide', 'green')}  {place}")
        else:
            lines.append(f"  {paint('would refuse', 'red')}  {place}: {preview_reason(i)}")
    lines += [f"  {paint('would refuse', 'red')}  {cid}: {NOT_OPEN}" for cid in gone]
    if ok:
        lines.append("(applying, the decider also checks the last round, self-approval and a form's actions)")
    return "\n".join(lines)


def bulk_results(data: dict[str, Any]) -> str:
    """`hitl bulk-decide`: each checkpoint's answer, then the counts."""
    lines = [f"{data.get('action')}, bulk {data.get('bulk_id')}:"]
    for r in data.get("results") or []:
        word, color = BULK_WORDS.get(r.get("status") or "", (r.get("status") or "?", None))
        line = f"  {paint(f'{word:12}', color)}  {r.get('checkpoint_id')}"
        if r.get("status") in ("refused", "not_queued"):
            message = r.get("message") or (NOT_OPEN if r.get("code") == "not_found" else "")
            line += f": {r.get('code') or 'refused'}" + (f": {message}" if message else "")
        elif r.get("status") in ("accepted", "parked"):
            line += f"  (what became of it: hitl decision {r.get('decision_id')})"
        lines.append(line)
    counts = data.get("counts") or {}
    lines.append(", ".join(f"{BULK_WORDS.get(s, (s, None))[0]} {n}" for s, n in counts.items()) or "nothing decided")
    return "\n".join(lines)


DECISION_STATES = {  # GET /v1/decisions/{id} → (colour, what it means)
    "applied": ("green", "to checkpoint {checkpoint_id} at {at}"),
    "refused": ("red", "{code}, for checkpoint {checkpoint_id} at {at}"),
    "parked": ("blue", "waits for its checkpoint to open, until {expires_at}"),
    "expired": ("yellow", "its checkpoint did not open before {expires_at}"),
}


def decision_status(data: dict[str, Any]) -> str:
    status = data.get("status") or "?"
    color, text = DECISION_STATES.get(status, (None, ""))
    fields = {k: data.get(k) or "-" for k in ("checkpoint_id", "code")}
    fields.update(at=when(data.get("at")), expires_at=when(data.get("expires_at")))
    return f"decision {data.get('decision_id')}: {paint(status, color)}" + (f" {text.format(**fields)}" if text else "")


# ---------------------------------------------------------------------- runs
# green succeeded · red failed/exception · yellow running · blue waiting for a person · grey stopped
def run_table(data: dict[str, Any]) -> str:
    rows = data.get("runs", [])
    if not rows:
        return "no runs tracked"
    lines = [f"{'RUN':36}  {'STATUS':17}  {'APP':10}  {'SOURCE':10}  {'STARTED':23}  OUTCOME"]
    for r in rows:
        status = r["status"] + (" (record stale)" if r.get("stale_record") else "")
        lines.append(f"{r['id']:36}  {paint(f'{status:17}', RUN_COLOR.get(r['status']))}  {r['app'][:10]:10}  "
                     f"{r['source'][:10]:10}  {when(r.get('created_at')):23}  {outcome_text(r)}".rstrip())
    lines.append(f"{data.get('total', len(rows))} in all")
    return "\n".join(lines)


def node_line(node: dict[str, Any], state: str, iteration: int | None) -> str:
    """One node execution as the console's timeline shows it: title and id, loop iteration, state, time."""
    color = RUN_COLOR.get(state, "grey")
    title = node.get("title") or node["node_id"]
    ident = node["node_id"] if node.get("title") and node["node_id"] != node.get("title") else ""
    loop = f"loop {iteration + 1}" if iteration is not None else ""
    label = node_label(state)
    took = f"{node['elapsed_time']:.2f}s" if node.get("elapsed_time") is not None else ""
    extra = (f"  retries {node['retries']}" if node.get("retries") else "") + \
        (f"  {paint(node['error'], 'red')}" if node.get("error") else "")
    return (f"  {paint('●', color)} {cut(title, 24):24} {cut(ident, 18) if ident else '':18} {loop:8} "
            f"{paint(f'{label:22}', color)} {took:>8}{extra}")


def outcome_text(run: dict[str, Any]) -> str:
    """The checkpoint outcome beside a run's status (shared/views.py::run_outcome), coloured: red for
    an abort or a timeout, so that such a run does not read as a plain green success."""
    outcome = run.get("outcome")
    if not outcome:
        return ""
    bad = outcome.startswith(("aborted", "timed out", "cancelled"))
    return paint(outcome, "red" if bad else "blue" if outcome == "waiting for a person" else None)


def run_detail(run: dict[str, Any]) -> str:
    stale = f"  (Dify's record says {run['dify_status']}: it never catches up after a stop)" \
        if run.get("stale_record") else ""
    outcome = outcome_text(run)
    out = [paint(f"Run {run['id']}", "bold"),
           f"  status    {paint(run['status'], RUN_COLOR.get(run['status']))}"
           + (f" · {outcome}" if outcome else "") + stale,
           f"  app       {run['app']}   source {run['source']}   task {run.get('task_id') or '-'}",
           f"  started   {when(run.get('created_at'))}   finished {when(run.get('finished_at'))}"]
    if run.get("parent_run_id"):
        out.append(f"  re-run of {run['parent_run_id']} with {json.dumps(run.get('overrides'))}")
    if run.get("error"):
        out.append("  error     " + paint(str(run["error"]), "red"))
    waiting = any(c["status"] == "open" for c in run.get("checkpoints", []))
    if run.get("nodes"):
        out += ["", paint("Nodes", "bold")]
        out += [node_line(n, node_state(n, run["status"], waiting), i)
                for n, i in zip(run["nodes"], loop_iterations(run["nodes"]), strict=True)]
    elif not run.get("streamed"):
        out += ["", "  (node-level status is recorded for runs started through dify-hitl or its gateway)"]
    if run["status"] == "paused" and not waiting:
        out += ["", "  " + paint("paused in Dify", "blue") + " — " + capture_text(run)]
    if run.get("checkpoints"):
        out += ["", paint("Checkpoints", "bold")]
        for c in run["checkpoints"]:
            status, color = outcome_of(c)
            out.append(f"  {short_id(c['id'])}  {c['node_id']}  round {c['round']}  {paint(status, color)}"
                       + (f" by {c['decided_by']}" if c.get("decided_by") else ""))
    return "\n".join(out)
