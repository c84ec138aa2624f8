"""DingTalk (钉钉): a group's custom robot posts an ActionCard whose buttons are signed links.

A custom robot has no click callback ("当前机器人尚不支持应答机制") and cannot edit what it sent, so
every button is a link to the confirmation page, and `update` posts a short follow-up markdown
message with the outcome. DingTalk interactive cards would need an enterprise app and a card
template made in DingTalk's card console; the signed links work in every group without that.

If the robot also has message receiving enabled (an enterprise robot's HTTP callback, when someone
@-mentions it), `parse_callback` verifies that callback's `timestamp` + `sign` headers and answers
with a pointer to the card's buttons; it carries no decision.

Docs followed (open.dingtalk.com/document/…):
- orgapp/custom-robot-access and robots/customize-robot-security-settings: webhook
  https://oapi.dingtalk.com/robot/send?access_token=…; 加签 `timestamp` (ms, within 1 hour) and
  `sign` = urlEncode(base64(HmacSHA256(secret, timestamp + "\\n" + secret))); 20 messages a minute,
  then throttled for 10 minutes; errcode 310000 sign/keyword/IP, 300001 token, 410100 / 130101 too fast
- orgapp/custom-bot-send-message-type (actionCard: title, text markdown, btnOrientation, btns
  [{title, actionURL}]; markdown: title, text)
- orgapp/receive-message (robot callback: headers timestamp + sign with the app secret, 1 hour)
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from services.notifier.channels.base import (
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
    truncate,
)

SIGN_WINDOW_S = 3600  # DingTalk: the timestamp may differ from its clock by at most one hour
TOO_FAST = {130101, 410100}
STATE_MARK = {CardState.approved: "✅", CardState.revised: "↩️", CardState.edited: "✏️", CardState.aborted: "⛔",
              CardState.expired: "⌛", CardState.cancelled: "✖️"}


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """base64(HmacSHA256(secret, timestamp + "\\n" + secret)); the URL encoding is the query's."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("*", "\\*").replace("#", "\\#")


def _body(card: Card) -> str:
    lines = [f"### {md_escape(card.title)}"]
    if card.message:
        lines.append(md_escape(truncate(card.message, 1000)))
    lines.extend(f"**{md_escape(f.label)}:** {md_escape(f.value)}" for f in card.fields)
    head = "\n\n".join(lines)
    if card.preview:  # the code block gets what is left of the 5000-character body
        head += "\n\n```\n" + truncate(card.preview.replace("```", "'''"), max(0, 5000 - len(head) - 10)) + "\n```"
    return head


def render_action_card(card: Card) -> dict[str, Any]:
    head = _body(card)
    buttons = [b for b in card.buttons if b.url][:5]
    return {"msgtype": "actionCard", "actionCard": {
        "title": truncate(card.title, 64), "text": truncate(head, 5000),
        "btnOrientation": "1" if len(buttons) > 2 else "0",  # vertical when they would not fit side by side
        "btns": [{"title": truncate(b.label, 20), "actionURL": b.url} for b in buttons]}}


def render_notice(card: Card) -> dict[str, Any]:
    """A card without any button (nobody its links could decide as): the same text, as markdown."""
    return {"msgtype": "markdown", "markdown": {"title": truncate(card.title, 64), "text": truncate(_body(card), 5000)}}


def render_outcome(card: Card) -> dict[str, Any]:
    text = (f"#### {STATE_MARK.get(card.state, '')} {md_escape(card.outcome or card.state.value)}\n\n"
            f"{md_escape(card.title)} (`{card.checkpoint_id}`)")
    return {"msgtype": "markdown", "markdown": {"title": truncate(card.outcome or card.title, 64), "text": text}}


class DingTalkChannel(Channel):
    name = "dingtalk"
    link_policy = LinkPolicy.all
    required_settings = ("webhook_url", "secret")
    optional_settings = ("app_secret", "timeout_s")

    async def _post(self, operation: str, body: dict[str, Any]) -> None:
        timestamp = str(int(time.time() * 1000))
        # The webhook URL already carries access_token: the signature joins its query (httpx would replace it).
        url = httpx.URL(str(self.settings["webhook_url"])).copy_merge_params(
            {"timestamp": timestamp, "sign": dingtalk_sign(str(self.settings["secret"]), timestamp)})
        response = await self._request(operation, "POST", url, json=body)
        data = self._json(operation, response)
        code = data.get("errcode", 0)
        if code == 0:
            return
        log.warning("channel.refused", channel=self.name, operation=operation, errcode=code)
        if code in TOO_FAST:  # the robot is throttled for 10 minutes
            raise ChannelError(self.name, "rate_limited", f"{operation}: more than 20 messages a minute",
                               retry_after_s=600.0)
        if code == -1:
            raise ChannelError(self.name, "busy", f"{operation}: DingTalk is busy", retry_after_s=5.0)
        raise ChannelError(self.name, f"errcode_{code}", f"{operation} answered errcode {code}", permanent=True)

    async def send(self, target: Target, card: Card) -> MessageRef:
        if not card.resolved and card.buttons and not any(b.url for b in card.buttons):
            raise ValueError("a DingTalk card needs link buttons (card_from_checkpoint with LinkPolicy.all)")
        if card.resolved:
            body = render_outcome(card)
        else:
            body = render_action_card(card) if card.buttons else render_notice(card)
        await self._post("robot.send", body)
        log.info("channel.sent", channel=self.name, checkpoint_id=card.checkpoint_id)
        return MessageRef(self.name, target, {"robot": True, "checkpoint_id": card.checkpoint_id})

    async def update(self, ref: MessageRef, card: Card, click: Click | None = None) -> MessageRef:
        # A robot message cannot be edited: the outcome follows as its own message.
        await self._post("robot.send", render_outcome(card))
        return ref

    def parse_callback(self, request: CallbackRequest, now: float | None = None) -> CallbackResult:
        app_secret = self.settings.get("app_secret")
        if not app_secret:
            raise CallbackRefused("no_callbacks", "this DingTalk robot takes decisions through its links only", 404)
        timestamp, sign = request.header("timestamp"), request.header("sign")
        if not timestamp or not sign:
            raise CallbackRefused("bad_signature", "the timestamp and sign headers are required")
        if not hmac.compare_digest(dingtalk_sign(str(app_secret), timestamp), sign):
            raise CallbackRefused("bad_signature", "the sign header does not match")
        try:
            check_fresh(int(timestamp) / 1000, now, SIGN_WINDOW_S)
            message = json.loads(request.body)
        except ValueError:
            raise CallbackRefused("malformed", "expected a millisecond timestamp and a JSON body", 400) from None
        if not isinstance(message, dict):
            raise CallbackRefused("malformed", "the body is not a JSON object", 400)
        return CallbackResult(HttpAnswer.json({"msgtype": "text", "text": {
            "content": "To decide, use the buttons on the review card (they open a confirmation page)."}}))
