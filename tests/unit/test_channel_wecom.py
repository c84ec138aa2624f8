"""WeCom adapter against the fake WeCom API (tests/fakes/wecom.py, built from
developer.work.weixin.qq.com pages 91039, 90236, 94888, 90930, 90858 and 91144)."""
from __future__ import annotations

import time

import pytest

from services.notifier.channels.base import CallbackRefused, CallbackRequest, ChannelError, Click, Target
from services.notifier.channels.cards import card_from_checkpoint, pack_value
from services.notifier.channels.wecom import WeComChannel, wecom_decrypt
from services.notifier.links import LinkSigner
from tests.fakes import wecom as fake
from tests.fakes.support import assert_no_secrets, capture_logs, checkpoint, resolved, run

LINK_SECRET = "link-secret-for-wecom-tests-0123456789"
SECRETS = [fake.CORP_SECRET, fake.TOKEN, fake.AES_KEY, LINK_SECRET]
TARGET = Target("wecom", "alice|bob", "user")
SIGNER = LinkSigner(LINK_SECRET, "https://hitl.example.com")


def make_link(cid, action, form_action):
    return SIGNER.make_link(cid, "alice", action, time.time() + 3600, form_action)


def card(cp=None):
    return card_from_checkpoint(cp or checkpoint(), link_policy=WeComChannel.link_policy, make_link=make_link)


@pytest.fixture()
def wecom():
    with fake.FakeWeCom().running() as server:
        yield server


def channel(http=None, server=None, **over) -> WeComChannel:
    settings = {"corp_id": fake.CORP_ID, "corp_secret": fake.CORP_SECRET, "agent_id": fake.AGENT_ID,
                "token": fake.TOKEN, "encoding_aes_key": fake.AES_KEY, "timeout_s": 1.0,
                "api_base_url": server.base_url if server else "http://127.0.0.1:9", **over}
    return WeComChannel(settings, http, "https://hitl.example.com")


def test_wecoms_sample_url_check_and_message_verify_and_decrypt():
    # callback/Sample.py of the official WXBizMsgCrypt library linked from document 91144.
    ch = WeComChannel({"corp_id": fake.SAMPLE_CORP_ID, "corp_secret": "x", "agent_id": "1",
                       "token": fake.SAMPLE_TOKEN, "encoding_aes_key": fake.SAMPLE_AES_KEY}, None, "https://h")
    echostr = "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
    query = {"msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "timestamp": "1476416373",
             "nonce": "47744683", "echostr": echostr}
    answer = ch.parse_callback(CallbackRequest("GET", "/", {}, query, b""), now=1476416373).answer
    assert answer.body == b"1288432023552776189" and answer.headers["content-type"].startswith("text/plain")
    encrypted = ("Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLN"
                 "shw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh"
                 "010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNf"
                 "SsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+")
    msg, receive_id = wecom_decrypt(fake.SAMPLE_AES_KEY, encrypted)
    assert receive_id == fake.SAMPLE_CORP_ID and b"<Content>" in msg
    body = (f"<xml><ToUserName><![CDATA[{fake.SAMPLE_CORP_ID}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    post = CallbackRequest("POST", "/", {}, {"msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e",
                                             "timestamp": "1476422779", "nonce": "1597212914"}, body.encode())
    result = ch.parse_callback(post, now=1476422779)
    assert result.click is None and result.answer.body == b""  # a text message, not a card click


def test_send_posts_a_button_interaction_card_with_links_for_text_actions(wecom):
    cp = checkpoint()
    ref = run(lambda http: channel(http, wecom).send(TARGET, card(cp)))
    token_call, send = wecom.requests
    assert token_call.query == {"corpid": fake.CORP_ID, "corpsecret": fake.CORP_SECRET}
    assert send.query["access_token"].startswith("at_")
    body = send.json
    assert body["touser"] == "alice|bob" and body["agentid"] == 1000002 and body["msgtype"] == "template_card"
    tc = body["template_card"]
    assert tc["card_type"] == "button_interaction" and tc["task_id"] == ref.ref["task_id"]
    by_text = {b["text"]: b for b in tc["button_list"]}
    assert by_text["Approve"]["key"] == pack_value(cp["id"], "approve")
    assert by_text["Revise…"]["type"] == 1 and by_text["Revise…"]["url"].startswith("https://hitl.example.com/decide/")
    assert tc["button_list"][2]["text"] == "Edit outp…"  # 10 characters at most
    claim = SIGNER.verify(tc["button_list"][2]["url"].rsplit("/", 1)[1])
    assert (claim.checkpoint_id, claim.action) == (cp["id"], "edit")
    assert ref.ref["response_code"] in wecom.response_codes


def test_update_uses_the_clicks_response_code_once_and_shows_the_outcome(wecom):
    cp = checkpoint()

    async def scenario(http):
        ch = channel(http, wecom)
        ref = await ch.send(TARGET, card(cp))
        click = Click("wecom", "alice", "approve", pack_value(cp["id"], "approve"), "k",
                      update_token=wecom.issue_response_code())
        ref2 = await ch.update(ref, card_from_checkpoint(resolved(cp, "approve", "alice", "wecom")), click)
        with pytest.raises(ChannelError) as spent:
            await ch.update(ref2, card_from_checkpoint(resolved(cp)))
        return ref2, spent.value

    ref2, spent = run(scenario)
    (update,) = wecom.updates
    assert update["userids"] == ["alice", "bob"]
    tc = update["template_card"]
    assert tc["card_type"] == "text_notice" and "button_list" not in tc
    assert tc["sub_title_text"].startswith("Approved by alice via wecom at ")
    assert ref2.ref["response_code"] is None
    assert (spent.code, spent.permanent) == ("no_response_code", True)  # one update per code


def test_an_expired_access_token_is_refreshed_once(wecom):
    async def scenario(http):
        ch = channel(http, wecom)
        await ch.send(TARGET, card())
        wecom.tokens.clear()
        await ch.send(TARGET, card())

    run(scenario)
    assert [r.path for r in wecom.requests].count("/cgi-bin/gettoken") == 2


def test_frequency_limit_busy_and_http_errors_become_channel_errors(wecom):
    wecom.fail_next(200, body={"errcode": 45009, "errmsg": "api freq out of limit"})
    with pytest.raises(ChannelError) as limited:
        run(lambda http: channel(http, wecom).send(TARGET, card()))
    assert (limited.value.code, limited.value.retry_after_s, limited.value.permanent) == ("rate_limited", 60.0, False)
    wecom.fail_next(502)
    with pytest.raises(ChannelError) as broken:
        run(lambda http: channel(http, wecom).send(TARGET, card()))
    assert broken.value.code == "platform_error" and not broken.value.permanent
    with pytest.raises(ChannelError) as refused:
        run(lambda http: channel(http, wecom, corp_secret="wrong-secret").send(TARGET, card()))
    assert "wrong-secret" not in str(refused.value)


def test_a_hanging_wecom_times_out(wecom):
    wecom.hang_next(5)
    with pytest.raises(ChannelError) as err:
        run(lambda http: channel(http, wecom, timeout_s=0.5).send(TARGET, card()))
    assert err.value.code == "timeout"


def test_url_check_answers_the_plain_echostr():
    assert channel().parse_callback(fake.url_check("echo-4711")).answer.body == b"echo-4711"


def test_card_click_is_decrypted_and_replays_have_the_same_key():
    value = pack_value("cp-1", "abort")
    request = fake.template_card_event(value)
    first, again = channel().parse_callback(request), channel().parse_callback(request)
    click = first.click
    assert (click.user_id, click.action, click.value, click.update_token) == ("alice", "abort", value, "rc_from_click")
    assert first.answer.status == 200 and first.answer.body == b""
    assert again.click.idempotency_key == click.idempotency_key


def test_bad_signature_stale_undecryptable_and_foreign_corp_are_refused():
    value = pack_value("cp-1", "approve")
    cases = {
        "bad_signature": fake.template_card_event(value, token="another-token"),
        "stale_timestamp": fake.template_card_event(value, timestamp=time.time() - 3600),
        "wrong_app": fake.template_card_event(value, corp_id="ww_someone_else"),
    }
    for code, request in cases.items():
        with pytest.raises(CallbackRefused) as err:
            channel().parse_callback(request)
        assert err.value.code == code
    other_key = fake.template_card_event(value, aes_key="ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut")
    with pytest.raises(CallbackRefused) as err:
        channel().parse_callback(other_key)
    assert err.value.code in ("undecryptable", "wrong_app")  # a wrong key yields garbage, never a click
    with pytest.raises(CallbackRefused) as err:
        channel().parse_callback(CallbackRequest("POST", "/", {}, {}, b"not xml"))
    assert err.value.code == "malformed"


def test_secrets_appear_in_no_card_link_error_or_log(wecom):
    with capture_logs() as logs:
        ref = run(lambda http: channel(http, wecom).send(TARGET, card()))
        wecom.fail_next(200, body={"errcode": 81013, "errmsg": "user & party & tag all invalid"})
        with pytest.raises(ChannelError) as err:
            run(lambda http: channel(http, wecom).send(TARGET, card()))
        with pytest.raises(CallbackRefused) as refused:
            channel().parse_callback(fake.template_card_event("x|approve", token="bad"))
    cards = [r.json for r in wecom.requests if r.path.endswith("/send")]
    assert err.value.permanent and logs
    assert_no_secrets(SECRETS, cards, ref, err.value, refused.value, logs, repr(channel()))
