"""Feishu/Lark adapter against the fake open platform (tests/fakes/feishu.py, built from the
open.feishu.cn pages on tenant_access_token, im/v1/messages, card JSON 2.0, card callbacks and the
Encrypt Key)."""
from __future__ import annotations

import json
import time

import pytest

from services.notifier.channels.base import CallbackRefused, ChannelError, Click, Target
from services.notifier.channels.cards import card_from_checkpoint, pack_value
from services.notifier.channels.feishu import FeishuChannel, feishu_decrypt, receive_id_type
from tests.fakes import feishu as fake
from tests.fakes.support import assert_no_secrets, capture_logs, checkpoint, resolved, run

SECRETS = [fake.APP_SECRET, fake.ENCRYPT_KEY, fake.VERIFICATION_TOKEN]
TARGET = Target("feishu", "oc_review_group", "group")


@pytest.fixture()
def feishu():
    with fake.FakeFeishu().running() as server:
        yield server


def channel(http=None, server=None, **over) -> FeishuChannel:
    settings = {"app_id": fake.APP_ID, "app_secret": fake.APP_SECRET, "verification_token": fake.VERIFICATION_TOKEN,
                "encrypt_key": fake.ENCRYPT_KEY, "api_base_url": server.base_url if server else "http://127.0.0.1:9",
                "timeout_s": 1.0, **over}
    return FeishuChannel(settings, http, "https://hitl.example.com")


def test_decryption_matches_feishus_documented_example():
    assert feishu_decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == b"hello world"


def test_receive_id_type_follows_the_address():
    assert [receive_id_type(Target("feishu", a, k)) for a, k in
            [("oc_1", "group"), ("ou_1", "user"), ("on_1", "user"), ("a@b.c", "user"), ("1234", "user")]] == \
        ["chat_id", "open_id", "union_id", "email", "user_id"]


def test_send_gets_a_tenant_token_and_posts_a_2_0_card_with_a_form(feishu):
    cp = checkpoint()
    ref = run(lambda http: channel(http, feishu).send(TARGET, card_from_checkpoint(cp)))
    token_call, create = feishu.requests
    assert token_call.json == {"app_id": fake.APP_ID, "app_secret": fake.APP_SECRET}
    assert create.headers["authorization"].startswith("Bearer t-")
    assert create.query == {"receive_id_type": "chat_id"}
    card = json.loads(create.json["content"])
    assert card["schema"] == "2.0" and card["config"] == {"update_multi": True}
    *_, approve, abort, form = card["body"]["elements"]
    assert approve["behaviors"] == [{"type": "callback", "value": {"hitl": pack_value(cp["id"], "approve")}}]
    assert abort["name"] == "hitl_3_abort" and abort["type"] == "danger"
    assert form["tag"] == "form" and form["elements"][0]["tag"] == "input"
    assert [(b["name"], b["form_action_type"]) for b in form["elements"][1:]] == \
        [("hitl_1_revise", "submit"), ("hitl_2_edit", "submit")]
    assert ref.ref == {"message_id": "om_0000000000000001"}


def test_the_tenant_token_is_cached_and_refreshed_when_refused(feishu):
    async def scenario(http):
        ch = channel(http, feishu)
        await ch.send(TARGET, card_from_checkpoint(checkpoint()))
        await ch.send(TARGET, card_from_checkpoint(checkpoint()))
        feishu.expire_tokens()
        await ch.send(TARGET, card_from_checkpoint(checkpoint()))

    run(scenario)
    paths = [r.path.rsplit("/", 1)[-1] for r in feishu.requests]
    assert paths == ["internal", "messages", "messages", "messages", "internal", "messages"]


def test_update_patches_the_message_with_the_outcome_and_no_buttons(feishu):
    cp = checkpoint()

    async def scenario(http):
        ch = channel(http, feishu)
        ref = await ch.send(TARGET, card_from_checkpoint(cp))
        await ch.update(ref, card_from_checkpoint(resolved(cp, "abort", "bob", "feishu")))
        return ref

    ref = run(scenario)
    card = feishu.messages[ref.ref["message_id"]]
    assert card["header"]["template"] == "red"
    assert [e["tag"] for e in card["body"]["elements"]] == ["markdown"] * 4
    assert card["body"]["elements"][-1]["content"] == "**Aborted by bob via feishu at 2023-11-14 22:16 UTC**"


def test_update_after_a_click_uses_the_delayed_update_token(feishu):
    cp = checkpoint()
    token = feishu.issue_update_token()
    click = Click("feishu", "ou_alice", "approve", pack_value(cp["id"], "approve"), "k", update_token=token)

    async def scenario(http):
        ch = channel(http, feishu)
        ref = await ch.send(TARGET, card_from_checkpoint(cp))
        await ch.update(ref, card_from_checkpoint(resolved(cp)), click)

    run(scenario)
    assert feishu.update_tokens[token] == 2
    assert feishu.calls("/open-apis/interactive/v1/card/update")[0].json["token"] == token


def test_rate_limit_and_server_errors_are_retryable(feishu):
    feishu.fail_next(429, {"x-ogw-ratelimit-reset": "52"}, {"code": 99991400, "msg": "request trigger frequency limit"})
    with pytest.raises(ChannelError) as limited:
        run(lambda http: channel(http, feishu).send(TARGET, card_from_checkpoint(checkpoint())))
    assert (limited.value.code, limited.value.retry_after_s, limited.value.permanent) == ("rate_limited", 52.0, False)
    feishu.fail_next(400, {"x-ogw-ratelimit-reset": "9"}, {"code": 99991400, "msg": "request trigger frequency limit"})
    with pytest.raises(ChannelError) as old_style:
        run(lambda http: channel(http, feishu).send(TARGET, card_from_checkpoint(checkpoint())))
    assert old_style.value.retry_after_s == 9.0 and not old_style.value.permanent
    feishu.fail_next(503)
    with pytest.raises(ChannelError) as broken:
        run(lambda http: channel(http, feishu).send(TARGET, card_from_checkpoint(checkpoint())))
    assert not broken.value.permanent


def test_wrong_app_secret_is_a_permanent_error_that_names_no_secret(feishu):
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, feishu, app_secret="nope-secret").send(TARGET,
                                                                               card_from_checkpoint(checkpoint())))
    assert err.value.permanent and "nope-secret" not in str(err.value)


def test_a_hanging_platform_times_out(feishu):
    feishu.hang_next(5)
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, feishu, timeout_s=0.5).send(TARGET, card_from_checkpoint(checkpoint())))
    assert err.value.code == "timeout"


def test_encrypted_url_verification_answers_the_challenge():
    challenge = {"challenge": "ajls384kdjx98XX", "token": fake.VERIFICATION_TOKEN, "type": "url_verification"}
    result = channel().parse_callback(fake.callback(challenge, signed=False))
    assert json.loads(result.answer.body) == {"challenge": "ajls384kdjx98XX"}
    with pytest.raises(CallbackRefused):
        channel().parse_callback(fake.callback({**challenge, "token": "forged"}, signed=False))


def test_button_click_is_decrypted_verified_and_keyed_by_event_id():
    value = pack_value("cp-1", "approve")
    request = fake.callback(fake.card_action_event(value={"hitl": value}))
    first, again = channel().parse_callback(request), channel().parse_callback(request)
    click = first.click
    assert (click.user_id, click.action, click.value) == ("ou_alice", "approve", value)
    assert click.update_token == "c-295ee57216a5dc9de90fefd0aadb4b1d7d337fc7"
    assert click.message == {"message_id": "om_0000000000000001"}
    assert json.loads(first.answer.body)["toast"]["type"] == "info"
    assert again.click.idempotency_key == click.idempotency_key == "feishu:f7984f25108f8137722bb63cee927e66"


def test_form_submit_carries_the_typed_text_and_empty_text_gets_a_toast():
    ok = channel().parse_callback(fake.callback(fake.card_action_event(
        name="hitl_1_revise", form_value={"hitl_text": "more formal"})))
    assert (ok.click.action, ok.click.text, ok.click.value) == ("revise", "more formal", None)
    empty = channel().parse_callback(fake.callback(fake.card_action_event(name="hitl_2_edit", form_value={})))
    assert empty.click is None and json.loads(empty.answer.body)["toast"]["type"] == "error"


def test_bad_signature_stale_timestamp_and_undecryptable_bodies_are_refused():
    event = fake.card_action_event(value={"hitl": pack_value("cp-1", "approve")})
    with pytest.raises(CallbackRefused) as bad:
        channel().parse_callback(fake.callback(event, sign_key="another-key"))
    with pytest.raises(CallbackRefused) as stale:
        channel().parse_callback(fake.callback(event, timestamp=time.time() - 600))
    with pytest.raises(CallbackRefused) as garbled:
        channel(encrypt_key="a-different-encrypt-key").parse_callback(
            fake.callback(event, sign_key="a-different-encrypt-key"))
    with pytest.raises(CallbackRefused) as plain:
        channel().parse_callback(fake.callback(event, encrypt_key=None))
    with pytest.raises(CallbackRefused) as forged_token:
        channel().parse_callback(fake.callback(fake.card_action_event(value={}, verification_token="x")))
    assert [e.value.code for e in (bad, stale, garbled, plain, forged_token)] == \
        ["bad_signature", "stale_timestamp", "undecryptable", "undecryptable", "bad_signature"]


def test_without_encrypt_key_the_verification_token_still_guards():
    ch = channel(encrypt_key=None)
    click = fake.card_action_event(value={"hitl": pack_value("c", "abort")})
    ok = ch.parse_callback(fake.callback(click, encrypt_key=None))
    assert ok.click.action == "abort"
    with pytest.raises(CallbackRefused):
        ch.parse_callback(fake.callback(fake.card_action_event(value={}, verification_token="guess"), encrypt_key=None))


def test_secrets_appear_in_no_request_card_error_or_log(feishu):
    with capture_logs() as logs:
        ref = run(lambda http: channel(http, feishu).send(TARGET, card_from_checkpoint(checkpoint())))
        feishu.fail_next(400, body={"code": 230002, "msg": "bot not in chat"})
        with pytest.raises(ChannelError) as err:
            run(lambda http: channel(http, feishu).send(TARGET, card_from_checkpoint(checkpoint())))
        with pytest.raises(CallbackRefused) as refused:
            channel().parse_callback(fake.callback(fake.card_action_event(value={}), sign_key="x"))
    cards = [r.json for r in feishu.requests if r.path.endswith("/messages")]
    assert_no_secrets(SECRETS, cards, ref, err.value, refused.value, logs, repr(channel()))
