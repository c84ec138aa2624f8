"""A fake Feishu open platform: tenant_access_token, im/v1/messages (create, PATCH), interactive/v1/card/update,
and encrypted + signed card.action.trigger callbacks.

Follows open.feishu.cn: auth/v3/tenant_access_token/internal, im-v1/message/create and /patch
(Authorization: Bearer t-…, receive_id_type, msg_type interactive, content a JSON string, shared
cards need "update_multi": true, cards ≤ 30 KB), interactive/v1/card/update (token valid 30 min,
3 uses), card JSON 2.0 (no "action" tag; form buttons use form_action_type), card-callback-communication,
the Encrypt Key page (AES-256-CBC, key = SHA-256(encrypt key), IV first 16 bytes, base64) and
X-Lark-Signature = sha256(timestamp + nonce + encrypt_key + body).
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import time
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.requests import Request
from starlette.responses import Response

from services.notifier.channels.base import CallbackRequest
from services.notifier.channels.feishu import feishu_signature
from tests.fakes.server import FakeServer, Recorded, json_answer

APP_ID = "cli_a1b2c3d4e5"
APP_SECRET = "feishu-app-secret-9z8y7x"
VERIFICATION_TOKEN = "feishu-verification-tok-55"
ENCRYPT_KEY = "feishu-encrypt-key-kk11"
CARD_LIMIT = 30 * 1024


def card_problems(card: dict[str, Any]) -> list[str]:
    problems = []
    if card.get("schema") != "2.0":
        problems.append("schema must be 2.0")
    if not (card.get("config") or {}).get("update_multi"):
        problems.append("config.update_multi must be true to update a shared card")

    def walk(elements: list[dict[str, Any]], in_form: bool) -> None:
        for e in elements:
            if e.get("tag") == "action":
                problems.append('JSON 2.0 has no "action" tag')
            if e.get("tag") == "form":
                if in_form or not e.get("name"):
                    problems.append("a form needs a name and cannot nest")
                walk(e.get("elements") or [], True)
            if e.get("tag") in ("input", "button") and in_form and not e.get("name"):
                problems.append("components in a form need a name")
            if e.get("tag") == "button" and in_form and (e.get("behaviors") or not e.get("form_action_type")):
                problems.append("a button in a form has form_action_type and no behaviors")
            if e.get("tag") == "button" and not in_form and not e.get("behaviors"):
                problems.append("a button outside a form needs behaviors")
            if e.get("tag") == "input" and int(e.get("max_length", 1000)) > 1000:
                problems.append("input max_length is at most 1000")

    walk((card.get("body") or {}).get("elements") or [], False)
    return problems


class FakeFeishu(FakeServer):
    doc = "https://open.feishu.cn/document/server-docs/im-v1/message/create"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()
        self.messages: dict[str, dict[str, Any]] = {}
        self.update_tokens: dict[str, int] = {}  # delayed-update token -> uses left
        self.texts: list[dict[str, Any]] = []  # text messages: {"receive_id", "text"}
        self._ids = itertools.count(1)

    def routes(self):
        return [("POST", "/open-apis/auth/v3/tenant_access_token/internal", self.token),
                ("POST", "/open-apis/im/v1/messages", self.create),
                ("PATCH", "/open-apis/im/v1/messages/{mid}", self.patch),
                ("POST", "/open-apis/interactive/v1/card/update", self.card_update)]

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def issue_update_token(self) -> str:
        token = f"c-{os.urandom(8).hex()}"
        self.update_tokens[token] = 3
        return token

    async def token(self, request: Request, rec: Recorded) -> Response:
        body = rec.json
        if body.get("app_id") != APP_ID or body.get("app_secret") != APP_SECRET:
            return json_answer({"code": 10014, "msg": "app secret invalid"})
        token = f"t-{os.urandom(6).hex()}"
        self.tokens.add(token)
        return json_answer({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200})

    def _auth(self, rec: Recorded) -> Response | None:
        auth = rec.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return json_answer({"code": 99991663, "msg": "Invalid access token for authorization."}, 400)
        return None

    def _card(self, content: Any) -> tuple[dict[str, Any] | None, Response | None]:
        if not isinstance(content, str) or len(content.encode()) > CARD_LIMIT:
            return None, json_answer({"code": 230025, "msg": "content must be a JSON string of at most 30 KB"}, 400)
        card = json.loads(content)
        if problems := card_problems(card):
            return None, json_answer({"code": 230099, "msg": "; ".join(problems)}, 400)
        return card, None

    async def create(self, request: Request, rec: Recorded) -> Response:
        if refused := self._auth(rec):
            return refused
        body = rec.json
        if rec.query.get("receive_id_type") not in ("open_id", "union_id", "user_id", "email", "chat_id"):
            return json_answer({"code": 99992402, "msg": "field validation failed: receive_id_type"}, 400)
        if body.get("msg_type") == "text" and body.get("receive_id"):  # content: a JSON string {"text": …}
            text = json.loads(body.get("content") or "{}").get("text") if isinstance(body.get("content"), str) else None
            if not text:
                return json_answer({"code": 230001, "msg": "text content is required"}, 400)
            self.texts.append({"receive_id": body["receive_id"], "text": text})
            return json_answer({"code": 0, "msg": "success", "data": {"message_id": f"om_{next(self._ids):016x}",
                                                                       "msg_type": "text"}})
        if body.get("msg_type") != "interactive" or not body.get("receive_id"):
            return json_answer({"code": 99992402, "msg": "field validation failed"}, 400)
        card, refused = self._card(body.get("content"))
        if refused:
            return refused
        mid = f"om_{next(self._ids):016x}"
        self.messages[mid] = card
        return json_answer({"code": 0, "msg": "success", "data": {"message_id": mid, "msg_type": "interactive"}})

    async def patch(self, request: Request, rec: Recorded) -> Response:
        if refused := self._auth(rec):
            return refused
        mid = request.path_params["mid"]
        if mid not in self.messages:
            return json_answer({"code": 230011, "msg": "message not found"}, 400)
        card, refused = self._card(rec.json.get("content"))
        if refused:
            return refused
        self.messages[mid] = card
        return json_answer({"code": 0, "msg": "success", "data": {}})

    async def card_update(self, request: Request, rec: Recorded) -> Response:
        if refused := self._auth(rec):
            return refused
        body = rec.json
        left = self.update_tokens.get(body.get("token"), 0)
        if left <= 0:
            return json_answer({"code": 200810, "msg": "token expired or used up"}, 400)
        self.update_tokens[body["token"]] = left - 1
        if problems := card_problems(body.get("card") or {}):
            return json_answer({"code": 230099, "msg": "; ".join(problems)}, 400)
        self.messages[f"token:{body['token']}"] = body["card"]
        return json_answer({"code": 0, "msg": "success"})


# ---------------------------------------------------------------------- callbacks as Feishu sends them
def feishu_encrypt(encrypt_key: str, plaintext: bytes) -> str:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(hashlib.sha256(encrypt_key.encode()).digest()), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode()


def card_action_event(*, value: dict[str, Any] | None = None, name: str | None = None,
                      form_value: dict[str, Any] | None = None, open_id: str = "ou_alice",
                      message_id: str = "om_0000000000000001", event_id: str = "f7984f25108f8137722bb63cee927e66",
                      token: str = "c-295ee57216a5dc9de90fefd0aadb4b1d7d337fc7",
                      verification_token: str = VERIFICATION_TOKEN) -> dict[str, Any]:
    action: dict[str, Any] = {"tag": "button"}
    if value is not None:
        action["value"] = value
    if name is not None:
        action["name"] = name
    if form_value is not None:
        action["form_value"] = form_value
    return {"schema": "2.0",
            "header": {"event_id": event_id, "token": verification_token, "create_time": "1603977298000000",
                       "event_type": "card.action.trigger", "tenant_key": "2df73991750c1d", "app_id": APP_ID},
            "event": {"operator": {"tenant_key": "2df73991750c1d", "user_id": "867394", "open_id": open_id,
                                   "union_id": "on_cad4860e7af114fb4ff6c5d496d1dd76"},
                      "token": token, "action": action, "host": "im_message",
                      "context": {"open_message_id": message_id, "open_chat_id": "oc_5ad11d72b830411d72b836c20"}}}


def callback(data: dict[str, Any], *, encrypt_key: str | None = ENCRYPT_KEY, sign_key: str | None = None,
             timestamp: float | None = None, signed: bool = True) -> CallbackRequest:
    """The HTTP request Feishu sends: encrypted with the Encrypt Key and signed, when one is set."""
    plain = json.dumps(data).encode()
    if encrypt_key is None:
        return CallbackRequest("POST", "/callbacks/feishu", {"Content-Type": "application/json"}, {}, plain)
    body = json.dumps({"encrypt": feishu_encrypt(encrypt_key, plain)}).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        ts, nonce = str(int(time.time() if timestamp is None else timestamp)), os.urandom(6).hex()
        headers.update({"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                        "X-Lark-Signature": feishu_signature(ts, nonce, sign_key or encrypt_key, body)})
    return CallbackRequest("POST", "/callbacks/feishu", headers, {}, body)
