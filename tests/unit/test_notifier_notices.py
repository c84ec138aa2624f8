"""Telling the one person who clicked why nothing was decided (`Channel.notice`), on each platform
that can: Slack chat.postEphemeral (https://api.slack.com/methods/chat.postEphemeral), a Feishu
text message (open.feishu.cn im-v1/message/create, msg_type text), a WeCom app text message
(developer.work.weixin.qq.com/document/path/90236, msgtype text). Feishu's toast says it at once."""
from __future__ import annotations

import json

from services.notifier.channels.base import Click, HttpAnswer
from services.notifier.channels.email import EmailChannel
from services.notifier.channels.feishu import FeishuChannel
from services.notifier.channels.slack import SlackChannel
from services.notifier.channels.wecom import WeComChannel
from services.notifier.decisions import Decisions
from shared.settings import ReviewerConfig, Settings
from tests.fakes import feishu as fake_feishu
from tests.fakes import slack as fake_slack
from tests.fakes import wecom as fake_wecom
from tests.fakes.support import run


def click(channel: str, user: str, message: dict | None = None) -> Click:
    return Click(channel, user, "approve", "cp|approve", f"{channel}:1", message=message or {})


def test_slack_tells_the_clicker_alone_in_the_cards_channel():
    with fake_slack.FakeSlack().running() as slack:
        ch = lambda http: SlackChannel({"bot_token": fake_slack.BOT_TOKEN, "signing_secret": "s",  # noqa: E731
                                        "api_base_url": slack.api_base_url}, http, "https://h")
        told = run(lambda http: ch(http).notice(click("slack", "U0BOB", {"channel": "C0REVIEW", "ts": "1.2"}),
                                                "Nothing was decided: <reasons> & more"))
        assert told and slack.ephemerals == [{"channel": "C0REVIEW", "user": "U0BOB",
                                              "text": "Nothing was decided: &lt;reasons&gt; &amp; more"}]
        assert run(lambda http: ch(http).notice(click("slack", "U0BOB"), "x")) is False  # no channel to say it in


def test_feishu_and_wecom_send_the_clicker_a_text_message():
    with fake_feishu.FakeFeishu().running() as feishu, fake_wecom.FakeWeCom().running() as wecom:
        fs = lambda http: FeishuChannel({"app_id": fake_feishu.APP_ID, "app_secret": fake_feishu.APP_SECRET,  # noqa: E731
                                         "verification_token": "v", "api_base_url": feishu.base_url}, http, "https://h")
        wc = lambda http: WeComChannel({"corp_id": fake_wecom.CORP_ID, "corp_secret": fake_wecom.CORP_SECRET,  # noqa: E731
                                        "agent_id": fake_wecom.AGENT_ID, "token": fake_wecom.TOKEN,
                                        "encoding_aes_key": fake_wecom.AES_KEY, "api_base_url": wecom.base_url},
                                       http, "https://h")
        assert run(lambda http: fs(http).notice(click("feishu", "ou_bob"), "不是审批人: not an assignee"))
        assert run(lambda http: wc(http).notice(click("wecom", "bob"), "not an assignee"))
        assert feishu.texts == [{"receive_id": "ou_bob", "text": "不是审批人: not an assignee"}]
        (sent,) = wecom.texts
        assert (sent["touser"], sent["text"]["content"], sent["agentid"]) == ("bob", "not an assignee", 1000002)


def test_a_link_channel_has_no_one_to_tell():
    ch = EmailChannel({"host": "h", "port": 25, "from_address": "a@b.c"}, None, "https://h")
    assert run(lambda http: ch.notice(click("email", "x"), "text")) is False


def test_feishus_toast_says_at_once_that_an_unknown_user_decided_nothing():
    settings = Settings(reviewers=[ReviewerConfig(name="alice", token="rv-alice-token", feishu="ou_alice")])
    decisions = Decisions(settings, None, None, None)  # type: ignore[arg-type]
    ch = FeishuChannel({"app_id": "a", "app_secret": "b", "verification_token": "c"}, None, "https://h")
    sent = HttpAnswer.json({"toast": {"type": "info", "content": "Decision received"}})
    answer, told = decisions.early_answer(ch, click("feishu", "ou_mallory"), sent)
    toast = json.loads(answer.body)["toast"]
    assert told and toast["type"] == "error" and '"feishu": "ou_mallory"' in toast["content"]
    assert decisions.early_answer(ch, click("feishu", "ou_alice"), sent) == (sent, False)
