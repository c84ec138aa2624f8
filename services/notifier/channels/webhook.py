"""Generic webhooks: a signed JSON POST per checkpoint (opened, then resolved) with one signed link
per decision, for receivers that build their own notifications.

The signature header is `X-HITL-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` with
the webhook's secret; several `v1=` entries may appear while a secret is rotated. Receivers check it
with `verify_webhook_signature()` (a 5-minute tolerance by default, against replays).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Literal

from services.notifier.channels.base import (
    CallbackRefused,
    CallbackRequest,
    CallbackResult,
    Card,
    Channel,
    ChannelError,
    Click,
    LinkPolicy,
    MessageRef,
    Target,
    log,
)

SIGNATURE_HEADER = "X-HITL-Signature"
DEFAULT_TOLERANCE_S = 300


class WebhookSignatureError(Exception):
    def __init__(self, code: Literal["malformed", "bad_signature", "stale_timestamp"], message: str) -> None:
        super().__init__(message)
        self.code = code


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_webhook_signature(secret: str, header: str | None, body: bytes, now: float | None = None,
                             tolerance_s: float = DEFAULT_TOLERANCE_S) -> int:
    """Check `X-HITL-Signature` against the raw body; returns its timestamp, raises WebhookSignatureError."""
    if not header:
        raise WebhookSignatureError("malformed", f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            macs.append(value)
    if timestamp is None or not macs:
        raise WebhookSignatureError("malformed", f"{SIGNATURE_HEADER} needs t=<unix> and v1=<hex>")
    expected = sign_webhook(secret, body, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise WebhookSignatureError("bad_signature", "the signature does not match the body")
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise WebhookSignatureError("stale_timestamp", f"the signature is more than {int(tolerance_s)} s old")
    return timestamp


def payload(card: Card, delivery_id: str, now: float) -> dict[str, Any]:
    return {
        "type": "checkpoint.resolved" if card.resolved else "checkpoint.opened",
        "delivery_id": delivery_id, "occurred_at": now,
        "checkpoint": {"id": card.checkpoint_id, "title": card.title, "message": card.message,
                       "preview": card.preview, "fields": {f.label: f.value for f in card.fields},
                       "state": card.state.value, "outcome": card.outcome, "detail_url": card.detail_url},
        "actions": [] if card.resolved else [
            {"action": b.action, "label": b.label, "url": b.url, "needs_text": b.needs_text}
            for b in card.buttons if b.url],
    }


class WebhookChannel(Channel):
    name = "webhook"
    link_policy = LinkPolicy.all
    required_settings = ("secret",)
    optional_settings = ("timeout_s",)

    async def _post(self, url: str, card: Card) -> str:
        delivery_id = str(uuid.uuid4())
        now = time.time()
        body = json.dumps(payload(card, delivery_id, now), ensure_ascii=False, separators=(",", ":")).encode()
        response = await self._request("webhook.post", "POST", url, content=body, headers={
            "content-type": "application/json", "user-agent": "dify-hitl-notifier",
            SIGNATURE_HEADER: sign_webhook(str(self.settings["secret"]), body, int(now)),
            "X-HITL-Delivery": delivery_id})
        if response.status_code == 408 or not response.is_success:
            log.warning("channel.refused", channel=self.name, status=response.status_code)
            raise ChannelError(self.name, f"http_{response.status_code}", "the receiver answered HTTP "
                               f"{response.status_code}", permanent=response.status_code != 408)
        return delivery_id

    async def send(self, target: Target, card: Card) -> MessageRef:
        if not card.resolved and card.buttons and not any(b.url for b in card.buttons):
            raise ValueError("a webhook card needs link buttons (card_from_checkpoint with LinkPolicy.all)")
        delivery_id = await self._post(target.address, card)
        log.info("channel.sent", channel=self.name, checkpoint_id=card.checkpoint_id)
        return MessageRef(self.name, target, {"delivery_id": delivery_id})

    async def update(self, ref: MessageRef, card: Card, click: Click | None = None) -> MessageRef:
        return MessageRef(self.name, ref.target, {"delivery_id": await self._post(ref.target.address, card)})

    def parse_callback(self, request: CallbackRequest, now: float | None = None) -> CallbackResult:
        raise CallbackRefused("no_callbacks", "webhook receivers decide through the signed links", 404)
