"""Slack: Block Kit cards via chat.postMessage / chat.update, clicks via the app's Interactivity
Request URL, feedback and edited output through a modal (views.open) because a message cannot hold
a text box that posts back.

Docs followed:
- https://api.slack.com/methods/chat.postMessage, https://api.slack.com/methods/chat.update,
  https://api.slack.com/methods/views.open, https://api.slack.com/methods/chat.postEphemeral
  (request fields, `ok`/`error` answers)
- https://api.slack.com/reference/block-kit/blocks, .../block-elements#button,
  .../composition-objects (header 150 chars, section text 3000, 10 fields of 2000, button text 75,
  value 2000, action_id 255, 50 blocks a message, modal title 24, private_metadata 3000)
- https://api.slack.com/reference/interaction-payloads/block-actions-payload and
  .../views#view_submission; https://api.slack.com/interactivity/handling (ack within 3 s;
  `response_action: errors`); https://api.slack.com/reference/surfaces/formatting#escaping
- https://api.slack.com/authentication/verifying-requests-from-slack (v0 HMAC-SHA256, 5 minutes)
- https://api.slack.com/docs/rate-limits (HTTP 429 + Retry-After)
- https://api.slack.com/events/url_verification (Events API challenge)
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

from services.notifier.channels.base import (
    Button,
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
    truncate,
)
from services.notifier.channels.cards import unpack_value

SIGNATURE_WINDOW_S = 300  # Slack: "more than five minutes" from local time is a possible replay
ACTION_PREFIX = "hitl_"
TEXT_BLOCK = "hitl_text"
TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
STATE_EMOJI = {CardState.approved: ":white_check_mark:", CardState.revised: ":leftwards_arrow_with_hook:",
               CardState.edited: ":pencil2:", CardState.aborted: ":no_entry:", CardState.expired: ":hourglass:",
               CardState.cancelled: ":heavy_multiplication_x:"}


def mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def render_blocks(card: Card) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(card.title, 150), "emoji": True}}]
    if card.message:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": truncate(mrkdwn_escape(card.message), 3000)}})
    if card.fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": truncate(f"*{mrkdwn_escape(f.label)}*\n{mrkdwn_escape(f.value)}", 2000)}
            for f in card.fields[:10]]})
    if card.preview:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": "```" + truncate(mrkdwn_escape(card.preview), 3000 - 6) + "```"}})
    if card.resolved:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn",
             "text": truncate(f"{STATE_EMOJI.get(card.state, '')} *{card.outcome or card.state}*", 3000)}]})
    elif card.buttons:
        blocks.append({"type": "actions", "block_id": "hitl_actions",
                       "elements": [_button(i, b) for i, b in enumerate(card.buttons[:25])]})
    return blocks


def _button(index: int, button: Button) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "action_id": f"{ACTION_PREFIX}{index}_{button.action}"[:255],
                               "text": {"type": "plain_text", "text": truncate(button.label, 75), "emoji": True}}
    if button.style is not ButtonStyle.default:
        element["style"] = button.style.value
    if button.url:
        element["url"] = button.url
    if button.value:
        element["value"] = button.value[:2000]
    return element


def text_modal(value: str, action: str, message: dict[str, Any]) -> dict[str, Any]:
    label = "Feedback for the next round" if action == "revise" else "The new output"
    return {
        "type": "modal", "callback_id": TEXT_BLOCK,
        "private_metadata": json.dumps({"v": value, "m": message}, separators=(",", ":"))[:3000],
        "title": {"type": "plain_text", "text": "Revise" if action == "revise" else "Edit output"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "input", "block_id": TEXT_BLOCK, "label": {"type": "plain_text", "text": label},
                    "element": {"type": "plain_text_input", "action_id": "text", "multiline": True,
                                "max_length": 3000}}],
    }


class SlackChannel(Channel):
    name = "slack"
    link_policy = LinkPolicy.none
    required_settings = ("bot_token", "signing_secret")
    optional_settings = ("api_base_url", "timeout_s")

    @property
    def api(self) -> str:
        return str(self.settings.get("api_base_url") or "https://slack.com/api").rstrip("/")

    async def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self._request(method, "POST", f"{self.api}/{method}", json=payload, headers={
            "authorization": f"Bearer {self.settings['bot_token']}", "content-type": "application/json; charset=utf-8"})
        data = self._json(method, response)
        if not data.get("ok"):
            error = str(data.get("error") or "unknown_error")
            log.warning("channel.refused", channel=self.name, operation=method, error=error)
            raise ChannelError(self.name, error, f"{method} answered ok=false",
                               permanent=error not in TRANSIENT, retry_after_s=30.0 if error == "ratelimited" else None)
        return data

    async def send(self, target: Target, card: Card) -> MessageRef:
        data = await self._call("chat.postMessage", {"channel": target.address, "text": self._fallback(card),
                                                     "blocks": render_blocks(card), "unfurl_links": False})
        log.info("channel.sent", channel=self.name, checkpoint_id=card.checkpoint_id)
        return MessageRef(self.name, target, {"channel": data["channel"], "ts": data["ts"]})

    async def update(self, ref: MessageRef, card: Card, click: Click | None = None) -> MessageRef:
        data = await self._call("chat.update", {"channel": ref.ref["channel"], "ts": ref.ref["ts"],
                                                "text": self._fallback(card), "blocks": render_blocks(card)})
        return MessageRef(self.name, ref.target, {"channel": data.get("channel", ref.ref["channel"]),
                                                  "ts": data.get("ts", ref.ref["ts"])})

    async def notice(self, click: Click, text: str) -> bool:
        """chat.postEphemeral: only the clicking user sees it, in the channel of the card."""
        channel = click.message.get("channel")
        if not channel or not click.user_id:
            return False
        await self._call("chat.postEphemeral", {"channel": channel, "user": click.user_id,
                                                "text": truncate(mrkdwn_escape(text), 3000)})
        return True

    @staticmethod
    def _fallback(card: Card) -> str:
        # The notification text (push, screen readers) when blocks are shown.
        return truncate(f"{card.title}: {card.outcome}" if card.resolved else f"{card.title} — {card.message}", 3000)

    # ------------------------------------------------------------------ callbacks
    def _verify(self, request: CallbackRequest, now: float | None) -> None:
        timestamp, signature = request.header("x-slack-request-timestamp"), request.header("x-slack-signature")
        if not timestamp or not signature:
            raise CallbackRefused("bad_signature", "X-Slack-Request-Timestamp and X-Slack-Signature are required")
        try:
            sent_at = float(timestamp)
        except ValueError:
            raise CallbackRefused("malformed", "X-Slack-Request-Timestamp is not a number", 400) from None
        check_fresh(sent_at, now, SIGNATURE_WINDOW_S)
        expected = slack_signature(str(self.settings["signing_secret"]), timestamp, request.body)
        if not hmac.compare_digest(expected, signature):
            raise CallbackRefused("bad_signature", "the Slack signature does not match")

    def parse_callback(self, request: CallbackRequest, now: float | None = None) -> CallbackResult:
        self._verify(request, now)
        content_type = (request.header("content-type") or "").split(";")[0].strip()
        try:
            if content_type == "application/json":  # Events API (only its URL challenge matters here)
                event = json.loads(request.body)
                if event.get("type") == "url_verification":
                    return CallbackResult(HttpAnswer.json({"challenge": str(event.get("challenge", ""))}))
                return CallbackResult(HttpAnswer())
            payload = json.loads(parse_qs(request.body.decode())["payload"][0])
        except (ValueError, KeyError, IndexError, UnicodeDecodeError):
            raise CallbackRefused("malformed", "expected a form body with a JSON `payload`", 400) from None
        if not isinstance(payload, dict):
            raise CallbackRefused("malformed", "the payload is not a JSON object", 400)
        kind = payload.get("type")
        if kind == "block_actions":
            return self._block_actions(payload)
        if kind == "view_submission" and (payload.get("view") or {}).get("callback_id") == TEXT_BLOCK:
            return self._view_submission(payload)
        return CallbackResult(HttpAnswer())  # other interactions (view_closed, shortcuts): acknowledged

    def _block_actions(self, payload: dict[str, Any]) -> CallbackResult:
        actions = payload.get("actions") or []
        act = actions[0] if actions and isinstance(actions[0], dict) else {}
        user = payload.get("user") or {}
        container = payload.get("container") or {}
        message = {"channel": container.get("channel_id") or (payload.get("channel") or {}).get("id"),
                   "ts": container.get("message_ts") or (payload.get("message") or {}).get("ts")}
        value = act.get("value")
        if not str(act.get("action_id", "")).startswith(ACTION_PREFIX) or not value:
            return CallbackResult(HttpAnswer())  # a link button or not ours: Slack still wants the ack
        try:
            _, action, _ = unpack_value(value)
        except ValueError:
            raise CallbackRefused("malformed", "the button value is not one of ours", 400) from None
        if action in ("revise", "edit"):
            trigger = payload.get("trigger_id")
            if not trigger:
                raise CallbackRefused("malformed", "a text action needs the trigger_id to open a modal", 400)
            view = text_modal(value, action, message)

            async def open_modal() -> None:
                await self._call("views.open", {"trigger_id": trigger, "view": view})

            return CallbackResult(HttpAnswer(), None, open_modal)
        click = Click(self.name, str(user.get("id") or ""), action, value,
                      f"slack:action:{act.get('action_ts')}:{user.get('id')}",
                      user_name=user.get("username") or user.get("name"), message=message)
        return CallbackResult(HttpAnswer(), click)

    def _view_submission(self, payload: dict[str, Any]) -> CallbackResult:
        view = payload["view"]
        user = payload.get("user") or {}
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            value = str(meta["v"])
            _, action, _ = unpack_value(value)
        except (ValueError, KeyError, TypeError):
            raise CallbackRefused("malformed", "the modal does not carry one of our button values", 400) from None
        values = ((view.get("state") or {}).get("values") or {}).get(TEXT_BLOCK) or {}
        text = str((values.get("text") or {}).get("value") or "")
        if not text.strip():
            what = "feedback" if action == "revise" else "the new output"
            return CallbackResult(HttpAnswer.json({"response_action": "errors",
                                                   "errors": {TEXT_BLOCK: f"Please write {what}."}}))
        click = Click(self.name, str(user.get("id") or ""), action, value, f"slack:view:{view.get('id')}",
                      text=text, user_name=user.get("username") or user.get("name"), message=meta.get("m") or {})
        return CallbackResult(HttpAnswer(), click)
