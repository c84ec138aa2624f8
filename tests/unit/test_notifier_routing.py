"""Routing rules (HITL_NOTIFY), reviewer identities and channel settings: who is told, where, and
what refuses to start."""
from __future__ import annotations

import json

import pytest

from services.notifier.registry import build_channels
from services.notifier.routing import recipients
from shared.settings import Settings, SettingsError, load_settings
from shared.store.notifications import Recipient

APPS = [{"name": "demo", "checkpoint_token": "cp-demo-token"}, {"name": "other", "checkpoint_token": "cp-other-token"}]
REVIEWERS = [
    {"name": "alice", "token": "rv-alice-token", "apps": ["demo"], "slack": "U0ALICE", "email": "alice@x.io"},
    {"name": "bob", "token": "rv-bob-token", "apps": ["demo"], "groups": ["legal"], "feishu": "ou_bob"},
    {"name": "erin", "token": "rv-erin-token", "apps": ["other"], "groups": ["legal"], "slack": "U0ERIN"},
]
CHANNELS = {"slack": {"bot_token": "xoxb-1", "signing_secret": "s"}, "email": {"host": "h", "port": 25,
                                                                              "from_address": "hitl@x.io"},
            "feishu": {"app_id": "a", "app_secret": "b", "verification_token": "c"},
            "dingtalk": {"webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=t", "secret": "SEC"},
            "webhook": {"secret": "w"}}


def settings(rules: list[dict], **extra) -> Settings:
    return Settings(apps=APPS, reviewers=REVIEWERS, channels=CHANNELS, notify=rules, **extra)


def cp(**over) -> dict:
    return {"id": "c1", "app": "demo", "node_id": "draft", "assignees": [], "status": "open", **over}


def test_a_direct_target_messages_each_assignee_and_the_group_gets_the_rest():
    s = settings([{"targets": [{"channel": "slack", "to": "C0REVIEW", "direct": True}]}])
    assert recipients(s, cp(assignees=["alice"])) == [Recipient("slack", "U0ALICE", "user", "alice")]
    # bob has no Slack identity: the group hears of it for him
    assert recipients(s, cp(assignees=["alice", "bob"])) == [Recipient("slack", "U0ALICE", "user", "alice"),
                                                             Recipient("slack", "C0REVIEW", "group", None)]
    assert recipients(s, cp()) == [Recipient("slack", "C0REVIEW", "group", None)]


def test_groups_among_the_assignees_are_their_members_and_only_reviewers_of_the_app_are_messaged():
    s = settings([{"targets": [{"channel": "slack", "direct": True}]}])
    # group:legal is bob (no Slack id) and erin (Slack, but not granted app demo): nobody can be messaged
    assert recipients(s, cp(assignees=["group:legal"])) == []
    grouped = settings([{"targets": [{"channel": "slack", "direct": True, "to": "C0REVIEW"}]}])
    assert recipients(grouped, cp(assignees=["group:legal"])) == [Recipient("slack", "C0REVIEW", "group", None)]
    assert recipients(grouped, cp(assignees=["erin"])) == [Recipient("slack", "C0REVIEW", "group", None)]
    assert recipients(s, cp(app="other", assignees=["group:legal"])) == [Recipient("slack", "U0ERIN", "user", "erin")]


def test_rules_match_by_app_node_assignee_and_group_and_every_matching_rule_applies():
    s = settings([
        {"app": "demo", "targets": [{"channel": "webhook", "to": "https://hooks.example.com/a", "reviewer": "alice"}]},
        {"node": "publish", "targets": [{"channel": "dingtalk", "reviewer": "alice"}]},
        {"assignee": "bob", "targets": [{"channel": "feishu", "direct": True, "to": "oc_review"}]},
        {"group": "legal", "targets": [{"channel": "email", "to": "legal@x.io", "reviewer": "bob"}]},
    ])
    channels = lambda c: sorted(r.channel for r in recipients(s, c))  # noqa: E731
    assert channels(cp()) == ["webhook"]
    assert channels(cp(app="other")) == []
    assert channels(cp(node_id="publish")) == ["dingtalk", "webhook"]
    assert recipients(s, cp(node_id="publish"))[1] == Recipient("dingtalk", "robot", "group", "alice")
    assert channels(cp(assignees=["bob"])) == ["email", "feishu", "webhook"]  # bob is in group legal
    assert channels(cp(assignees=["group:legal"])) == ["email", "feishu", "webhook"]


def test_the_same_address_named_by_two_rules_is_one_recipient():
    target = {"channel": "slack", "to": "C0REVIEW"}
    s = settings([{"targets": [target]}, {"app": "demo", "targets": [target]}])
    assert len(recipients(s, cp())) == 1


@pytest.mark.parametrize("rules,message", [
    ([{"targets": [{"channel": "wecom", "to": "2"}]}], "channel wecom is not configured"),
    ([{"app": "nope", "targets": [{"channel": "slack", "to": "C1"}]}], "no app named 'nope'"),
    ([{"targets": [{"channel": "slack"}]}], "give `to` (a group address) or `direct: true`"),
    ([{"targets": [{"channel": "dingtalk", "direct": True}]}], "dingtalk cannot message one person"),
    ([{"targets": [{"channel": "webhook", "to": "ftp://x"}]}], "needs the receiver's http(s) URL"),
    ([{"targets": [{"channel": "slack", "to": "C1", "reviewer": "zed"}]}], "no reviewer named 'zed'"),
    ([{"group": "nobody", "targets": [{"channel": "slack", "to": "C1"}]}], "no group named 'nobody'"),
])
def test_a_rule_that_cannot_work_stops_the_process_with_the_reason(monkeypatch, rules, message):
    for key, value in {"HITL_APPS": APPS, "HITL_REVIEWERS": REVIEWERS, "HITL_CHANNELS": CHANNELS,
                       "HITL_NOTIFY": rules}.items():
        monkeypatch.setenv(key, json.dumps(value))
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


def test_one_platform_identity_belongs_to_one_reviewer(monkeypatch):
    twice = REVIEWERS + [{"name": "mallory", "token": "rv-mallory-token", "slack": "U0ALICE"}]
    monkeypatch.setenv("HITL_APPS", json.dumps(APPS))
    monkeypatch.setenv("HITL_REVIEWERS", json.dumps(twice))
    with pytest.raises(SettingsError, match="reviewers.mallory.slack: 'U0ALICE' is also alice's"):
        load_settings()


def test_a_click_maps_to_its_reviewer_by_platform_identity():
    s = settings([])
    assert s.reviewer_on("slack", "U0ALICE").name == "alice"
    assert s.reviewer_on("feishu", "ou_bob").name == "bob"
    assert s.reviewer_on("slack", "ou_bob") is None and s.reviewer_on("slack", "") is None


def test_a_channel_setting_that_is_missing_or_unknown_is_named_and_its_values_are_not(monkeypatch):
    s = Settings(channels={"slack": {"bot_token": "xoxb-very-secret"}})
    with pytest.raises(SettingsError) as err:
        build_channels(s, None)
    assert "HITL_CHANNELS (slack): slack channel: missing settings signing_secret" in str(err.value)
    s = Settings(channels={"webhook": {"secret": "whsec-very-secret", "colour": "blue"}})
    with pytest.raises(SettingsError, match="unknown settings colour") as err:
        build_channels(s, None)
    assert "whsec-very-secret" not in str(err.value)


def test_channel_secrets_are_not_in_the_settings_repr():
    s = settings([])
    assert "xoxb-1" not in repr(s) and "SEC" not in repr(s)


def test_the_public_url_defaults_to_the_listening_address():
    assert Settings(notifier_port=9000).notifier_url == "http://127.0.0.1:9000"
    assert Settings(notifier_host="0.0.0.0").notifier_url == "http://127.0.0.1:8083"
    assert Settings(notifier_public_url="https://hitl.example.com/").notifier_url == "https://hitl.example.com"
