"""Feishu / Lark: an interactive card (card JSON 2.0) sent by the app's bot, clicks through the
`card.action.trigger` callback, the card updated in place.

Revise/edit text is typed in the card itself: a form container with one multi-line input and
submit buttons, so reviewers never leave the chat and the platform identifies who typed (a link
could not, in a group chat). The input holds up to 1,000 characters; a longer edited output goes
through the console ("Open in console").

Docs followed (open.feishu.cn / open.larksuite.com):
- auth/v3/tenant_access_token/internal (tenant_access_token, `expire` seconds)
- im/v1/messages create (`receive_id_type`, `msg_type: interactive`, `content` = card JSON string)
  and PATCH im/v1/messages/:message_id ("update_multi": true before and after; 14 days; 5 QPS)
- interactive/v1/card/update (delayed update with the callback's token: 30 minutes, 3 uses)
- feishu-cards/card-json-v2-structure, card-json-v2-components/containers/form-container,
  .../interactive-components/input and button (form buttons use `form_action_type`, not behaviors)
- feishu-cards/card-callback-communication (card.action.trigger; answer toast/card within 3 s)
- event-subscription-configure-/encrypt-key-encryption-configuration-case (AES-256-CBC with
  SHA-256(encrypt key), IV = first 16 bytes; X-Lark-Signature = sha256(timestamp + nonce + key + body))
- server-docs/api-call-guide/frequency-control (429 or 400 with code 99991400, x-ogw-ratelimit-reset)
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from services.notifier.channels.base import (
    ButtonStyle,
    CallbackRefused,
    CallbackRequest,
    CallbackResult,
    Card,
    CardState,
    Channel,
    ChannelError,
    Click,
    HttpAnswer,
    LinkPolicy,
    MessageRef,
    Target,
    check_fresh,
    log,
    retry_after,
    truncate,
)
from services.notifier.channels.cards import unpack_value

TOKEN_INVALID = {99991661, 99991663, 99991668}
RATE_LIMITED = 99991400
INPUT_MAX = 1000
TEMPLATE = {CardState.open: "blue", CardState.approved: "green", CardState.revised: "orange",
            CardState.edited: "turquoise", CardState.aborted: "red", CardState.expired: "grey",
            CardState.cancelled: "grey"}
BUTTON_TYPE = {ButtonStyle.primary: "primary_filled", ButtonStyle.danger: "danger", ButtonStyle.default: "default"}


def feishu_decrypt(encrypt_key: str, encrypted: str) -> bytes:
    raw = base64.b64decode(encrypted, validate=True)
    if len(raw) < 32 or len(raw) % 16:
        raise ValueError("ciphertext length")
    decryptor = Cipher(algorithms.AES(hashlib.sha256(encrypt_key.encode()).digest()), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def feishu_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def receive_id_type(target: Target) -> str:
    address = target.address
    if address.startswith("oc_"):
        return "chat_id"
    if address.startswith("ou_"):
        return "open_id"
    if address.startswith("on_"):
        return "union_id"
    if "@" in address:
        return "email"
    return "chat_id" if target.kind == "group" else "user_id"


def render_card(card: Card) -> dict[str, Any]:
    elements: list[dict[str, Any]] = []
    if card.message:
        elements.append({"tag": "markdown", "content": truncate(card.message, 2000)})
    if card.fields:
        elements.append({"tag": "markdown", "content": "\n".join(f"**{f.label}:** {f.value}" for f in card.fields)})
    if card.preview:
        elements.append({"tag": "markdown", "content": "```\n" + truncate(card.preview, 3000) + "\n```"})
    if card.resolved:
        elements.append({"tag": "markdown", "content": f"**{card.outcome or card.state.value}**"})
    elif card.buttons:
        elements.extend(_decision_elements(card))
    return {"schema": "2.0", "config": {"update_multi": True},  # a shared card: every reader sees updates
            "header": {"title": {"tag": "plain_text", "content": truncate(card.title, 100)},
                       "template": TEMPLATE[card.state]},
            "body": {"elements": elements}}


def _decision_elements(card: Card) -> list[dict[str, Any]]:
    """One-click buttons stand alone (callback behaviors); revise/edit submit a form with the text
    input, because a button inside a form submits it instead of carrying behaviors."""
    plain: list[dict[str, Any]] = []
    form: list[dict[str, Any]] = []
    for i, b in enumerate(card.buttons):
        button: dict[str, Any] = {"tag": "button", "name": f"hitl_{i}_{b.action}"[:40],
                                  "text": {"tag": "plain_text", "content": truncate(b.label, 100)},
                                  "type": BUTTON_TYPE[b.style]}
        if b.is_link:
            button["behaviors"] = [{"type": "open_url", "default_url": b.url}]
        elif b.needs_text:
            button["form_action_type"] = "submit"
            form.append(button)
            continue
        else:
            button["behaviors"] = [{"type": "callback", "value": {"hitl": b.value}}]
        plain.append(button)
    if form:
        form.insert(0, {"tag": "input", "name": "hitl_text", "input_type": "multiline_text", "max_length": INPUT_MAX,
                        "placeholder": {"tag": "plain_text", "content": "Feedback (revise) or the new output (edit)"}})
        plain.append({"tag": "form", "name": "hitl_decision", "elements": form})
    return plain


class FeishuChannel(Channel):
    name = "feishu"
    link_policy = LinkPolicy.none
    required_settings = ("app_id", "app_secret", "verification_token")
    optional_settings = ("encrypt_key", "api_base_url", "timeout_s", "max_skew_s")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._token: str | None = None
        self._token_expires = 0.0

    @property
    def api(self) -> str:
        return str(self.settings.get("api_base_url") or "https://open.feishu.cn").rstrip("/")

    async def _tenant_token(self, refresh: bool = False) -> str:
        if self._token and not refresh and time.monotonic() < self._token_expires:
            return self._token
        response = await self._request("tenant_access_token", "POST",
                                       f"{self.api}/open-apis/auth/v3/tenant_access_token/internal",
                                       json={"app_id": self.settings["app_id"],
                                             "app_secret": self.settings["app_secret"]})
        data = self._checked("tenant_access_token", response)
        self._token = str(data["tenant_access_token"])
        self._token_expires = time.monotonic() + max(60.0, float(data.get("expire", 7200)) - 300)
        return self._token

    def _checked(self, operation: str, response: Any) -> dict[str, Any]:
        data = self._json(operation, response)
        code = data.get("code")
        if code == 0:
            return data
        if code == RATE_LIMITED:
            raise ChannelError(self.name, "rate_limited", f"{operation} hit the frequency limit",
                               retry_after_s=retry_after(response.headers))
        if code in TOKEN_INVALID:
            raise ChannelError(self.name, "token_invalid", f"{operation}: the tenant token was refused")
        log.warning("channel.refused", channel=self.name, operation=operation, code=code)
        raise ChannelError(self.name, f"code_{code}", f"{operation} answered code {code}: "
                                                      f"{str(data.get('msg', ''))[:200]}", permanent=True)

    async def _api(self, operation: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in (0, 1):  # one retry with a fresh token when Feishu says the token expired
            token = await self._tenant_token(refresh=attempt == 1)
            response = await self._request(operation, method, f"{self.api}{path}", headers={
                "authorization": f"Bearer {token}", "content-type": "application/json; charset=utf-8"}, **kwargs)
            try:
                return self._checked(operation, response)
            except ChannelError as exc:
                if exc.code != "token_invalid" or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def send(self, target: Target, card: Card) -> MessageRef:
        data = await self._api("im.message.create", "POST", "/open-apis/im/v1/messages",
                               params={"receive_id_type": receive_id_type(target)},
                               json={"receive_id": target.address, "msg_type": "interactive",
                                     "content": json.dumps(render_card(card), ensure_ascii=False)})
        log.info("channel.sent", channel=self.name, checkpoint_id=card.checkpoint_id)
        return MessageRef(self.name, target, {"message_id": data["data"]["message_id"]})

    async def update(self, ref: MessageRef, card: Card, click: Click | None = None) -> MessageRef:
        if click is not None and click.update_token:  # the clicker's token: no message-id needed
            await self._api("card.update", "POST", "/open-apis/interactive/v1/card/update",
                            json={"token": click.update_token, "card": render_card(card)})
        else:
            await self._api("im.message.patch", "PATCH", f"/open-apis/im/v1/messages/{ref.ref['message_id']}",
                            json={"content": json.dumps(render_card(card), ensure_ascii=False)})
        return ref

    async def notice(self, click: Click, text: str) -> bool:
        """A text message from the bot to the clicking user (open_id)."""
        if not click.user_id:
            return False
        await self._api("im.message.create", "POST", "/open-apis/im/v1/messages",
                        params={"receive_id_type": "open_id" if click.user_id.startswith("ou_") else "user_id"},
                        json={"receive_id": click.user_id, "msg_type": "text",
                              "content": json.dumps({"text": truncate(text, 2000)}, ensure_ascii=False)})
        return True

    # ------------------------------------------------------------------ callbacks
    def _open(self, request: CallbackRequest, now: float | None) -> dict[str, Any]:
        try:
            outer = json.loads(request.body)
        except ValueError:
            raise CallbackRefused("malformed", "the body is not JSON", 400) from None
        key = self.settings.get("encrypt_key")
        if not key:
            return outer if isinstance(outer, dict) else {}
        if not isinstance(outer, dict) or not isinstance(outer.get("encrypt"), str):
            raise CallbackRefused("undecryptable", "an Encrypt Key is set, so the body must be {\"encrypt\": …}", 400)
        timestamp, nonce = request.header("x-lark-request-timestamp"), request.header("x-lark-request-nonce")
        signature = request.header("x-lark-signature")
        if signature:  # absent only on the URL challenge, which is checked by decryption + token
            if not timestamp or not nonce or not hmac.compare_digest(
                    feishu_signature(timestamp, nonce, str(key), request.body), signature):
                raise CallbackRefused("bad_signature", "X-Lark-Signature does not match")
            try:
                check_fresh(float(timestamp), now, float(self.settings.get("max_skew_s") or 300))
            except ValueError:
                raise CallbackRefused("malformed", "X-Lark-Request-Timestamp is not a number", 400) from None
        try:
            inner = json.loads(feishu_decrypt(str(key), outer["encrypt"]))
        except (ValueError, binascii.Error):
            raise CallbackRefused("undecryptable", "the body could not be decrypted with the Encrypt Key",
                                  400) from None
        return inner if isinstance(inner, dict) else {}

    def parse_callback(self, request: CallbackRequest, now: float | None = None) -> CallbackResult:
        data = self._open(request, now)
        header = data.get("header") or {}
        token = data.get("token") if data.get("type") == "url_verification" else header.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token, str(self.settings["verification_token"])):
            raise CallbackRefused("bad_signature", "the Verification Token does not match")
        if data.get("type") == "url_verification":
            return CallbackResult(HttpAnswer.json({"challenge": str(data.get("challenge", ""))}))
        if header.get("app_id") and header["app_id"] != self.settings["app_id"]:
            raise CallbackRefused("wrong_app", "the callback is for another app", 403)
        if header.get("event_type") != "card.action.trigger":
            return CallbackResult(HttpAnswer.json({}))
        return self._card_action(header, data.get("event") or {})

    def _card_action(self, header: dict[str, Any], event: dict[str, Any]) -> CallbackResult:
        action = event.get("action") or {}
        operator = event.get("operator") or {}
        context = event.get("context") or {}
        value = (action.get("value") or {}).get("hitl") if isinstance(action.get("value"), dict) else None
        name = str(action.get("name") or "")
        if value:
            try:
                _, act, _ = unpack_value(str(value))
            except ValueError:
                raise CallbackRefused("malformed", "the button value is not one of ours", 400) from None
        elif name.startswith("hitl_") and name.count("_") >= 2:
            act = name.split("_", 2)[2]  # a form submit button names its action; the message says which card
        else:
            return CallbackResult(HttpAnswer.json({}))
        text = None
        if act in ("revise", "edit"):
            text = str((action.get("form_value") or {}).get("hitl_text") or "")
            if not text.strip():
                what = "feedback" if act == "revise" else "the new output"
                toast = {"type": "error", "content": f"Please write {what} first."}
                return CallbackResult(HttpAnswer.json({"toast": toast}))
        click = Click(self.name, str(operator.get("open_id") or operator.get("user_id") or ""), act,
                      str(value) if value else None, f"feishu:{header.get('event_id')}", text=text,
                      update_token=event.get("token"), message={"message_id": context.get("open_message_id")})
        return CallbackResult(HttpAnswer.json({"toast": {"type": "info", "content": "Decision received"}}), click)
