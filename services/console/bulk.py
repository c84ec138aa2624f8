"""One decision for several checkpoints, chosen in the inbox: first a preview that lists exactly what
would be decided and whether the decider would take each one (the same preview as
`POST /v1/checkpoints/bulk-decision` with `preview: true`, with the reason for each it would refuse),
then apply: each ticked checkpoint decided on its own — its own DecisionSubmitted with its own idempotency
key (`bulk:<bulk id>:<checkpoint id>`, so sending the same apply twice decides nothing twice) and its
own history row — answered per item: applied, voted, queued, or refused with the code.

JSON for a script (`Accept: application/json`), a page otherwise: the inbox's "Decide selected…"
form posts here and works without JavaScript."""
from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.console import views
from services.console.auth import Session, wants_json
from services.console.gates import gate
from services.console.pages import read, scope_of
from services.console.posts import check_csrf, text_of
from services.console.web import BadRequest, json_error, read_form, render_page
from shared.broker import BrokerError
from shared.limits import BULK_DECISION_LIMIT
from shared.logs import get_logger
from shared.models import ABORT_ACTION_IDS, Action, DecisionSubmitted
from shared.settings import Settings
from shared.store import checkpoints as cp_store
from shared.views import valid_id

log = get_logger(__name__)
BULK_LIMIT = BULK_DECISION_LIMIT
BULK_CONCURRENCY = 16
ACTIONS = ("approve", "revise", "abort")
ACTION_WORDS = {"approve": "Approve", "revise": "Revise", "abort": "Abort"}
FORM_ACTION_IDS = {"approve": ("approve",), "revise": ("revise",), "abort": ABORT_ACTION_IDS}


@dataclass(frozen=True)
class BulkRequest:
    ids: list[str]
    action: str
    feedback: str | None
    reason: str | None
    preview: bool
    bulk_id: str

    @classmethod
    def of(cls, form: dict[str, Any]) -> BulkRequest:
        ids = form.get("ids") or []  # a form's checkboxes arrive as a list (read_form), JSON must send one
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadRequest(400, "invalid_field", "ids: a list of checkpoint ids")
        ids = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
        if not ids:
            raise BadRequest(422, "nothing_selected", "Select at least one checkpoint.")
        if len(ids) > BULK_LIMIT:
            raise BadRequest(400, "too_many", f"At most {BULK_LIMIT} checkpoints at once.")
        bad = next((i for i in ids if not valid_id(i)), None)
        if bad is not None:
            raise BadRequest(400, "invalid_field", f"{bad[:80]!r} is not a checkpoint id")
        action = text_of(form, "action")
        if action not in ACTIONS:
            raise BadRequest(400, "invalid_field", "action: approve, revise or abort (an edit is one checkpoint's)")
        feedback, reason = text_of(form, "feedback").strip(), text_of(form, "reason").strip()
        if action == "revise" and not feedback:
            raise BadRequest(422, "feedback_required", "Revise needs feedback: it goes to every next round.")
        if action == "abort" and not reason:
            raise BadRequest(422, "reason_required", "Say why you abort: the reason goes back to each workflow.")
        preview = form.get("preview") in (True, "1", "true", "on")
        bulk_id = text_of(form, "bulk_id")
        if not re.fullmatch(r"[0-9a-f]{12}", bulk_id):
            bulk_id = uuid.uuid4().hex[:12]
        return cls(ids, action, feedback if action == "revise" else None, reason if action == "abort" else None,
                   preview, bulk_id)


def form_refusal(cp: dict[str, Any], action: str) -> tuple[str, str] | None:
    """What the decider would say about this action on a Dify form without a chosen form action: it
    takes the form's own action of that name, with the form's default inputs."""
    form = cp.get("form") or {}
    ids = [a.get("id") for a in form.get("actions") or [] if isinstance(a, dict)]
    if not any(i in ids for i in FORM_ACTION_IDS[action]):
        return "action_required", f"The form has no {action} action ({', '.join(map(str, ids)) or 'none'})."
    defaults = form.get("resolved_default_values") or {}
    names = [i.get("output_variable_name") for i in form.get("inputs") or [] if isinstance(i, dict)]
    missing = [n for n in names if defaults.get(n) in (None, "")]
    if missing:
        return "missing_inputs", f"The form's inputs {', '.join(map(str, missing))} have no value: decide it alone."
    return None


def preview_item(settings: Settings, session: Session, cp: dict[str, Any], action: str) -> dict[str, Any]:
    access = gate(settings, session, cp)
    code, why = access.code_of(action), access.why(action)
    if not why and cp.get("kind") == "dify-form":
        code, why = form_refusal(cp, action) or ("", "")
    tally = cp.get("tally") or {}
    vote = ""
    if not why and access.quorum > 1:
        approved = len(tally.get("approved") or [])
        vote = (f"counts as one vote of {access.quorum} needed ({approved} approved so far)" if action == "approve"
                else "a reject decides it at once" if (cp.get("policy") or {}).get("approval", {}).get(
                    "reject_wins", True) else "counts as one vote against")
    return {"id": cp["id"], "app": cp["app"], "node_id": cp["node_id"], "round": cp["round"], "kind": cp.get("kind"),
            "workflow_run_id": cp["workflow_run_id"], "message": cp.get("message"), "deadline": cp["deadline"],
            "assignees": cp.get("assignees") or [], "claimed_by": cp.get("claimed_by"),
            "may_decide": not why, "code": code or None, "reason": why or None, "vote": vote or None}


def closed_item(cp: dict[str, Any]) -> dict[str, Any]:
    """A selected checkpoint that was decided (or expired, cancelled) meanwhile."""
    label = views.checkpoint_label(cp) + (f" by {cp['decided_by']}" if cp.get("decided_by") else "") + (
        f" via {cp['decision_channel']}" if cp.get("decision_channel") else "")
    return {"id": cp["id"], "app": cp["app"], "node_id": cp["node_id"], "round": cp["round"],
            "workflow_run_id": cp["workflow_run_id"], "message": cp.get("message"), "status": cp["status"],
            "label": label}


async def bulk_decision(request: Request) -> Response:
    session, state = request.state.session, request.app.state
    try:
        form = await read_form(request, state.settings.body_limit_bytes, lists=("ids",))
        check_csrf(request, form)
        bulk = BulkRequest.of(form)
    except BadRequest as exc:
        if wants_json(request) or exc.status == 403:
            return json_error(exc.status, exc.code, exc.message)
        return render_page(request, "bulk.html", status=exc.status, scope="bulk", open_count="–", error=exc.message,
                           bulk=None, items=[], closed=[], missing=[], results=None)
    scope = scope_of(request)

    def query(conn) -> tuple[list[dict[str, Any]], int]:
        found = (cp_store.get(conn, cid, apps=scope) for cid in bulk.ids)
        return [views.safe(dict(cp)) for cp in found if cp is not None], views.open_count(conn, scope)

    found, open_count = await read(request, query)
    rows = [cp for cp in found if cp["status"] == "open"]
    closed = [closed_item(cp) for cp in found if cp["status"] != "open"]
    missing = [cid for cid in bulk.ids if cid not in {c["id"] for c in found}]
    items = [preview_item(state.settings, session, cp, bulk.action) for cp in rows]
    if bulk.preview:
        body = {"preview": True, "bulk_id": bulk.bulk_id, "action": bulk.action, "count": len(items),
                "may_decide": sum(1 for i in items if i["may_decide"]), "checkpoints": items,
                "closed": closed, "not_found": missing}
        if wants_json(request):
            return JSONResponse(body)
        return render_page(request, "bulk.html", scope="bulk", open_count=open_count, bulk=bulk, items=items,
                           closed=closed, missing=missing, results=None, words=ACTION_WORDS)
    # Decided since the preview: sent all the same, so that the decider says who won (409 already_resolved)
    # and the history keeps the attempt, as for a late click on the checkpoint page.
    results = await apply(request, session, bulk, found)
    open_count = await read(request, lambda conn: views.open_count(conn, scope))  # after what was just decided
    results += [{"checkpoint_id": cid, "status": "refused", "code": "not_found",
                 "message": "no such checkpoint, or not one you may see"} for cid in missing]
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    log.info("console.bulk_decision", bulk_id=bulk.bulk_id, action=bulk.action, reviewer=session.name, **counts)
    if wants_json(request):
        return JSONResponse({"bulk_id": bulk.bulk_id, "action": bulk.action, "counts": counts, "results": results})
    shown = {i["id"]: i for i in items + closed}
    results = [{**r, "item": shown.get(r["checkpoint_id"])} for r in results]
    return render_page(request, "bulk.html", scope="bulk", open_count=open_count, bulk=bulk, items=items,
                       closed=closed, missing=missing, results=results, counts=counts, words=ACTION_WORDS)


async def apply(request: Request, session: Session, bulk: BulkRequest,
                rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    state = request.app.state
    limit = asyncio.Semaphore(BULK_CONCURRENCY)
    groups = list(session.reviewer.groups) if session.method == "oidc" else None

    async def one(cp: dict[str, Any]) -> dict[str, Any]:
        decision = DecisionSubmitted(checkpoint_id=cp["id"], action=Action(bulk.action), feedback=bulk.feedback,
                                     reason=bulk.reason, actor=session.name, channel="console", actor_groups=groups,
                                     idempotency_key=f"bulk:{bulk.bulk_id}:{cp['id']}")
        async with limit:
            try:
                reply = await state.replies.submit_decision(decision, state.settings.decision_reply_timeout_s)
            except BrokerError:
                return {"checkpoint_id": cp["id"], "status": "not_queued", "code": "broker_unavailable",
                        "message": "could not be queued; try again"}
        if reply is None:
            return {"checkpoint_id": cp["id"], "status": "accepted", "decision_id": decision.id,
                    "message": "queued: the decider has not answered yet"}
        if reply.outcome in ("applied", "voted"):
            return {"checkpoint_id": cp["id"], "status": reply.outcome, "decision_id": decision.id,
                    "progress": (reply.progress or {}).get("progress")}
        won = reply.winning or {}
        message = (f"already decided: {won.get('action')} by {won.get('decided_by')}"
                   + (f" via {won['channel']}" if won.get("channel") else "")) if won else reply.error_message
        return {"checkpoint_id": cp["id"], "status": "refused", "code": reply.error_code, "message": message,
                "decision_id": decision.id}

    return list(await asyncio.gather(*(one(cp) for cp in rows)))
