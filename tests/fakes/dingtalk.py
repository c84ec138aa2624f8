"""A fake DingTalk custom robot webhook (POST /robot/send) and signed robot callbacks.

Follows open.dingtalk.com/document/orgapp/custom-robot-access and the robot security settings page
(access_token, 加签 timestamp within 1 hour + sign = base64(HmacSHA256(secret, ts + "\\n" + secret)),
20 messages a minute → errcode 410100), the message type page (actionCard title + text + btns of
title/actionURL or singleTitle/singleURL; markdown title + text), and orgapp/receive-message for the
callback headers.
"""
from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.notifier.channels.base import CallbackRequest
from services.notifier.channels.dingtalk import dingtalk_sign
from tests.fakes.server import FakeServer, Recorded, json_answer

ACCESS_TOKEN = "dt-access-token-66aa77bb"
SECRET = "SEC0123456789abcdef-robot-secret"
APP_SECRET = "dingtalk-app-secret-zz99"
PER_MINUTE = 20


def message_problems(body: dict[str, Any]) -> list[str]:
    kind = body.get("msgtype")
    part = body.get(kind) if isinstance(kind, str) else None
    if kind not in ("text", "markdown", "actionCard", "link", "feedCard") or not isinstance(part, dict):
        return ["msgtype and its part are required"]
    problems = []
    if kind in ("markdown", "actionCard"):
        if not part.get("title") or not part.get("text"):
            problems.append(f"{kind} needs title and text")
        if len(part.get("title", "")) > 64 or len(part.get("text", "")) > 5000:
            problems.append("title ≤ 64 and text ≤ 5000 characters")
    if kind == "actionCard":
        btns = part.get("btns")
        single = part.get("singleTitle") and part.get("singleURL")
        if not single and not (btns and all(b.get("title") and b.get("actionURL") for b in btns)):
            problems.append("actionCard needs singleTitle+singleURL or btns of title+actionURL")
    return problems


class FakeDingTalk(FakeServer):
    doc = "https://open.dingtalk.com/document/orgapp/custom-robot-access"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self._sent_at: list[float] = []
        self.per_minute = PER_MINUTE  # the robot's documented limit (tests sending more may raise it)

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/robot/send?access_token={ACCESS_TOKEN}"

    def routes(self):
        return [("POST", "/robot/send", self.send)]

    async def send(self, request: Request, rec: Recorded) -> Response:
        q = rec.query
        if q.get("access_token") != ACCESS_TOKEN:
            return json_answer({"errcode": 300001, "errmsg": "token is not exist"})
        ts = q.get("timestamp", "")
        if (not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000
                or q.get("sign") != dingtalk_sign(SECRET, ts)):
            return json_answer({"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com]"})
        now = time.time()
        self._sent_at = [t for t in self._sent_at if now - t < 60]
        if len(self._sent_at) >= self.per_minute:
            return json_answer({"errcode": 410100, "errmsg": "send too fast, exceed 20 times per minute"})
        try:
            body = json.loads(rec.body)
        except ValueError:
            return json_answer({"errcode": 400102, "errmsg": "body is not json"})
        if problems := message_problems(body):
            return json_answer({"errcode": 400105, "errmsg": "; ".join(problems)})
        self._sent_at.append(now)
        self.messages.append(body)
        return json_answer({"errcode": 0, "errmsg": "ok"})


def robot_callback(text: str = "@review approve?", *, app_secret: str = APP_SECRET,
                   timestamp_ms: int | None = None) -> CallbackRequest:
    ts = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    body = json.dumps({"msgtype": "text", "text": {"content": text}, "msgId": "msgXYZ", "senderStaffId": "manager4711",
                       "conversationId": "cidABC==", "conversationType": "2", "senderNick": "Alice"}).encode()
    return CallbackRequest("POST", "/callbacks/dingtalk", {"Content-Type": "application/json", "timestamp": ts,
                                                           "sign": dingtalk_sign(app_secret, ts)}, {}, body)
