"""From a checkpoint (as `shared.views.public_view` shows it on `hitl.events`) to a platform-neutral
`Card`: title, message, output preview, fields, the decision buttons, and once resolved the outcome
line with the buttons gone."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.notifier.channels.base import Button, ButtonStyle, Card, CardState, Field, LinkPolicy
from shared.models import ABORT_ACTION_IDS

# Dify form action ids that mean "stop": the one vocabulary the decider maps to abort.
ABORT_FORM_ACTIONS = ABORT_ACTION_IDS
PREVIEW_SOURCE_LIMIT = 20_000  # never render more than this much output before a channel's own limit

STANDARD_BUTTONS = (
    ("approve", "Approve", ButtonStyle.primary, False),
    ("revise", "Revise…", ButtonStyle.default, True),
    ("edit", "Edit output…", ButtonStyle.default, True),
    ("abort", "Abort", ButtonStyle.danger, False),
)
OUTCOME_STATE = {"approve": CardState.approved, "revise": CardState.revised, "edit": CardState.edited,
                 "abort": CardState.aborted}
OUTCOME_VERB = {CardState.approved: "Approved", CardState.revised: "Sent back for revision",
                CardState.edited: "Edited", CardState.aborted: "Aborted", CardState.expired: "Timed out",
                CardState.cancelled: "Cancelled"}

# (checkpoint id, action, form action or None) -> the URL of a signed link for that button
LinkMaker = Callable[[str, str, str | None], str]


def pack_value(checkpoint_id: str, action: str, form_action: str | None = None) -> str:
    """The opaque button value platforms hand back: `<checkpoint id>|<action>[|<form action>]`.
    Callbacks are authenticated by the platform's signature, so the value itself needs no MAC."""
    return "|".join([checkpoint_id, action] + ([form_action] if form_action else []))


def unpack_value(value: str) -> tuple[str, str, str | None]:
    parts = value.split("|")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError("not a button value of ours")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def preview_text(node_output: Any) -> str:
    """The node output as readable text: strings as they are, anything else as indented JSON."""
    if node_output is None:
        return ""
    if isinstance(node_output, str):
        text = node_output
    else:
        text = json.dumps(node_output, ensure_ascii=False, indent=2, default=str)
    return text[:PREVIEW_SOURCE_LIMIT]


def utc_clock(ts: float | None) -> str:
    if not ts:
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def outcome_line(cp: dict[str, Any]) -> tuple[CardState, str]:
    """How a checkpoint ended, in one line: "Approved by alice via slack at 2025-01-02 12:03 UTC"."""
    status = cp.get("status")
    if status == "expired":
        state = CardState.expired
    elif status == "cancelled":
        state = CardState.cancelled
    else:
        state = OUTCOME_STATE.get(str(cp.get("action")), CardState.approved)
    line = OUTCOME_VERB[state]
    if status == "expired" and cp.get("action"):
        line += f" ({cp['action']} applied)"
    if cp.get("decided_by") and status == "resolved":
        line += f" by {cp['decided_by']}"
    if cp.get("decision_channel") and status == "resolved":
        line += f" via {cp['decision_channel']}"
    line += f" at {utc_clock(cp.get('resolved_at') or cp.get('updated_at'))}"
    return state, line


def _buttons(cp: dict[str, Any]) -> list[tuple[str, str, ButtonStyle, bool, str | None]]:
    """(action, label, style, needs text, form action) for each decision this checkpoint offers."""
    if cp.get("kind") != "dify-form":
        return [(a, label, style, text, None) for a, label, style, text in STANDARD_BUTTONS]
    out: list[tuple[str, str, ButtonStyle, bool, str | None]] = []
    for fa in (cp.get("form") or {}).get("actions") or []:
        fid = str(fa.get("id") or "")
        if not fid:
            continue
        aborting = fid.lower() in ABORT_FORM_ACTIONS
        style = ButtonStyle.danger if aborting else (
            ButtonStyle.primary if fa.get("button_style") == "primary" else ButtonStyle.default)
        out.append(("abort" if aborting else "approve", str(fa.get("title") or fid), style, False, fid))
    if any(i.get("type") == "paragraph" for i in (cp.get("form") or {}).get("inputs") or []):
        out.append(("edit", "Edit output…", ButtonStyle.default, True, None))
    return out


def card_from_checkpoint(cp: dict[str, Any], *, link_policy: LinkPolicy = LinkPolicy.none,
                         make_link: LinkMaker | None = None, console_url: str | None = None) -> Card:
    """The card for a checkpoint as an event carries it. Buttons that `link_policy` says must be
    links get their URL from `make_link` (signed links, bound to the reviewer by the caller)."""
    cid = str(cp["id"])
    fields = [Field("App", str(cp.get("app") or "?")), Field("Node", str(cp.get("node_id") or "?")),
              Field("Round", str(cp.get("round") or 1))]
    if cp.get("deadline"):
        fields.append(Field("Deadline", utc_clock(cp["deadline"])))
    if cp.get("assignees"):
        fields.append(Field("Assignees", ", ".join(map(str, cp["assignees"]))))
    title = f"Review needed: {cp.get('node_id') or 'checkpoint'}"
    form = cp.get("form") or {}
    message = str(cp.get("message") or form.get("form_content") or "")
    preview = preview_text(cp.get("node_output"))
    if cp.get("status") not in (None, "open"):
        state, line = outcome_line(cp)
        return Card(cid, title, message, preview, tuple(fields), (), state, line, console_url)
    buttons = []
    for action, label, style, needs_text, form_action in _buttons(cp):
        as_link = link_policy is LinkPolicy.all or (link_policy is LinkPolicy.text and needs_text)
        url = None
        if as_link:
            if make_link is None:
                raise ValueError(f"{link_policy.value} link policy needs make_link for {action}")
            url = make_link(cid, action, form_action)
        buttons.append(Button(action, label, style, pack_value(cid, action, form_action), url, needs_text))
    if console_url:
        buttons.append(Button("open", "Open in console", ButtonStyle.default, "", console_url))
    return Card(cid, title, message, preview, tuple(fields), tuple(buttons), CardState.open, None, console_url)
