"""The card one recipient gets (Deliverer.card): decision links bound to that recipient's reviewer,
expiring with the checkpoint; no decision buttons where nobody could be bound; the reminder titles."""
from __future__ import annotations

import time

from services.notifier.channels.base import LinkPolicy
from services.notifier.channels.dingtalk import DingTalkChannel, render_notice
from services.notifier.channels.email import EmailChannel
from services.notifier.channels.slack import SlackChannel
from services.notifier.channels.wecom import WeComChannel
from services.notifier.delivery import Deliverer
from services.notifier.links import LinkSigner
from shared.settings import Settings
from tests.fakes import wecom as fake_wecom

SIGNER = LinkSigner("card-test-link-secret-0123456789abcdef", "https://hitl.example.com")
EMAIL = EmailChannel({"host": "h", "port": 25, "from_address": "hitl@x.io"}, None, "https://hitl.example.com")
SLACK = SlackChannel({"bot_token": "xoxb-1", "signing_secret": "s"}, None, "https://hitl.example.com")
WECOM = WeComChannel({"corp_id": fake_wecom.CORP_ID, "corp_secret": "x", "agent_id": "1", "token": "t",
                      "encoding_aes_key": fake_wecom.AES_KEY}, None, "https://hitl.example.com")
DINGTALK = DingTalkChannel({"webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=t", "secret": "S"},
                           None, "https://hitl.example.com")


def deliverer(**settings) -> Deliverer:
    return Deliverer(Settings(**settings), None, None, {}, SIGNER)  # type: ignore[arg-type]


def cp(**over) -> dict:
    return {"id": "c1", "app": "demo", "node_id": "draft", "round": 1, "status": "open", "message": "Check it",
            "node_output": "text", "assignees": [], "deadline": time.time() + 600, **over}


def row(reviewer: str | None = "alice", event: str = "opened") -> dict:
    return {"reviewer": reviewer, "event": event}


def test_links_decide_as_the_recipients_reviewer_on_that_channel_until_the_deadline():
    deadline = time.time() + 600
    card = deliverer().card(EMAIL, cp(deadline=deadline), row("bob"))  # type: ignore[arg-type]
    claims = [SIGNER.verify(b.url.rsplit("/", 1)[1]) for b in card.buttons if b.url]
    assert [c.action for c in claims] == ["approve", "revise", "edit", "abort"]
    assert {(c.reviewer, c.channel, c.checkpoint_id) for c in claims} == {("bob", "email", "c1")}
    assert all(abs(c.expires_at - int(deadline)) <= 1 for c in claims)
    short = deliverer(notifier_link_ttl_s=60).card(EMAIL, cp(deadline=time.time() + 3600), row())  # type: ignore[arg-type]
    assert SIGNER.verify(short.buttons[0].url.rsplit("/", 1)[1]).expires_at <= time.time() + 61


def test_without_a_reviewer_to_bind_a_link_to_only_callback_buttons_remain():
    assert deliverer().card(EMAIL, cp(), row(None)).buttons == ()  # type: ignore[arg-type]
    wecom = deliverer().card(WECOM, cp(), row(None))  # type: ignore[arg-type]
    assert [b.action for b in wecom.buttons] == ["approve", "abort"]  # revise/edit would need a link
    assert WECOM.link_policy is LinkPolicy.text
    slack = deliverer().card(SLACK, cp(), row(None))  # type: ignore[arg-type]
    assert [b.action for b in slack.buttons] == ["approve", "revise", "edit", "abort"]  # callbacks name the clicker
    robot = deliverer().card(DINGTALK, cp(), row(None))  # type: ignore[arg-type]
    assert robot.buttons == () and render_notice(robot)["msgtype"] == "markdown"


def test_the_console_button_comes_with_the_console_url_and_reminders_say_what_they_are():
    d = deliverer(notifier_console_url="https://console.example.com/")
    card = d.card(SLACK, cp(), row(None, "reminder:e1"))  # type: ignore[arg-type]
    assert card.buttons[-1].url == "https://console.example.com/checkpoints/c1" and card.title.startswith("Reminder: ")
    assert d.card(SLACK, cp(), row(None, "deadline_near")).title.startswith("Deadline soon: ")  # type: ignore[arg-type]
    assert d.card(SLACK, cp(), row(None)).title == "Review needed: draft"  # type: ignore[arg-type]
