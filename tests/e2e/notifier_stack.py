"""The real processes with the notifier wired to every platform's fake (tests/fakes) and a real local
SMTP server (STARTTLS + AUTH), and what a person does on each platform: find the card of a
checkpoint, press its button — a signed callback, or a signed link's confirmation page — and see the
card updated."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from demo.stack import APP_TOKEN, DIFY_APP_KEY, ProcessStack
from services.notifier.channels.base import CallbackRequest
from services.notifier.channels.cards import pack_value, unpack_value
from services.notifier.links import LinkError, LinkSigner
from shared.store import Database
from shared.store import notifications as store
from tests.e2e.harness import E2E, node, wait_for
from tests.fakes import dingtalk as fake_dingtalk
from tests.fakes import feishu as fake_feishu
from tests.fakes import slack as fake_slack
from tests.fakes import wecom as fake_wecom
from tests.fakes.smtp import PASSWORD, USERNAME, LocalSMTP
from tests.fakes.webhook import WEBHOOK_SECRET, FakeReceiver

LINK_SECRET = "e2e-notifier-link-secret-0123456789abcdef"
APP2_TOKEN, APP2_KEY = "cp-demo2-token-change-me", "app-demo2-key"  # a second app whose checkpoints name alice
CHANNELS = ("slack", "feishu", "dingtalk", "wecom", "email", "webhook")


def reviewers() -> list[dict[str, Any]]:
    both = ["demo", "demo2"]
    return [{"name": "alice", "token": "rv-alice-token", "apps": both, "slack": "U0ALICE", "feishu": "ou_alice",
             "wecom": "alice", "email": "alice@example.com"},
            {"name": "bob", "token": "rv-bob-token", "apps": both, "slack": "U0BOB", "feishu": "ou_bob",
             "wecom": "bob", "email": "bob@example.com"}]


@dataclass
class Fakes:
    slack: fake_slack.FakeSlack
    feishu: fake_feishu.FakeFeishu
    dingtalk: fake_dingtalk.FakeDingTalk
    wecom: fake_wecom.FakeWeCom
    receiver: FakeReceiver
    smtp: LocalSMTP

    def channels(self) -> dict[str, dict[str, Any]]:
        return {
            "slack": {"bot_token": fake_slack.BOT_TOKEN, "signing_secret": fake_slack.SIGNING_SECRET,
                      "api_base_url": self.slack.api_base_url, "timeout_s": 3},
            "feishu": {"app_id": fake_feishu.APP_ID, "app_secret": fake_feishu.APP_SECRET,
                       "verification_token": fake_feishu.VERIFICATION_TOKEN, "encrypt_key": fake_feishu.ENCRYPT_KEY,
                       "api_base_url": self.feishu.base_url, "timeout_s": 3},
            "dingtalk": {"webhook_url": self.dingtalk.webhook_url, "secret": fake_dingtalk.SECRET, "timeout_s": 2},
            "wecom": {"corp_id": fake_wecom.CORP_ID, "corp_secret": fake_wecom.CORP_SECRET,
                      "agent_id": fake_wecom.AGENT_ID, "token": fake_wecom.TOKEN,
                      "encoding_aes_key": fake_wecom.AES_KEY, "api_base_url": self.wecom.base_url, "timeout_s": 3},
            "email": {"host": "127.0.0.1", "port": self.smtp.port, "from_address": "hitl@example.com",
                      "username": USERNAME, "password": PASSWORD, "security": "starttls", "ca_file": self.smtp.ca_file,
                      "timeout_s": 5},
            "webhook": {"secret": WEBHOOK_SECRET, "timeout_s": 3},
        }

    def rules(self) -> list[dict[str, Any]]:
        """Every checkpoint to every channel: chat groups (where the platform says who clicked), the
        email assignees directly; links in group messages decide as alice."""
        return [{"app": "*", "targets": [
            {"channel": "slack", "to": "C0REVIEW"},
            {"channel": "feishu", "to": "oc_review"},
            {"channel": "dingtalk", "reviewer": "alice"},
            {"channel": "wecom", "to": "2", "reviewer": "alice"},
            {"channel": "email", "to": "reviewers@example.com", "direct": True, "reviewer": "alice"},
            {"channel": "webhook", "to": self.receiver.url, "reviewer": "alice"}]}]

    def secrets(self) -> list[str]:
        return [fake_slack.BOT_TOKEN, fake_slack.SIGNING_SECRET, fake_feishu.APP_SECRET, fake_feishu.ENCRYPT_KEY,
                fake_feishu.VERIFICATION_TOKEN, fake_dingtalk.SECRET, fake_dingtalk.ACCESS_TOKEN,
                fake_wecom.CORP_SECRET, fake_wecom.AES_KEY, PASSWORD, WEBHOOK_SECRET, LINK_SECRET]


@contextmanager
def running_fakes() -> Iterator[Fakes]:
    with ExitStack() as stack:
        servers = [fake_slack.FakeSlack(channels=("C0REVIEW", "U0ALICE", "U0BOB")), fake_feishu.FakeFeishu(),
                   fake_dingtalk.FakeDingTalk(), fake_wecom.FakeWeCom(), FakeReceiver()]
        for server in servers:
            stack.enter_context(server.running())
        smtp = stack.enter_context(LocalSMTP(starttls=True))
        fakes = Fakes(*servers, smtp)  # type: ignore[arg-type]
        fakes.dingtalk.per_minute = 1000  # many checkpoints a minute here; the limit itself is a unit test
        yield fakes


def notifier_env(fakes: Fakes, sim_url: str, **extra: str) -> dict[str, str]:
    apps = [{"name": "demo", "checkpoint_token": APP_TOKEN, "dify_base_url": sim_url, "dify_api_key": DIFY_APP_KEY},
            {"name": "demo2", "checkpoint_token": APP2_TOKEN, "dify_base_url": sim_url, "dify_api_key": APP2_KEY}]
    return {"HITL_APPS": json.dumps(apps), "HITL_REVIEWERS": json.dumps(reviewers()), "HITL_BOTS": "[]",
            "HITL_CHANNELS": json.dumps(fakes.channels()), "HITL_NOTIFY": json.dumps(fakes.rules()),
            "HITL_NOTIFIER_LINK_SECRET": LINK_SECRET, "HITL_NOTIFIER_RETRY_DELAYS_S": "[1, 1, 2, 2]",
            "HITL_MAX_DELIVERY_ATTEMPTS": "6", **extra}


def register_apps(e2e: E2E) -> None:
    """The demo workflow as app `demo`, and again as `demo2` whose checkpoints are assigned to alice."""
    e2e.register()

    def assigned(graph: dict) -> None:
        cp = node(graph, "checkpoint")["data"]
        cp["authorization"]["config"]["api_key"] = APP2_TOKEN
        item = cp["body"]["data"][0]
        item["value"] = item["value"].replace('"on_timeout": "abort"', '"on_timeout": "abort", "assignees": ["alice"]')

    e2e.register(assigned, name="demo2-review", key=APP2_KEY)


@dataclass
class People:
    """What reviewers do on each platform, for a checkpoint id `cid`."""

    stack: ProcessStack
    fakes: Fakes
    feishu_tokens: dict[str, str] = field(default_factory=dict)  # the delayed-update token of the click, by cid
    wecom_codes: dict[str, str] = field(default_factory=dict)  # the response_code of the click, by cid
    feishu_mids: dict[str, str] = field(default_factory=dict)  # the card's message id (an update removes the cid)

    def __post_init__(self) -> None:
        self.signer = LinkSigner(LINK_SECRET, self.stack.notifier_url)
        self.http = httpx.Client(base_url=self.stack.notifier_url, timeout=30)
        self._seq = 0

    def seq(self) -> str:
        self._seq += 1
        return f"{int(time.time())}.{self._seq:06d}"

    # ------------------------------------------------------------------ cards on the fakes
    def slack_card(self, cid: str, to: str | None = None) -> dict | None:
        return next((p for p in list(self.fakes.slack.posted)
                     if cid in json.dumps(p) and (to is None or p["channel"] == to)), None)

    def feishu_card(self, cid: str) -> str | None:
        if cid not in self.feishu_mids:
            mid = next((mid for mid, card in list(self.fakes.feishu.messages.items())
                        if mid.startswith("om_") and cid in json.dumps(card)), None)
            if mid is None:
                return None
            self.feishu_mids[cid] = mid
        return self.feishu_mids[cid]

    def wecom_card(self, cid: str) -> dict | None:
        return next((c for c in list(self.fakes.wecom.cards) if cid in json.dumps(c)), None)

    def links(self, urls: list[str], cid: str) -> dict[str, str]:
        found = {}
        for url in urls:
            try:
                claim = self.signer.verify(url.rsplit("/", 1)[1])
            except LinkError:
                continue
            if claim.checkpoint_id == cid:
                found[claim.action] = url
        return found

    def dingtalk_links(self, cid: str) -> dict[str, str]:
        for msg in list(self.fakes.dingtalk.messages):
            found = self.links([b["actionURL"] for b in (msg.get("actionCard") or {}).get("btns") or []], cid)
            if found:
                return found
        return {}

    def email(self, cid: str, to: str | None = None) -> Any:
        """The first email about `cid` (to `to`, or to anyone)."""
        for got in list(self.fakes.smtp.messages):
            first = "In-Reply-To" not in got.message
            if (to is None or to in got.recipients) and first and self.email_links_in(got.message, cid):
                return got.message
        return None

    def email_links_in(self, message: Any, cid: str) -> dict[str, str]:
        text = message.get_body(("plain",)).get_content()
        return self.links([line.split(": ", 1)[1] for line in text.splitlines() if "/decide/" in line], cid)

    def email_links(self, cid: str, to: str | None = None) -> dict[str, str]:
        message = self.email(cid, to)
        return self.email_links_in(message, cid) if message is not None else {}

    def webhook_links(self, cid: str) -> dict[str, str]:
        for hook in list(self.fakes.receiver.accepted):
            if hook["type"] == "checkpoint.opened" and hook["checkpoint"]["id"] == cid:
                return {a["action"]: a["url"] for a in hook["actions"]}
        return {}

    def card_arrived(self, channel: str, cid: str) -> Any:
        return {"slack": self.slack_card, "feishu": self.feishu_card, "wecom": self.wecom_card,
                "dingtalk": self.dingtalk_links, "email": self.email_links, "webhook": self.webhook_links}[channel](cid)

    # ------------------------------------------------------------------ pressing a button
    def callback(self, request: CallbackRequest) -> httpx.Response:
        return self.http.request(request.method, request.path, params=dict(request.query), content=request.body,
                                 headers=dict(request.headers))

    def slack_payload(self, cid: str, action: str = "approve", user: str = "U0ALICE") -> dict:
        card = wait_for(lambda: self.slack_card(cid, "C0REVIEW"), what="the slack card")
        return fake_slack.block_actions(pack_value(cid, action), f"hitl_0_{action}", user=user,
                                        channel=card["channel"], message_ts=card["ts"], action_ts=self.seq())

    def slack_click(self, cid: str, action: str = "approve", user: str = "U0ALICE", **kw: Any) -> httpx.Response:
        return self.callback(fake_slack.interaction(self.slack_payload(cid, action, user), **kw))

    def feishu_request(self, cid: str, action: str = "approve", open_id: str = "ou_alice") -> CallbackRequest:
        mid = wait_for(lambda: self.feishu_card(cid), what="the feishu card")
        token = self.feishu_tokens.setdefault(cid, self.fakes.feishu.issue_update_token())
        event = fake_feishu.card_action_event(value={"hitl": pack_value(cid, action)}, open_id=open_id,
                                              message_id=mid, event_id=f"ev{self.seq()}", token=token)
        return fake_feishu.callback(event)

    def wecom_click(self, cid: str, action: str = "approve", user: str = "alice") -> httpx.Response:
        card = wait_for(lambda: self.wecom_card(cid), what="the wecom card")
        value = next(b["key"] for b in card["button_list"] if b.get("key") and unpack_value(b["key"])[1] == action)
        code = self.wecom_codes.setdefault(cid, self.fakes.wecom.issue_response_code())
        return self.callback(fake_wecom.template_card_event(value, user=user, task=card["task_id"], response_code=code,
                                                            create_time=int(self.seq().replace(".", ""))))

    def follow_link(self, url: str, text: str | None = None) -> httpx.Response:
        """What a person does with a link: open it (a GET decides nothing), then confirm (POST)."""
        page = self.http.get(url)
        assert page.status_code == 200 and "Nothing is decided until you press the button" in page.text, page.text
        form = {"token": url.rsplit("/", 1)[1], **({"text": text} if text is not None else {})}
        return self.http.post(url, data=form)

    def press(self, channel: str, cid: str, action: str = "approve") -> httpx.Response:
        if channel == "slack":
            return self.slack_click(cid, action)
        if channel == "feishu":
            return self.callback(self.feishu_request(cid, action))
        if channel == "wecom":
            return self.wecom_click(cid, action)
        links = wait_for(lambda: self.card_arrived(channel, cid), what=f"the {channel} links")
        return self.follow_link(links[action])

    # ------------------------------------------------------------------ the card shows the outcome
    def outcome_shown(self, channel: str, cid: str) -> str | None:
        """The outcome line the card shows once updated (or its follow-up message, where a platform
        cannot edit what it sent); None before."""
        f = self.fakes
        if channel == "slack":
            card = self.slack_card(cid)
            where = (card["channel"], card["ts"]) if card else None
            update = next((c.json for c in f.slack.calls("/api/chat.update")
                           if (c.json.get("channel"), c.json.get("ts")) == where), None)
            return update["blocks"][-1]["elements"][0]["text"] if update else None
        if channel == "feishu":
            mid = self.feishu_card(cid)
            token = self.feishu_tokens.get(cid)
            for card in (f.feishu.messages.get(f"token:{token}") if token else None, f.feishu.messages.get(mid or "")):
                if card and card["header"]["template"] != "blue":
                    return next(e["content"] for e in card["body"]["elements"][::-1] if e["content"].startswith("**"))
            return None
        if channel == "wecom":
            card = self.wecom_card(cid)
            codes = {f.wecom.codes_by_task.get(card["task_id"]) if card else None, self.wecom_codes.get(cid)} - {None}
            return next((u["template_card"]["sub_title_text"] for u in list(f.wecom.updates)
                         if u["response_code"] in codes), None)
        if channel == "dingtalk":
            return next((m["markdown"]["text"] for m in list(f.dingtalk.messages)
                         if m.get("msgtype") == "markdown" and cid in m["markdown"]["text"]), None)
        if channel == "email":
            first = self.email(cid)
            return next((g.message.get_body(("plain",)).get_content() for g in list(f.smtp.messages)
                         if first is not None and g.message["In-Reply-To"] == first["Message-ID"]), None)
        return next((h["checkpoint"]["outcome"] for h in list(f.receiver.accepted)
                     if h["type"] == "checkpoint.resolved" and h["checkpoint"]["id"] == cid), None)


def notifications_of(database_url: str, cid: str) -> list[store.NotificationRow]:
    db = Database(database_url)
    try:
        with db.read() as conn:
            return store.cards_of(conn, cid)
    finally:
        db.dispose()


def notifier_idle(database_url: str) -> bool:
    """Nothing planned is still waiting to be sent (so a fault injected now hits the next checkpoint)."""
    from sqlalchemy import func, select

    from shared.store.tables import notifications

    db = Database(database_url)
    try:
        with db.read() as conn:
            return conn.execute(select(func.count()).select_from(notifications)
                                .where(notifications.c.status.in_(("pending", "sending")))).scalar_one() == 0
    finally:
        db.dispose()


def callbacks_of(database_url: str, cid: str | None = None) -> list[store.CallbackRow]:
    db = Database(database_url)
    try:
        with db.read() as conn:
            return store.callbacks_of(conn, cid)
    finally:
        db.dispose()
