"""What each page shows, read from the store: plain dicts for the templates, nothing secret.

Every function takes an open (read) Connection; the handlers run them in a thread.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select

from services.console import render
from services.console.config import ConsoleSettings
from services.console.policy_view import policy_view
from services.console.steps import is_step, step_view
from shared.access import Scope
from shared.store import checkpoints as cp_store
from shared.store import runs as run_store
from shared.store import timers as timer_store
from shared.store import votes as vote_store
from shared.store.tables import runs as runs_table
from shared.views import ACTION_COLOR, RUN_COLOR, STATUS_COLOR, node_label, node_state, public_run, public_view

SECRET_FIELDS = {"secret", "form_token"}
RUN_STATUSES = ("running", "waiting", "paused", "succeeded", "partial-succeeded", "failed", "stopped")
RUNS_PAGE = 50
INBOX_LIMIT = 500


# A Dify form token is a secret: never in a page or a JSON answer. Dify's own error messages can carry
# it (a 404 names the URI it was asked for), so whatever the console shows is scrubbed of it too.
TOKEN_HIDDEN = "[form token]"
_TOKEN_URI = re.compile(r"(/form/human_input/)(?!<)[^\s\]\)\"'?#/]+")


def scrub(value: Any, secrets: set[str] | frozenset[str] = frozenset()) -> Any:
    """`value` with every form token in it (the known `secrets`, and any in a form URI) replaced."""
    if isinstance(value, str):
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, TOKEN_HIDDEN)
        return _TOKEN_URI.sub(lambda m: m.group(1) + TOKEN_HIDDEN, value) if "human_input/" in value else value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value


def secrets_of(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    return {r["secret"] for r in rows if r.get("secret")}


def safe(cp: Mapping[str, Any]) -> dict[str, Any]:
    return scrub({k: v for k, v in public_view(cp).items() if k not in SECRET_FIELDS}, secrets_of([cp]))


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


def open_count(conn, scope: Scope) -> int:
    return cp_store.count_open(conn, scope)


# ---------------------------------------------------------------------- one checkpoint
def dify_run_link(console: ConsoleSettings, cp: dict[str, Any]) -> str | None:
    """The run in Dify's own web console, when HITL_CONSOLE_DIFY_WEB_URL is set and the app id is known."""
    if not console.dify_web_url or not cp.get("app_id"):
        return None
    try:
        path = console.dify_run_path.format(app_id=cp["app_id"], run_id=cp["workflow_run_id"],
                                            workflow_id=cp.get("workflow_id") or "")
    except (KeyError, IndexError, ValueError):
        path = f"/app/{cp['app_id']}/logs"
    return console.dify_web_url.rstrip("/") + "/" + path.lstrip("/")


def node_title(cp: dict[str, Any], nodes: list[dict[str, Any]]) -> str | None:
    if cp.get("kind") == "dify-form":
        title = (cp.get("form") or {}).get("node_title")
        if title:
            return str(title)
    return next((n["title"] for n in reversed(nodes) if n["node_id"] == cp["node_id"] and n.get("title")), None)


def checkpoint(conn, checkpoint_id: str, scope: Scope, console: ConsoleSettings) -> dict[str, Any] | None:
    row = cp_store.get(conn, checkpoint_id, apps=scope)
    if row is None:
        return None
    cp = safe(row)
    rounds = [safe(r) for r in cp_store.rounds(conn, cp["app"], cp["workflow_run_id"], cp["node_id"])]
    diffs = []
    for before, after in itertools.pairwise(rounds):
        if after["round"] > cp["round"]:
            break
        diffs.append({"from": before, "to": after, "feedback": before.get("feedback"),
                      "lines": render.diff_lines(render.as_text(before["node_output"]),
                                                 render.as_text(after["node_output"]))})
    later = [r for r in rounds if r["round"] > cp["round"]]
    history = scrub(cp_store.history_of(conn, checkpoint_id), secrets_of([row]))
    for h in history:
        h["summary"] = history_summary(h)
        client = (h.get("detail") or {}).get("client")
        if client and h.get("channel"):  # observed channel first, then what the caller said it was
            h["channel"] = f"{h['channel']} ({client})"
    run = run_store.get(conn, cp["app"], cp["workflow_run_id"])
    nodes = scrub(run_store.nodes_of(conn, cp["app"], cp["workflow_run_id"]), secrets_of([row]))
    inputs = scrub(run.get("inputs"), secrets_of([row])) if run else None
    pairs = list(inputs.items()) if isinstance(inputs, dict) else []
    context = {"inputs": inputs, "own_inputs": [(k, v) for k, v in pairs if not str(k).startswith("sys.")],
               "system_inputs": [(k, v) for k, v in pairs if str(k).startswith("sys.")],
               "node_title": node_title(cp, nodes), "user": cp.get("user") or (run["user"] if run else None),
               "dify_link": dify_run_link(console, cp),
               "started_at": run["created_at"] if run else None}
    step = step_view(conn, cp, nodes) if is_step(cp) else None
    policy = policy_view(cp, vote_store.of(conn, cp["id"]), timer_store.of(conn, cp["id"]))
    return {"cp": cp, "context": context, "step": step, "rounds": rounds, "diffs": diffs, "policy": policy,
            "next_round": later[0] if later else None,
            "history": history, "run": public_run(run) if run else None, "form": form_view(cp),
            "kind": render.output_kind(cp["node_output"]), "output_html": render.render_output(cp["node_output"]),
            "edit_text": render.as_text(cp["node_output"]),
            "sent_html": render.render_output(cp["output"])
            if cp["status"] != "open" and cp.get("action") == "edit" else None}


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
    if detail.get("detail") and not parts:  # a Dify form's delivery: what Dify said
        parts.append(str(detail["detail"]))
    if detail.get("run_status") and h.get("kind") in ("resumed", "resume_stuck", "resume_unconfirmed",
                                                           "resumed_as_stopped", "expired"):
        parts.append(f"run {detail['run_status']}")
    parts += policy_summary(h.get("kind") or "", detail)
    for key in ("round", "waited_s", "error", "status"):
        if detail.get(key) is not None and not parts:
            parts.append(f"{key}: {detail[key]}")
    return " · ".join(parts)


def policy_summary(kind: str, detail: dict[str, Any]) -> list[str]:
    """History rows of the policies: votes, claims, reassignments, reminders, escalations."""
    parts = []
    if detail.get("progress"):
        parts.append(str(detail["progress"]))
    if kind == "released" and detail.get("was"):
        parts.append(f"was claimed by {detail['was']}")
    if kind == "reassigned" and detail.get("to"):
        replaced = ", ".join(detail.get("replaced") or [])
        parts.append(f"to {detail['to']}" + (f", replacing {replaced}" if replaced else ""))
    if kind == "escalated":
        if detail.get("added"):
            parts.append(f"step {detail.get('step')}: added {', '.join(detail['added'])}")
        if detail.get("applied"):
            parts.append(f"step {detail.get('step')}: {detail['applied']} ({detail.get('outcome', '')})")
    if kind in ("reminder", "deadline_near") and detail.get("step") is not None:
        who = ", ".join(detail.get("assignees") or []) or "the reviewers of the app"
        parts.append(f"{'reminder ' + str(detail['step']) if kind == 'reminder' else 'deadline near'} to {who}")
    if kind in ("claimed", "released", "reassigned") and detail.get("note"):
        parts.append(f"note: {detail['note']}")
    return parts


# ---------------------------------------------------------------------- Dify forms
# delivery state → (color, label, what it means)
DELIVERY = {
    "pending": ("yellow", "delivery pending", "The decision is on its way to Dify."),
    "delivered": ("yellow", "delivered", "Dify took the form; waiting to see the run leave its pause."),
    "resumed": ("green", "resumed", "Dify resumed the run: it went on down the chosen branch."),
    "resume_stuck": ("red", "resume stuck", "Dify took the form but the run is still paused."),
    "resume_unconfirmed": ("red", "resume unconfirmed", "Dify took the form and says the run is running, but "
                           "nothing has moved since; a stop requested during the pause leaves a run like this."),
    "resumed_as_stopped": ("red", "resumed as stopped", "The run ended stopped right after the form was submitted."),
    "failed": ("red", "delivery failed", "Dify refused the form."),
    "expired": ("grey", "expired", "Dify closed the form before it was submitted; the run took its timeout branch."),
}
UNSETTLED = ("pending", "delivered", "resume_stuck", "resume_unconfirmed")


def delivery_view(cp: dict[str, Any]) -> dict[str, Any]:
    state = cp.get("delivery")
    if not state:
        if cp["status"] == "open":
            return {"state": "waiting", "color": "blue", "label": "waiting for a decision",
                    "text": "Nothing is sent to Dify until someone decides here."}
        return {"state": "none", "color": "grey", "label": "not sent", "text": "This form was never sent to Dify."}
    color, label, text = DELIVERY.get(state, ("grey", state.replace("_", " "), ""))
    return {"state": state, "color": color, "label": label, "text": text, "detail": cp.get("delivery_detail"),
            "at": cp.get("delivered_at") if state == "delivered" else cp.get("updated_at")}


def form_view(cp: dict[str, Any]) -> dict[str, Any] | None:
    """What the page shows of a Dify form checkpoint (never its token: `cp` is already safe)."""
    if cp.get("kind") != "dify-form":
        return None
    form = cp.get("form") or {}
    sent = cp.get("output") if isinstance(cp.get("output"), dict) and cp["status"] == "resolved" else None
    actions = []
    for i, a in enumerate(a for a in form.get("actions") or [] if isinstance(a, dict) and a.get("id")):
        action_id = str(a["id"])
        actions.append({"id": action_id, "title": a.get("title") or action_id,
                        "style": a.get("button_style") or "default",
                        "kind": render.form_action_kind(action_id), "key": str(i + 1) if i < 9 else "",
                        "btn": render.BUTTON_COLOR.get(a.get("button_style") or "default", "plain")})
    sent_action = next((a for a in actions if sent and a["id"] == sent.get("action")), None)
    expires = form.get("expiration_time")
    return {"html": render.form_html(form, (sent or {}).get("inputs")), "inputs": render.form_inputs(form),
            "actions": actions, "node_title": form.get("node_title") or cp["node_id"],
            "expires": float(expires) if isinstance(expires, (int, float)) else None,
            "display_in_ui": form.get("display_in_ui"), "delivery": delivery_view(cp),
            "sent": sent and {"action": sent.get("action"),
                              "title": sent_action["title"] if sent_action else sent.get("action"),
                              "inputs": sent.get("inputs") or {}}}


def form_pending(cps: Iterable[Mapping[str, Any]]) -> bool:
    """A form checkpoint that explains a pause: open, or decided and not yet seen resumed."""
    return any(c.get("kind") == "dify-form" and (c["status"] == "open" or c.get("delivery") in UNSETTLED) for c in cps)


def paused_without_token(run: Mapping[str, Any], cps: Iterable[Mapping[str, Any]]) -> bool:
    """Paused in Dify (a Human Input node) with no form checkpoint to decide: started outside dify-hitl,
    so no form token was ever seen."""
    return run.get("status") == "paused" and not form_pending(cps)


# ---------------------------------------------------------------------- runs
def waiting_runs(conn, scope: Scope) -> dict[tuple[str, str], int]:
    rows, _ = cp_store.listing(conn, apps=scope, status="open", limit=INBOX_LIMIT)
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["app"], r["workflow_run_id"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def run_color(run: dict[str, Any], waiting: bool) -> tuple[str, str]:
    if waiting and run["status"] in ("running", "paused"):
        return "blue", "waiting for a person"
    return RUN_COLOR.get(run["status"], "grey"), run["status"]


def runs(conn, scope: Scope, *, status: str = "", app: str = "", page: int = 1) -> dict[str, Any]:
    waiting = waiting_runs(conn, scope)
    offset = (max(page, 1) - 1) * RUNS_PAGE
    if status == "waiting":
        found = (run_store.get(conn, a, rid) for a, rid in waiting)
        rows = [r for r in found if r and (not app or r["app"] == app)]
        rows.sort(key=lambda r: r["tracked_at"], reverse=True)
        total, rows = len(rows), rows[offset:offset + RUNS_PAGE]
    else:
        rows, total = run_store.listing(conn, apps=scope, status=status or None, app=app or None, limit=RUNS_PAGE,
                                        offset=offset)
    shown = []
    for r in rows:
        key = (r["app"], r["id"])
        run = public_run(r)
        run["color"], run["label"] = run_color(run, key in waiting)
        run["open_checkpoints"] = waiting.get(key, 0)
        run["elapsed"] = run_elapsed(run)
        run["no_form_token"] = r["status"] == "paused" and paused_without_token(
            r, cp_store.listing(conn, apps={r["app"]}, run_id=r["id"], limit=50)[0])
        shown.append(run)
    q = select(runs_table.c.app).distinct()
    if scope is not None:
        q = q.where(runs_table.c.app.in_(sorted(scope)))
    apps = sorted(conn.execute(q).scalars())
    return {"rows": shown, "total": total, "page": max(page, 1), "pages": max(1, -(-total // RUNS_PAGE)),
            "apps": apps, "statuses": RUN_STATUSES}


def run_elapsed(run: dict[str, Any]) -> float | None:
    if run.get("elapsed_time") is not None:
        return run["elapsed_time"]
    if run.get("created_at") and run.get("finished_at"):
        return run["finished_at"] - run["created_at"]
    return None


def run(conn, run_id: str, scope: Scope) -> dict[str, Any] | None:
    row = run_store.find(conn, run_id, scope)
    if row is None:
        return None
    raw, _ = cp_store.listing(conn, apps={row["app"]}, run_id=run_id, limit=500)
    secrets = secrets_of(raw)
    cps = [safe(c) for c in reversed(raw)]  # oldest first
    waiting = any(c["status"] == "open" for c in cps)
    info = public_run(row)
    info["color"], info["label"] = run_color(info, waiting)
    info["elapsed"] = run_elapsed(info)
    nodes = []
    for n in run_store.nodes_of(conn, row["app"], row["id"]):
        state = node_state(n, row["status"], waiting)
        nodes.append({**{k: n.get(k) for k in ("id", "node_id", "node_type", "title", "status", "loop_index",
                                               "retries", "error", "elapsed_time", "started_at", "finished_at")},
                      "state": state, "color": RUN_COLOR.get(state, "grey"), "label": node_label(state)})
    for c in cps:
        c["color"], c["label"] = checkpoint_color(c), checkpoint_label(c)
        if c.get("kind") == "dify-form":
            c["delivery_view"] = delivery_view(c)
    return {"run": scrub(info, secrets), "nodes": scrub(nodes, secrets), "checkpoints": cps,
            "history": scrub(run_store.history_of(conn, row["app"], run_id)[-200:], secrets), "waiting": waiting,
            "no_form_token": paused_without_token(row, raw)}
