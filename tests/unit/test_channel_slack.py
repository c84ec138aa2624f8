"""Slack adapter against the fake Slack Web API (tests/fakes/slack.py, built from
api.slack.com/methods/chat.postMessage, chat.update, views.open, the Block Kit reference, the
interaction payload references and "Verifying requests from Slack")."""
from __future__ import annotations

import json
import time

import pytest

from services.notifier.channels.base import CallbackRefused, CallbackRequest, ChannelError, Target
from services.notifier.channels.cards import card_from_checkpoint, pack_value
from services.notifier.channels.slack import SlackChannel, slack_signature
from tests.fakes import slack as fake
from tests.fakes.support import assert_no_secrets, capture_logs, checkpoint, resolved, run

SECRETS = [fake.BOT_TOKEN, fake.SIGNING_SECRET]
TARGET = Target("slack", "C0REVIEW", "group")


@pytest.fixture()
def slack():
    with fake.FakeSlack().running() as server:
        yield server


def channel(http, server=None, **over) -> SlackChannel:
    settings = {"bot_token": fake.BOT_TOKEN, "signing_secret": fake.SIGNING_SECRET,
                "api_base_url": server.api_base_url if server else "http://127.0.0.1:9", "timeout_s": 1.0, **over}
    return SlackChannel(settings, http, "https://hitl.example.com")


def test_signature_matches_slacks_documented_example():
    # The worked example on api.slack.com/authentication/verifying-requests-from-slack.
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    assert (slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body)
            == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")
    request = CallbackRequest("POST", "/", {"X-Slack-Request-Timestamp": "1531420618", "X-Slack-Signature":
                              "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                              "Content-Type": "application/x-www-form-urlencoded"}, {}, body)
    ch = SlackChannel({"bot_token": "x", "signing_secret": "8f742231b10e8888abcd99yyyzzz85a5"}, None, "https://h")
    with pytest.raises(CallbackRefused) as err:  # the signature passes; a slash command is not an interaction
        ch.parse_callback(request, now=1531420618 + 10)
    assert err.value.code == "malformed"
    with pytest.raises(CallbackRefused) as err:
        ch.parse_callback(CallbackRequest("POST", "/", {**request.headers, "X-Slack-Request-Timestamp": "1531420619"},
                                          {}, body), now=1531420618 + 10)
    assert err.value.code == "bad_signature"


def test_send_posts_block_kit_with_bearer_auth_and_the_decision_buttons(slack):
    cp = checkpoint(node_output="y" * 5000)
    ref = run(lambda http: channel(http, slack).send(TARGET, card_from_checkpoint(cp)))
    (call,) = slack.calls("/api/chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {fake.BOT_TOKEN}"
    body = call.json
    assert body["channel"] == "C0REVIEW" and "Please check the draft" in body["text"]
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["header", "section", "section", "section", "actions"]
    assert "&lt;reply&gt; &amp; tone" in body["blocks"][1]["text"]["text"]  # mrkdwn escaping
    preview = body["blocks"][3]["text"]["text"]
    assert len(preview) == 3000 and preview.endswith("…```")  # truncated to the section limit
    buttons = body["blocks"][4]["elements"]
    assert [b["value"] for b in buttons] == [pack_value(cp["id"], a) for a in ("approve", "revise", "edit", "abort")]
    assert buttons[0]["style"] == "primary" and buttons[3]["style"] == "danger" and "style" not in buttons[1]
    assert ref.ref == {"channel": "C0REVIEW", "ts": next(iter(slack.messages))[1]}


def test_update_after_resolution_removes_buttons_and_shows_the_outcome(slack):
    cp = checkpoint()

    async def scenario(http):
        ch = channel(http, slack)
        ref = await ch.send(TARGET, card_from_checkpoint(cp))
        return await ch.update(ref, card_from_checkpoint(resolved(cp, "approve", "alice", "slack")))

    ref = run(scenario)
    (call,) = slack.calls("/api/chat.update")
    blocks = call.json["blocks"]
    assert call.json["ts"] == ref.ref["ts"]
    assert "actions" not in [b["type"] for b in blocks]
    assert blocks[-1]["elements"][0]["text"] == \
        ":white_check_mark: *Approved by alice via slack at 2023-11-14 22:16 UTC*"


def test_platform_refusals_become_permanent_channel_errors(slack):
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, slack).send(Target("slack", "C0UNKNOWN"), card_from_checkpoint(checkpoint())))
    assert (err.value.code, err.value.permanent) == ("channel_not_found", True)
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, slack, bot_token="xoxb-wrong").send(TARGET, card_from_checkpoint(checkpoint())))
    assert err.value.code == "invalid_auth" and "xoxb-wrong" not in str(err.value)


def test_429_with_retry_after_and_500_are_retryable_channel_errors(slack):
    slack.fail_next(429, {"Retry-After": "17"}, {"ok": False, "error": "ratelimited"})
    slack.fail_next(500, body=b"oops")
    card = card_from_checkpoint(checkpoint())
    with pytest.raises(ChannelError) as limited:
        run(lambda http: channel(http, slack).send(TARGET, card))
    with pytest.raises(ChannelError) as broken:
        run(lambda http: channel(http, slack).send(TARGET, card))
    assert (limited.value.code, limited.value.retry_after_s, limited.value.permanent) == ("rate_limited", 17.0, False)
    assert (broken.value.code, broken.value.permanent) == ("platform_error", False)


def test_a_hanging_slack_times_out(slack):
    slack.hang_next(5)
    started = time.monotonic()
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, slack, timeout_s=0.5).send(TARGET, card_from_checkpoint(checkpoint())))
    assert err.value.code == "timeout" and not err.value.permanent
    assert time.monotonic() - started < 3


def test_approve_click_is_verified_and_replays_carry_the_same_key():
    cp = checkpoint()
    value = pack_value(cp["id"], "approve")
    request = fake.interaction(fake.block_actions(value, "hitl_0_approve"))
    ch = channel(None)
    first, again = ch.parse_callback(request), ch.parse_callback(request)
    assert first.answer.status == 200 and first.follow_up is None
    click = first.click
    assert (click.user_id, click.action, click.value) == ("U0ALICE", "approve", value)
    assert click.message == {"channel": "C0REVIEW", "ts": "1700000000.000001"}
    assert again.click.idempotency_key == click.idempotency_key  # dedup is the caller's


def test_bad_signature_and_stale_timestamp_are_refused():
    payload = fake.block_actions(pack_value("cp", "approve"), "hitl_0_approve")
    with pytest.raises(CallbackRefused) as bad:
        channel(None).parse_callback(fake.interaction(payload, secret="not-the-secret"))
    with pytest.raises(CallbackRefused) as stale:
        channel(None).parse_callback(fake.interaction(payload, timestamp=time.time() - 301))
    assert (bad.value.code, bad.value.status) == ("bad_signature", 401)
    assert stale.value.code == "stale_timestamp"
    unsigned = CallbackRequest("POST", "/", {}, {}, b"payload=%7B%7D")
    with pytest.raises(CallbackRefused):
        channel(None).parse_callback(unsigned)


def test_malformed_body_is_refused_after_the_signature():
    request = fake.signed_request(b"payload=not-json", "application/x-www-form-urlencoded")
    with pytest.raises(CallbackRefused) as err:
        channel(None).parse_callback(request)
    assert (err.value.code, err.value.status) == ("malformed", 400)


def test_events_api_url_verification_answers_the_challenge():
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"}).encode()
    result = channel(None).parse_callback(fake.signed_request(body, "application/json"))
    assert json.loads(result.answer.body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_revise_opens_a_modal_and_its_submission_is_a_click_with_text(slack):
    cp = checkpoint()
    value = pack_value(cp["id"], "revise")
    trigger = slack.issue_trigger()
    ch_result = channel(None).parse_callback(
        fake.interaction(fake.block_actions(value, "hitl_1_revise", trigger_id=trigger)))
    assert ch_result.click is None and ch_result.answer.status == 200

    async def follow(http):
        ch = channel(http, slack)
        click = fake.interaction(fake.block_actions(value, "hitl_1_revise", trigger_id=trigger))
        await ch.parse_callback(click).follow_up()

    run(follow)
    (view,) = slack.views
    assert view["title"]["text"] == "Revise" and view["blocks"][0]["element"]["multiline"] is True
    empty = channel(None).parse_callback(fake.interaction(fake.view_submission(view, "  ")))
    assert json.loads(empty.answer.body)["response_action"] == "errors" and empty.click is None
    done = channel(None).parse_callback(fake.interaction(fake.view_submission(view, "shorter please")))
    assert (done.click.action, done.click.text, done.click.value) == ("revise", "shorter please", value)
    assert done.click.message == {"channel": "C0REVIEW", "ts": "1700000000.000001"}
    assert done.click.idempotency_key == "slack:view:V00000001"


def test_an_expired_trigger_makes_the_follow_up_fail_loudly(slack):
    result = channel(None).parse_callback(
        fake.interaction(fake.block_actions(pack_value("cp", "edit"), "hitl_2_edit", trigger_id="never-issued")))

    async def follow(http):
        ch = channel(http, slack)
        await ch.parse_callback(fake.interaction(
            fake.block_actions(pack_value("cp", "edit"), "hitl_2_edit", trigger_id="never-issued"))).follow_up()

    assert result.follow_up is not None
    with pytest.raises(ChannelError) as err:
        run(follow)
    assert err.value.code == "expired_trigger_id"


def test_secrets_appear_in_no_card_error_or_log_line(slack):
    with capture_logs() as logs:
        slack.fail_next(429, {"Retry-After": "3"})
        try:
            run(lambda http: channel(http, slack).send(TARGET, card_from_checkpoint(checkpoint())))
        except ChannelError as exc:
            error = exc
        ref = run(lambda http: channel(http, slack).send(TARGET, card_from_checkpoint(checkpoint())))
        try:
            channel(None).parse_callback(fake.interaction({"type": "block_actions"}, secret="wrong"))
        except CallbackRefused as exc:
            refused = exc
    sent = [r.json for r in slack.requests]
    assert logs and error and refused
    assert_no_secrets(SECRETS, sent, ref, error, refused, logs, repr(channel(None)))


def test_missing_settings_are_named_without_values():
    with pytest.raises(ValueError) as err:
        SlackChannel({"bot_token": fake.BOT_TOKEN}, None, "https://h")
    assert "signing_secret" in str(err.value) and fake.BOT_TOKEN not in str(err.value)
