"""DingTalk robot adapter against the fake robot webhook (tests/fakes/dingtalk.py, built from
open.dingtalk.com custom-robot-access, the robot security settings and message type pages)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from services.notifier.channels.base import CallbackRefused, ChannelError, Target
from services.notifier.channels.cards import card_from_checkpoint
from services.notifier.channels.dingtalk import DingTalkChannel, dingtalk_sign
from services.notifier.links import LinkSigner
from tests.fakes import dingtalk as fake
from tests.fakes.support import assert_no_secrets, capture_logs, checkpoint, resolved, run

LINK_SECRET = "link-secret-for-dingtalk-0123456789ab"
SECRETS = [fake.ACCESS_TOKEN, fake.SECRET, fake.APP_SECRET, LINK_SECRET]
TARGET = Target("dingtalk", "ops-review-group", "group")
SIGNER = LinkSigner(LINK_SECRET, "https://hitl.example.com")


def card(cp=None):
    return card_from_checkpoint(cp or checkpoint(), link_policy=DingTalkChannel.link_policy,
                                make_link=lambda c, a, f: SIGNER.make_link(c, "dingtalk-ops", a, time.time() + 3600, f))


@pytest.fixture()
def dingtalk():
    with fake.FakeDingTalk().running() as server:
        yield server


def channel(http=None, server=None, **over) -> DingTalkChannel:
    settings = {"webhook_url": server.webhook_url if server else "http://127.0.0.1:9/robot/send?access_token=x",
                "secret": fake.SECRET, "app_secret": fake.APP_SECRET, "timeout_s": 1.0, **over}
    return DingTalkChannel(settings, http, "https://hitl.example.com")


def test_sign_is_the_documented_hmac_sha256_of_timestamp_newline_secret():
    expected = base64.b64encode(hmac.new(b"this is secret", b"1700000000000\nthis is secret", hashlib.sha256).digest())
    assert dingtalk_sign("this is secret", "1700000000000") == expected.decode()


def test_send_posts_a_signed_action_card_whose_buttons_are_signed_links(dingtalk):
    cp = checkpoint()
    run(lambda http: channel(http, dingtalk).send(TARGET, card(cp)))
    (call,) = dingtalk.requests
    assert call.query["access_token"] == fake.ACCESS_TOKEN
    assert call.query["sign"] == dingtalk_sign(fake.SECRET, call.query["timestamp"])
    ac = call.json["actionCard"]
    assert call.json["msgtype"] == "actionCard" and ac["btnOrientation"] == "1"
    assert [b["title"] for b in ac["btns"]] == ["Approve", "Revise…", "Edit output…", "Abort"]
    claims = [SIGNER.verify(b["actionURL"].rsplit("/", 1)[1]) for b in ac["btns"]]
    assert [(c.checkpoint_id, c.action, c.reviewer) for c in claims] == \
        [(cp["id"], a, "dingtalk-ops") for a in ("approve", "revise", "edit", "abort")]
    assert "\\<reply\\>" not in ac["text"] and "App:** support-bot" in ac["text"]


def test_update_posts_the_outcome_as_a_follow_up_message(dingtalk):
    cp = checkpoint()

    async def scenario(http):
        ch = channel(http, dingtalk)
        ref = await ch.send(TARGET, card(cp))
        await ch.update(ref, card_from_checkpoint(resolved(cp, "revise", "dingtalk-ops", "dingtalk")))

    run(scenario)
    follow_up = dingtalk.messages[-1]
    assert follow_up["msgtype"] == "markdown" and "btns" not in json.dumps(follow_up)
    assert "Sent back for revision by dingtalk-ops via dingtalk" in follow_up["markdown"]["text"]


def test_a_wrong_secret_is_a_permanent_error(dingtalk):
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, dingtalk, secret="SECwrong").send(TARGET, card()))
    assert (err.value.code, err.value.permanent) == ("errcode_310000", True)
    assert "SECwrong" not in str(err.value) and fake.ACCESS_TOKEN not in str(err.value)


def test_more_than_twenty_a_minute_is_rate_limited_for_ten_minutes(dingtalk):
    async def scenario(http):
        ch = channel(http, dingtalk)
        for _ in range(fake.PER_MINUTE):
            await ch.send(TARGET, card())
        await ch.send(TARGET, card())

    with pytest.raises(ChannelError) as err:
        run(scenario)
    assert (err.value.code, err.value.retry_after_s, err.value.permanent) == ("rate_limited", 600.0, False)


def test_http_429_500_and_a_hang_become_channel_errors(dingtalk):
    dingtalk.fail_next(429, {"Retry-After": "30"})
    dingtalk.fail_next(500)
    dingtalk.hang_next(5)
    errors = []
    for _ in range(3):
        with pytest.raises(ChannelError) as err:
            run(lambda http: channel(http, dingtalk, timeout_s=0.5).send(TARGET, card()))
        errors.append((err.value.code, err.value.retry_after_s, err.value.permanent))
    assert errors == [("rate_limited", 30.0, False), ("platform_error", None, False), ("timeout", None, False)]


def test_a_card_without_links_is_refused_before_sending():
    with pytest.raises(ValueError):
        run(lambda http: channel(http).send(TARGET, card_from_checkpoint(checkpoint())))


def test_robot_callback_is_verified_and_answers_without_a_decision():
    result = channel().parse_callback(fake.robot_callback())
    assert result.click is None and json.loads(result.answer.body)["msgtype"] == "text"


def test_robot_callback_with_bad_sign_or_old_timestamp_is_refused():
    with pytest.raises(CallbackRefused) as bad:
        channel().parse_callback(fake.robot_callback(app_secret="guess"))
    with pytest.raises(CallbackRefused) as stale:
        channel().parse_callback(fake.robot_callback(timestamp_ms=int((time.time() - 3700) * 1000)))
    with pytest.raises(CallbackRefused) as off:
        channel(app_secret=None).parse_callback(fake.robot_callback())
    assert (bad.value.code, stale.value.code, off.value.code) == ("bad_signature", "stale_timestamp", "no_callbacks")


def test_secrets_appear_in_no_message_error_or_log(dingtalk):
    with capture_logs() as logs:
        run(lambda http: channel(http, dingtalk).send(TARGET, card()))
        dingtalk.fail_next(200, body={"errcode": 300001, "errmsg": "token is not exist"})
        with pytest.raises(ChannelError) as err:
            run(lambda http: channel(http, dingtalk).send(TARGET, card()))
    assert_no_secrets(SECRETS, dingtalk.messages, err.value, logs, repr(channel()))
