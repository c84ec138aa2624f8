"""WeCom (企业微信): an app message of type `template_card` / `button_interaction`, clicks through the
app's encrypted callback (`template_card_event`), the card replaced with `update_template_card`
using the single-use `response_code`.

A template card has no text input, so revise/edit are link buttons (button type 1) to the
notifier's confirmation page, where the text is typed.

Docs followed (developer.work.weixin.qq.com/document/path/…):
- 91039 gettoken (corpid + corpsecret → access_token, expires_in 7200)
- 90236 message/send, template_card button_interaction (task_id ≤ 128 bytes of [0-9A-Za-z_-@],
  ≤ 6 buttons, key ≤ 1024 bytes, horizontal_content_list ≤ 6, button type 1 = open url;
  the answer's response_code: 72 h, one use)
- 94888 update_template_card (response_code from send or from the click event; one call each)
- 90240 / 90930 callback configuration (URL check: GET with echostr, answer the decrypted plain text
  within 1 s; events: POST XML with Encrypt), 90858 template card event (EventKey, TaskId, ResponseCode)
- 91144 加解密方案说明 (msg_signature = sha1(sort(token, timestamp, nonce, msg_encrypt));
  AESKey = base64(EncodingAESKey + "="), IV = AESKey[:16], PKCS#7 to 32-byte blocks,
  random(16) + msg_len(4, network order) + msg + receiveid)
- 90313 global error codes (40014 / 42001 token, 45009 frequency, -1 busy, 81013 no valid receiver)
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
import time
import xml.etree.ElementTree as ET
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from services.notifier.channels.base import (
    ButtonStyle,
    CallbackRefused,
    CallbackRequest,
    CallbackResult,
    Card,
    Channel,
    ChannelError,
    Click,
    HttpAnswer,
    LinkPolicy,
    MessageRef,
    Target,
    check_fresh,
    log,
    truncate,
    truncate_bytes,
)
from services.notifier.channels.cards import unpack_value

TOKEN_INVALID = {40001, 40014, 41001, 42001}
RATE_LIMITED = {45009, 45033}
BUTTON_STYLE = {ButtonStyle.primary: 1, ButtonStyle.default: 2, ButtonStyle.danger: 3}
TASK_ID_CHARS = re.compile(r"[^0-9A-Za-z_\-@]")


def wecom_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def aes_key(encoding_aes_key: str) -> bytes:
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def wecom_decrypt(encoding_aes_key: str, encrypted: str) -> tuple[bytes, str]:
    """(msg, receiveid) from msg_encrypt, or ValueError."""
    key = aes_key(encoding_aes_key)
    raw = base64.b64decode(encrypted, validate=True)
    if not raw or len(raw) % 32:
        raise ValueError("ciphertext length")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(raw) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("padding")
    plain = plain[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise ValueError("msg_len")
    return plain[20:20 + length], plain[20 + length:].decode()


def wecom_encrypt(encoding_aes_key: str, msg: bytes, receive_id: str) -> str:
    """The inverse (passive replies; the fakes' callbacks)."""
    key = aes_key(encoding_aes_key)
    plain = secrets.token_bytes(16) + struct.pack(">I", len(msg)) + msg + receive_id.encode()
    pad = 32 - len(plain) % 32
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()


def xml_fields(raw: bytes | str) -> dict[str, str]:
    root = ET.fromstring(raw)
    return {child.tag: (child.text or "") for child in root}


def task_id(checkpoint_id: str) -> str:
    # Unique per app and per send (WeCom refuses a reused task_id); ≤ 128 bytes of the allowed chars.
    return TASK_ID_CHARS.sub("_", f"hitl_{checkpoint_id}_{secrets.token_hex(4)}")[:128]


def render_card(card: Card, target: Target) -> dict[str, Any]:
    summary = "\n".join(p for p in (card.message, card.preview) if p)
    template: dict[str, Any] = {
        "source": {"desc": "Dify review", "desc_color": 0},
        "main_title": {"title": truncate(card.title, 26), "desc": truncate(card.message or card.checkpoint_id, 30)},
        "sub_title_text": truncate(summary, 112),
        "horizontal_content_list": [{"keyname": truncate(f.label, 5), "value": truncate(f.value, 26)}
                                    for f in card.fields[:6]],
    }
    if card.resolved or not card.buttons:
        template.update(card_type="text_notice", sub_title_text=truncate(f"{card.outcome}\n{summary}", 112),
                        card_action={"type": 1, "url": card.detail_url or "https://work.weixin.qq.com/"})
        return template
    buttons = []
    for b in card.buttons[:6]:
        button: dict[str, Any] = {"text": truncate(b.label, 10), "style": BUTTON_STYLE[b.style]}
        if b.is_link:
            button.update(type=1, url=b.url)
        else:
            button["key"] = truncate_bytes(b.value, 1024)
        buttons.append(button)
    template.update(card_type="button_interaction", task_id=task_id(card.checkpoint_id), button_list=buttons)
    if card.detail_url:
        template["card_action"] = {"type": 1, "url": card.detail_url}
    return template


def receivers(target: Target) -> dict[str, Any]:
    return {"toparty": target.address} if target.kind == "group" else {"touser": target.address}


class WeComChannel(Channel):
    name = "wecom"
    link_policy = LinkPolicy.text
    required_settings = ("corp_id", "corp_secret", "agent_id", "token", "encoding_aes_key")
    optional_settings = ("api_base_url", "timeout_s", "max_skew_s")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        aes_key(str(self.settings["encoding_aes_key"]))  # refuse a bad key at start, not at the first click
        self._token: str | None = None
        self._token_expires = 0.0

    @property
    def api(self) -> str:
        return str(self.settings.get("api_base_url") or "https://qyapi.weixin.qq.com").rstrip("/")

    def _checked(self, operation: str, data: dict[str, Any]) -> dict[str, Any]:
        code = data.get("errcode", 0)
        if code == 0:
            return data
        if code in TOKEN_INVALID:
            raise ChannelError(self.name, "token_invalid", f"{operation}: the access_token was refused")
        if code in RATE_LIMITED:
            raise ChannelError(self.name, "rate_limited", f"{operation} hit the frequency limit ({code})",
                               retry_after_s=60.0)
        if code == -1:
            raise ChannelError(self.name, "busy", f"{operation}: WeCom is busy", retry_after_s=1.0)
        log.warning("channel.refused", channel=self.name, operation=operation, errcode=code)
        raise ChannelError(self.name, f"errcode_{code}", f"{operation} answered errcode {code}", permanent=True)

    async def _access_token(self, refresh: bool = False) -> str:
        if self._token and not refresh and time.monotonic() < self._token_expires:
            return self._token
        response = await self._request("gettoken", "GET", f"{self.api}/cgi-bin/gettoken", params={
            "corpid": self.settings["corp_id"], "corpsecret": self.settings["corp_secret"]})
        data = self._checked("gettoken", self._json("gettoken", response))
        self._token = str(data["access_token"])
        self._token_expires = time.monotonic() + max(60.0, float(data.get("expires_in", 7200)) - 300)
        return self._token

    async def _post(self, operation: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in (0, 1):
            token = await self._access_token(refresh=attempt == 1)
            response = await self._request(operation, "POST", f"{self.api}{path}", params={"access_token": token},
                                           json=body)
            try:
                return self._checked(operation, self._json(operation, response))
            except ChannelError as exc:
                if exc.code != "token_invalid" or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def send(self, target: Target, card: Card) -> MessageRef:
        template = render_card(card, target)
        data = await self._post("message.send", "/cgi-bin/message/send", {
            **receivers(target), "msgtype": "template_card", "agentid": int(self.settings["agent_id"]),
            "template_card": template, "enable_duplicate_check": 0})
        log.info("channel.sent", channel=self.name, checkpoint_id=card.checkpoint_id)
        return MessageRef(self.name, target, {"msgid": data.get("msgid"), "task_id": template.get("task_id"),
                                              "response_code": data.get("response_code")})

    async def update(self, ref: MessageRef, card: Card, click: Click | None = None) -> MessageRef:
        code = (click.update_token if click else None) or ref.ref.get("response_code")
        if not code:
            raise ChannelError(self.name, "no_response_code", "this card's response_code was already used "
                                                              "(WeCom allows one update per code)", permanent=True)
        body: dict[str, Any] = {"agentid": int(self.settings["agent_id"]), "response_code": code,
                                "template_card": render_card(card, ref.target)}
        if ref.target.kind == "group":
            body["partyids"] = [int(p) if p.isdigit() else p for p in ref.target.address.split("|")]
        else:
            body["userids"] = ref.target.address.split("|")
        await self._post("update_template_card", "/cgi-bin/message/update_template_card", body)
        return MessageRef(self.name, ref.target, {**ref.ref, "response_code": None})  # spent

    async def notice(self, click: Click, text: str) -> bool:
        """An app text message to the clicking user (touser)."""
        if not click.user_id:
            return False
        await self._post("message.send", "/cgi-bin/message/send", {
            "touser": click.user_id, "msgtype": "text", "agentid": int(self.settings["agent_id"]),
            "text": {"content": truncate_bytes(text, 2048)}})
        return True

    # ------------------------------------------------------------------ callbacks
    def _open(self, request: CallbackRequest, encrypted: str, now: float | None) -> bytes:
        q = request.query
        signature, timestamp, nonce = q.get("msg_signature"), q.get("timestamp"), q.get("nonce")
        if not signature or not timestamp or not nonce:
            raise CallbackRefused("bad_signature", "msg_signature, timestamp and nonce are required")
        expected = wecom_signature(str(self.settings["token"]), timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, signature):
            raise CallbackRefused("bad_signature", "msg_signature does not match")
        try:
            check_fresh(float(timestamp), now, float(self.settings.get("max_skew_s") or 300))
            msg, receive_id = wecom_decrypt(str(self.settings["encoding_aes_key"]), encrypted)
        except CallbackRefused:
            raise
        except (ValueError, binascii.Error, struct.error, UnicodeDecodeError):
            raise CallbackRefused("undecryptable", "the message could not be decrypted with the EncodingAESKey",
                                  400) from None
        if receive_id != self.settings["corp_id"]:
            raise CallbackRefused("wrong_app", "the message was encrypted for another corp", 403)
        return msg

    def parse_callback(self, request: CallbackRequest, now: float | None = None) -> CallbackResult:
        if request.method == "GET":  # URL verification: answer the decrypted echostr as is
            echostr = request.query.get("echostr")
            if not echostr:
                raise CallbackRefused("malformed", "echostr is required", 400)
            return CallbackResult(HttpAnswer.text(self._open(request, echostr, now).decode()))
        try:
            encrypted = xml_fields(request.body).get("Encrypt", "")
        except ET.ParseError:
            raise CallbackRefused("malformed", "the body is not XML", 400) from None
        if not encrypted:
            raise CallbackRefused("malformed", "the body has no Encrypt", 400)
        try:
            event = xml_fields(self._open(request, encrypted, now))
        except ET.ParseError:
            raise CallbackRefused("malformed", "the decrypted message is not XML", 400) from None
        if event.get("MsgType") != "event" or event.get("Event") != "template_card_event":
            return CallbackResult(HttpAnswer.text(""))
        value = event.get("EventKey", "")
        try:
            _, action, _ = unpack_value(value)
        except ValueError:
            return CallbackResult(HttpAnswer.text(""))  # a button that is not ours
        user = event.get("FromUserName", "")
        key = f"wecom:{event.get('TaskId')}:{user}:{event.get('CreateTime')}:{value}"
        click = Click(self.name, user, action, value, key, update_token=event.get("ResponseCode") or None,
                      message={"task_id": event.get("TaskId")})
        return CallbackResult(HttpAnswer.text(""), click)  # an empty answer: no passive reply
