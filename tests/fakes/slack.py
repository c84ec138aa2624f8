"""A fake Slack Web API (chat.postMessage, chat.update, views.open) and signed interactivity payloads.

Follows https://api.slack.com/methods/chat.postMessage, .../chat.update, .../views.open (bearer
token, `ok`/`error` answers: invalid_auth, channel_not_found, message_not_found, invalid_blocks,
expired_trigger_id), https://api.slack.com/reference/block-kit/blocks (sizes checked below),
https://api.slack.com/reference/interaction-payloads/block-actions-payload, .../views, and
https://api.slack.com/authentication/verifying-requests-from-slack for the signed callbacks.
"""
from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from services.notifier.channels.base import CallbackRequest
from services.notifier.channels.slack import slack_signature
from tests.fakes.server import FakeServer, Recorded, json_answer

BOT_TOKEN = "xoxb-fake-1111-2222-secretpart"
SIGNING_SECRET = "slack-signing-secret-0f0f0f0f"


def block_problems(blocks: list[dict[str, Any]], max_blocks: int = 50) -> list[str]:
    """What real Slack would refuse as invalid_blocks (the documented limits we rely on)."""
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"{len(blocks)} blocks > {max_blocks}")
    for b in blocks:
        kind = b.get("type")
        text = (b.get("text") or {}).get("text", "")
        if kind == "header" and ((b.get("text") or {}).get("type") != "plain_text" or len(text) > 150):
            problems.append("header must be plain_text of at most 150 chars")
        if kind == "section":
            if len(text) > 3000:
                problems.append("section text > 3000")
            fields = b.get("fields") or []
            if len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields):
                problems.append("section fields: at most 10 of 2000 chars")
            if not text and not fields:
                problems.append("section needs text or fields")
        if kind == "actions":
            elements = b.get("elements") or []
            ids = [e.get("action_id") for e in elements]
            if not elements or len(elements) > 25 or len(set(ids)) != len(ids):
                problems.append("actions: 1-25 elements with unique action_ids")
            for e in elements:
                if len(e["text"]["text"]) > 75 or len(e.get("value", "")) > 2000 or len(e.get("action_id", "")) > 255:
                    problems.append("button text/value/action_id too long")
                if e.get("style") not in (None, "primary", "danger"):
                    problems.append("button style must be primary or danger")
        if kind == "input" and len((b.get("element") or {}).get("initial_value", "")) > 3000:
            problems.append("input initial value > 3000")
    return problems


class FakeSlack(FakeServer):
    doc = "https://api.slack.com/methods/chat.postMessage"

    def __init__(self, channels: tuple[str, ...] = ("C0REVIEW", "U0ALICE")) -> None:
        super().__init__()
        self.channels = set(channels)
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.posted: list[dict[str, Any]] = []  # every chat.postMessage accepted, in order, with its ts
        self.triggers: dict[str, float] = {}  # trigger_id -> issued at (valid 3 s, once)
        self.views: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []  # chat.postEphemeral: (channel, user, text)
        self._ts = itertools.count(1)

    @property
    def api_base_url(self) -> str:
        return f"{self.base_url}/api"

    def routes(self):
        return [("POST", "/api/chat.postMessage", self.post_message), ("POST", "/api/chat.update", self.update),
                ("POST", "/api/views.open", self.views_open),
                ("POST", "/api/chat.postEphemeral", self.post_ephemeral)]

    def issue_trigger(self) -> str:
        trigger = f"{next(self._ts)}.4744562.{int(time.time())}"
        self.triggers[trigger] = time.time()
        return trigger

    def _auth(self, rec: Recorded) -> dict[str, Any] | None:
        if rec.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
            return {"ok": False, "error": "invalid_auth" if rec.headers.get("authorization") else "not_authed"}
        if not rec.headers.get("content-type", "").startswith("application/json"):
            return {"ok": False, "error": "invalid_arguments"}
        return None

    async def post_message(self, request: Request, rec: Recorded) -> Response:
        if refused := self._auth(rec):
            return json_answer(refused)
        body = rec.json
        if body.get("channel") not in self.channels:
            return json_answer({"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return json_answer({"ok": False, "error": "no_text"})
        if problems := block_problems(body.get("blocks") or []):
            return json_answer({"ok": False, "error": "invalid_blocks", "errors": problems})
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        self.messages[(body["channel"], ts)] = body
        self.posted.append({**body, "ts": ts})
        return json_answer({"ok": True, "channel": body["channel"], "ts": ts, "message": {"text": body.get("text")}})

    async def update(self, request: Request, rec: Recorded) -> Response:
        if refused := self._auth(rec):
            return json_answer(refused)
        body = rec.json
        key = (body.get("channel"), body.get("ts"))
        if key not in self.messages:
            return json_answer({"ok": False, "error": "message_not_found"})
        if problems := block_problems(body.get("blocks") or []):
            return json_answer({"ok": False, "error": "invalid_blocks", "errors": problems})
        self.messages[key] = body
        return json_answer({"ok": True, "channel": key[0], "ts": key[1], "text": body.get("text")})

    async def post_ephemeral(self, request: Request, rec: Recorded) -> Response:
        """https://api.slack.com/methods/chat.postEphemeral: channel + user + text (or blocks)."""
        if refused := self._auth(rec):
            return json_answer(refused)
        body = rec.json
        if body.get("channel") not in self.channels:
            return json_answer({"ok": False, "error": "channel_not_found"})
        if not body.get("user"):
            return json_answer({"ok": False, "error": "user_not_in_channel"})
        if not body.get("text") and not body.get("blocks"):
            return json_answer({"ok": False, "error": "no_text"})
        self.ephemerals.append(body)
        return json_answer({"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"})

    async def views_open(self, request: Request, rec: Recorded) -> Response:
        if refused := self._auth(rec):
            return json_answer(refused)
        body = rec.json
        issued = self.triggers.pop(body.get("trigger_id"), None)
        if issued is None or time.time() - issued > 3:
            return json_answer({"ok": False, "error": "expired_trigger_id"})
        view = body.get("view") or {}
        if (view.get("type") != "modal" or len(view.get("title", {}).get("text", "")) > 24
                or len(view.get("private_metadata", "")) > 3000 or block_problems(view.get("blocks") or [], 100)):
            return json_answer({"ok": False, "error": "invalid_arguments"})
        self.views.append(view)
        return json_answer({"ok": True, "view": {"id": f"V{len(self.views):08d}", **view}})


# ---------------------------------------------------------------------- signed callbacks
def signed_request(body: bytes, content_type: str, *, secret: str = SIGNING_SECRET,
                   timestamp: float | None = None) -> CallbackRequest:
    ts = str(int(time.time() if timestamp is None else timestamp))
    return CallbackRequest("POST", "/callbacks/slack", {
        "Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(secret, ts, body)}, {}, body)


def interaction(payload: dict[str, Any], **kw: Any) -> CallbackRequest:
    """An interactivity request as Slack sends it: form-encoded `payload=<json>`, signed."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return signed_request(body, "application/x-www-form-urlencoded", **kw)


def block_actions(value: str, action_id: str, *, user: str = "U0ALICE", channel: str = "C0REVIEW",
                  message_ts: str = "1700000000.000001", action_ts: str = "1700000001.123456",
                  trigger_id: str = "123.456.abc") -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user, "username": "alice", "team_id": "T0001"},
            "api_app_id": "A0001", "trigger_id": trigger_id,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "channel": {"id": channel, "name": "review"}, "message": {"ts": message_ts, "type": "message"},
            "response_url": "https://hooks.slack.com/actions/T0001/1/xyz",
            "actions": [{"type": "button", "action_id": action_id, "block_id": "hitl_actions", "value": value,
                         "text": {"type": "plain_text", "text": "x"}, "action_ts": action_ts}]}


def view_submission(view: dict[str, Any], text: str, *, user: str = "U0ALICE",
                    view_id: str = "V00000001") -> dict[str, Any]:
    return {"type": "view_submission", "user": {"id": user, "username": "alice"}, "api_app_id": "A0001",
            "view": {**view, "id": view_id, "hash": "1700000002.abcd",
                     "state": {"values": {"hitl_text": {"text": {"type": "plain_text_input", "value": text}}}}}}
