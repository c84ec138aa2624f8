"""The notifier's unit-test world: the decider and the notifier on one in-memory broker, a SQLite
store, and the platform fakes of tests/fakes (real HTTP on loopback) the adapters talk to."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.decider.service import DeciderService
from services.notifier.decisions import Decisions
from services.notifier.guard import ChannelGuard
from services.notifier.links import LinkSigner
from services.notifier.registry import build_channels
from services.notifier.service import NotifierService
from shared.broker.replies import ReplyRouter
from shared.models import CheckpointEvent, CheckpointRequested
from shared.settings import AppConfig, ReviewerConfig
from shared.store import Database
from shared.store import checkpoints as cp_store
from shared.store import notifications as store
from shared.topology import CHECKPOINT_REQUESTED
from shared.views import public_view
from tests.conftest import make_settings, memory_broker, verifier
from tests.fakes import slack as fake_slack
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import WEBHOOK_SECRET, FakeReceiver

LINK_SECRET = "unit-link-secret-0123456789abcdef-xyz"
PUBLIC_URL = "http://notifier.test"


def reviewers() -> list[ReviewerConfig]:
    return [ReviewerConfig(name="alice", token="rv-alice-token", apps=["demo"], slack="U0ALICE", email="alice@x.io"),
            ReviewerConfig(name="bob", token="rv-bob-token", apps=["demo"], slack="U0BOB", groups=["leads"]),
            ReviewerConfig(name="carol", token="rv-carol-token", apps=["demo"], slack="U0CAROL", groups=["leads"]),
            ReviewerConfig(name="dave", token="rv-dave-token", apps=[], slack="U0DAVE")]


class Clock:
    """The guard's clock, moved by hand (pauses honour Retry-After in real seconds otherwise)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    settings: Any
    db: Database
    broker: Any
    notifier: NotifierService
    decider: DeciderService
    decisions: Decisions
    slack: FakeSlack
    receiver: FakeReceiver
    clock: Clock
    channels: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self):
        return self.settings.names

    async def open(self, assignees: list[str] | None = None, node: str = "draft", **extra: Any) -> dict[str, Any]:
        req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id=node, node_output="a draft",
                                  message="Check the draft", timeout_s=600, max_rounds=3, round=1,
                                  assignees=assignees or [], **extra)
        await self.broker.publish(self.names.commands, CHECKPOINT_REQUESTED, req.to_bytes(), message_id=req.id)
        await self.broker.drain()
        with self.db.read() as conn:
            cp = cp_store.by_key(conn, "demo", req.workflow_run_id, node, 1)
        assert cp is not None
        return public_view(cp)

    async def event(self, kind: str, cp: dict[str, Any], **kw: Any) -> CheckpointEvent:
        event = CheckpointEvent(type=kind, checkpoint=cp, **kw)
        await self.broker.publish(self.names.events, kind, event.to_bytes(), message_id=event.id)
        await self.broker.drain()
        return event

    def rows(self, checkpoint_id: str) -> list[store.NotificationRow]:
        with self.db.read() as conn:
            return store.cards_of(conn, checkpoint_id)

    def callbacks(self, checkpoint_id: str | None = None) -> list[store.CallbackRow]:
        with self.db.read() as conn:
            return store.callbacks_of(conn, checkpoint_id)

    def checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = cp_store.get(conn, checkpoint_id)
        assert row is not None
        return public_view(row)

    def dlq(self, queue: str) -> list[str]:
        return [d.headers["x-hitl-reason"] for d in self.broker.messages(f"{queue}.dlq")]


def default_rules(receiver: FakeReceiver) -> list[dict[str, Any]]:
    return [{"app": "demo", "targets": [{"channel": "slack", "to": "C0REVIEW", "direct": True},
                                        {"channel": "webhook", "to": receiver.url, "reviewer": "alice"}]}]


@asynccontextmanager
async def world(sqlite_url: str, rules=None, **overrides: Any) -> AsyncIterator[World]:
    slack = FakeSlack(channels=("C0REVIEW", "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"))
    receiver = FakeReceiver()
    slack.start()
    receiver.start()
    settings = make_settings(
        sqlite_url, apps=[AppConfig(name="demo", checkpoint_token="cp-test-token-0001")], reviewers=reviewers(),
        groups=[], bots=[],
        channels={"slack": {"bot_token": fake_slack.BOT_TOKEN, "signing_secret": fake_slack.SIGNING_SECRET,
                            "api_base_url": slack.api_base_url, "timeout_s": 2},
                  "webhook": {"secret": WEBHOOK_SECRET, "timeout_s": 2}},
        notify=rules(receiver) if rules else default_rules(receiver), notifier_public_url=PUBLIC_URL,
        notifier_retry_delays_s=[1, 5, 5, 30], max_delivery_attempts=3, decision_reply_timeout_s=5, **overrides)
    db = Database(sqlite_url)
    db.migrate()
    broker = memory_broker(settings)
    http = httpx.AsyncClient()
    channels = build_channels(settings, http)
    clock = Clock()
    signer = LinkSigner(LINK_SECRET, settings.notifier_url)
    decider = DeciderService(settings, db, broker, verifier(settings))
    notifier = NotifierService(settings, db, broker, verifier(settings), channels, signer,
                               ChannelGuard(settings.notifier_channel_concurrency, clock=clock))
    replies = ReplyRouter(broker, settings.names, instance="unit", role="notifier", verifier=verifier(settings))
    decisions = Decisions(settings, db, broker, replies)
    await broker.start()
    try:
        yield World(settings, db, broker, notifier, decider, decisions, slack, receiver, clock, channels)
    finally:
        await broker.close()
        await http.aclose()
        db.dispose()
        slack.stop()
        receiver.stop()
