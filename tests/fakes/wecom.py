"""A fake WeCom server API (gettoken, message/send with template_card, update_template_card) and
encrypted callbacks as WeCom sends them.

Follows developer.work.weixin.qq.com/document/path/91039 (gettoken), 90236 (template_card
button_interaction: task_id ≤ 128 bytes of [0-9A-Za-z_-@], unique; 1–6 buttons; key ≤ 1024 bytes;
type 1 needs url; horizontal_content_list ≤ 6; answer msgid + response_code), 94888
(update_template_card: response_code single use, 72 h), 90930/90858 (callback URL check and
template_card_event XML) and 91144 (msg_signature, AES-256-CBC, PKCS#7 32-byte blocks).
"""
from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.notifier.channels.base import CallbackRequest
from services.notifier.channels.wecom import wecom_encrypt, wecom_signature
from tests.fakes.server import FakeServer, Recorded, json_answer

# The values of WeCom's own sample (callback/Sample.py of the official library linked from 91144).
SAMPLE_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
SAMPLE_AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
SAMPLE_CORP_ID = "ww1436e0e65a779aee"

CORP_ID = "ww0000fakecorp01"
CORP_SECRET = "wecom-corp-secret-abcdef"
AGENT_ID = "1000002"
TOKEN = "wecomCallbackToken77"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")


def template_card_problems(card: dict[str, Any]) -> list[str]:
    problems = []
    kind = card.get("card_type")
    if kind not in ("button_interaction", "text_notice"):
        problems.append("card_type")
    if not (card.get("main_title") or {}).get("title"):
        problems.append("main_title.title is required")
    if len(card.get("horizontal_content_list") or []) > 6:
        problems.append("horizontal_content_list has at most 6 items")
    if kind == "button_interaction":
        if not TASK_ID.match(str(card.get("task_id", ""))):
            problems.append("task_id: 1-128 bytes of digits, letters and _-@")
        buttons = card.get("button_list") or []
        if not 1 <= len(buttons) <= 6:
            problems.append("button_list has 1 to 6 buttons")
        for b in buttons:
            if b.get("type") == 1 and not b.get("url"):
                problems.append("a type 1 button needs a url")
            if b.get("type", 0) == 0 and not (b.get("key") and len(b["key"].encode()) <= 1024):
                problems.append("a callback button needs a key of at most 1024 bytes")
    if kind == "text_notice" and not (card.get("card_action") or {}).get("type"):
        problems.append("text_notice needs card_action")
    return problems


class FakeWeCom(FakeServer):
    doc = "https://developer.work.weixin.qq.com/document/path/90236"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()
        self.task_ids: set[str] = set()
        self.response_codes: dict[str, float] = {}  # unused code -> issued at
        self.cards: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.texts: list[dict[str, Any]] = []  # msgtype text (90236: text.content ≤ 2048 bytes)
        self.codes_by_task: dict[str, str] = {}  # the response_code each sent card's answer carried
        self._ids = itertools.count(1)

    def routes(self):
        return [("GET", "/cgi-bin/gettoken", self.gettoken), ("POST", "/cgi-bin/message/send", self.send),
                ("POST", "/cgi-bin/message/update_template_card", self.update)]

    def issue_response_code(self) -> str:
        code = f"rc_{os.urandom(6).hex()}"
        self.response_codes[code] = time.time()
        return code

    async def gettoken(self, request: Request, rec: Recorded) -> Response:
        if rec.query.get("corpid") != CORP_ID or rec.query.get("corpsecret") != CORP_SECRET:
            return json_answer({"errcode": 40001, "errmsg": "invalid credential"})
        token = f"at_{os.urandom(8).hex()}"
        self.tokens.add(token)
        return json_answer({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def _refused(self, rec: Recorded) -> Response | None:
        if rec.query.get("access_token") not in self.tokens:
            return json_answer({"errcode": 40014, "errmsg": "invalid access_token"})
        if rec.json.get("agentid") != int(AGENT_ID):
            return json_answer({"errcode": 40056, "errmsg": "invalid agentid"})
        return None

    async def send(self, request: Request, rec: Recorded) -> Response:
        if refused := self._refused(rec):
            return refused
        body = rec.json
        if body.get("msgtype") == "text" and body.get("touser"):
            content = (body.get("text") or {}).get("content") or ""
            if not content or len(content.encode()) > 2048:
                return json_answer({"errcode": 44004, "errmsg": "empty or too long content"})
            self.texts.append(body)
            return json_answer({"errcode": 0, "errmsg": "ok", "msgid": f"msg{next(self._ids)}"})
        if body.get("msgtype") != "template_card" or not any(body.get(k) for k in ("touser", "toparty", "totag")):
            return json_answer({"errcode": 40008, "errmsg": "invalid message type or no receiver"})
        card = body.get("template_card") or {}
        if problems := template_card_problems(card):
            return json_answer({"errcode": 40058, "errmsg": "; ".join(problems)})
        if card.get("task_id") in self.task_ids:
            return json_answer({"errcode": 40058, "errmsg": "task_id duplicated"})
        self.task_ids.add(card.get("task_id"))
        self.cards.append(card)
        code = self.issue_response_code()
        self.codes_by_task[card["task_id"]] = code
        return json_answer({"errcode": 0, "errmsg": "ok", "msgid": f"msg{next(self._ids)}", "response_code": code})

    async def update(self, request: Request, rec: Recorded) -> Response:
        if refused := self._refused(rec):
            return refused
        body = rec.json
        issued = self.response_codes.pop(body.get("response_code"), None)
        if issued is None or time.time() - issued > 72 * 3600:
            return json_answer({"errcode": 40058, "errmsg": "response_code invalid or used"})
        if not (body.get("userids") or body.get("partyids") or body.get("tagids") or body.get("atall")):
            return json_answer({"errcode": 40058, "errmsg": "no receiver to update"})
        if problems := template_card_problems(body.get("template_card") or {}):
            return json_answer({"errcode": 40058, "errmsg": "; ".join(problems)})
        self.updates.append(body)
        return json_answer({"errcode": 0, "errmsg": "ok"})


# ---------------------------------------------------------------------- callbacks as WeCom sends them
def signed_query(encrypted: str, *, token: str = TOKEN, timestamp: float | None = None) -> dict[str, str]:
    ts, nonce = str(int(time.time() if timestamp is None else timestamp)), str(int.from_bytes(os.urandom(4), "big"))
    return {"msg_signature": wecom_signature(token, ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}


def url_check(echo: str = "1288432023552776189", **kw: Any) -> CallbackRequest:
    echostr = wecom_encrypt(kw.pop("aes_key", AES_KEY), echo.encode(), kw.pop("corp_id", CORP_ID))
    return CallbackRequest("GET", "/callbacks/wecom", {}, {**signed_query(echostr, **kw), "echostr": echostr}, b"")


def template_card_event(event_key: str, *, user: str = "alice", task: str = "hitl_task_1",
                        response_code: str = "rc_from_click", create_time: int = 1700000100,
                        aes_key: str = AES_KEY, corp_id: str = CORP_ID, **kw: Any) -> CallbackRequest:
    inner = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
             f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             f"<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{event_key}]]></EventKey>"
             f"<TaskId><![CDATA[{task}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>"
             f"<ResponseCode><![CDATA[{response_code}]]></ResponseCode><AgentID>{AGENT_ID}</AgentID></xml>")
    encrypted = wecom_encrypt(aes_key, inner.encode(), corp_id)
    body = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><AgentID><![CDATA[{AGENT_ID}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
    return CallbackRequest("POST", "/callbacks/wecom", {"Content-Type": "text/xml"}, signed_query(encrypted, **kw),
                           body)
