"""Generic webhook adapter and `verify_webhook_signature()` against a receiver that verifies
(tests/fakes/webhook.py)."""
from __future__ import annotations

import time

import pytest

from services.notifier.channels.base import ChannelError, Target
from services.notifier.channels.cards import card_from_checkpoint
from services.notifier.channels.webhook import (
    WebhookChannel,
    WebhookSignatureError,
    sign_webhook,
    verify_webhook_signature,
)
from services.notifier.links import LinkSigner
from tests.fakes.support import assert_no_secrets, capture_logs, checkpoint, resolved, run
from tests.fakes.webhook import WEBHOOK_SECRET, FakeReceiver

LINK_SECRET = "link-secret-for-webhook-tests-012345678"
SIGNER = LinkSigner(LINK_SECRET, "https://hitl.example.com")


def card(cp=None):
    return card_from_checkpoint(cp or checkpoint(), link_policy=WebhookChannel.link_policy,
                                make_link=lambda c, a, f: SIGNER.make_link(c, "ops-bot", a, time.time() + 3600, f))


@pytest.fixture()
def receiver():
    with FakeReceiver().running() as server:
        yield server


def channel(http, secret=WEBHOOK_SECRET, **over) -> WebhookChannel:
    return WebhookChannel({"secret": secret, "timeout_s": 1.0, **over}, http, "https://hitl.example.com")


def test_signature_round_trip_and_refusals():
    body = b'{"a":1}'
    header = sign_webhook("s3cret", body, 1_700_000_000)
    assert verify_webhook_signature("s3cret", header, body, now=1_700_000_100) == 1_700_000_000
    rotated = f"{header},v1={'0' * 64}"
    assert verify_webhook_signature("s3cret", rotated, body, now=1_700_000_000)
    for bad, code, now in [(header, "bad_signature", None), ("v1=abc", "malformed", None), (None, "malformed", None)]:
        with pytest.raises(WebhookSignatureError) as err:
            verify_webhook_signature("s3cret", bad, b'{"a":2}', now=now or 1_700_000_000)
        assert err.value.code == code
    with pytest.raises(WebhookSignatureError) as stale:
        verify_webhook_signature("s3cret", header, body, now=1_700_000_000 + 301)
    assert stale.value.code == "stale_timestamp"


def test_send_posts_a_signed_payload_with_one_signed_link_per_action(receiver):
    cp = checkpoint()
    ref = run(lambda http: channel(http).send(Target("webhook", receiver.url), card(cp)))
    (got,) = receiver.accepted
    assert got["type"] == "checkpoint.opened" and got["delivery_id"] == ref.ref["delivery_id"]
    assert got["checkpoint"]["id"] == cp["id"] and got["checkpoint"]["fields"]["App"] == "support-bot"
    actions = {a["action"]: a for a in got["actions"]}
    assert set(actions) == {"approve", "revise", "edit", "abort"} and actions["revise"]["needs_text"] is True
    assert SIGNER.verify(actions["abort"]["url"].rsplit("/", 1)[1]).action == "abort"
    assert receiver.requests[0].headers["x-hitl-delivery"] == ref.ref["delivery_id"]


def test_update_posts_the_resolution_without_actions(receiver):
    cp = checkpoint()

    async def scenario(http):
        ch = channel(http)
        ref = await ch.send(Target("webhook", receiver.url), card(cp))
        await ch.update(ref, card_from_checkpoint(resolved(cp, "abort", "ops-bot", "webhook")))

    run(scenario)
    resolution = receiver.accepted[1]
    assert resolution["type"] == "checkpoint.resolved" and resolution["actions"] == []
    assert resolution["checkpoint"]["outcome"].startswith("Aborted by ops-bot via webhook")


def test_a_receiver_with_another_secret_refuses_and_that_is_permanent(receiver):
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, secret="not-the-receivers").send(Target("webhook", receiver.url), card()))
    assert (err.value.code, err.value.permanent) == ("http_401", True)
    assert receiver.refused == ["bad_signature"]


def test_429_500_and_a_hang_are_retryable(receiver):
    receiver.fail_next(429, {"Retry-After": "12"})
    receiver.fail_next(503)
    receiver.hang_next(5)
    seen = []
    for _ in range(3):
        with pytest.raises(ChannelError) as err:
            run(lambda http: channel(http, timeout_s=0.5).send(Target("webhook", receiver.url), card()))
        seen.append((err.value.code, err.value.retry_after_s, err.value.permanent))
    assert seen == [("rate_limited", 12.0, False), ("platform_error", None, False), ("timeout", None, False)]


def test_neither_the_secret_nor_the_receiver_url_leaks(receiver):
    with capture_logs() as logs:
        receiver.fail_next(500)
        with pytest.raises(ChannelError) as err:
            run(lambda http: channel(http).send(Target("webhook", receiver.url), card()))
        run(lambda http: channel(http).send(Target("webhook", receiver.url), card()))
    assert_no_secrets([WEBHOOK_SECRET, LINK_SECRET, "receiver-url-key"], receiver.accepted, err.value, logs)
