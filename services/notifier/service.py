"""notifier wiring: the declared handlers.

Checkpoint events arrive on the notifier's own queue (`<ns>.notifier`, bound to `hitl.events`). Each
handler plans rows in the store — one per platform message to send, unique per (checkpoint,
recipient, event), so a redelivered event plans nothing new — and returns one `notification.deliver`
job per row still to send; the router publishes them (confirmed) before it acks the event. The jobs
(`<ns>.notifications`) are sent one by one by `delivery.Deliverer`, each retried on its own.

- `checkpoint.opened`: a card for every recipient of the routing rules;
- `checkpoint.reminder`: a new card for the recipients of the checkpoint as it is now (its current
  assignees), once per reminder; `checkpoint.deadline_near`: the same, once per checkpoint;
- `checkpoint.escalated`: a card for every recipient who has none yet (the added assignees);
- `checkpoint.resolved` / `expired` / `cancelled`: every sent card is updated with the outcome (who,
  when, via which channel; buttons gone), whoever decided and wherever.
"""
from __future__ import annotations

from typing import Any

import structlog

from services.notifier import routing
from services.notifier.channels.base import Channel
from services.notifier.delivery import Deliverer, job_for
from services.notifier.guard import ChannelGuard
from services.notifier.links import LinkSigner
from shared.broker import Outbound
from shared.broker.router import Context, Handlers
from shared.broker.signing import Verifier
from shared.logs import get_logger
from shared.models import CheckpointEvent, NotificationJob
from shared.settings import Settings
from shared.store import Database
from shared.store import notifications as store
from shared.topology import NOTIFICATION_DELIVER

log = get_logger(__name__)
handlers = Handlers()


class NotifierService:
    def __init__(self, settings: Settings, db: Database, broker: Any, verifier: Verifier,
                 channels: dict[str, Channel], signer: LinkSigner, guard: ChannelGuard | None = None) -> None:
        self.settings, self.db, self.broker = settings, db, broker
        self.channels = channels
        self.deliverer = Deliverer(settings, db, broker, channels, signer, guard)
        self.router = handlers.bind(self, broker, settings.names, verifier)

    # ------------------------------------------------------------------ events → planned messages
    @handlers.on("notifier", "checkpoint.opened", CheckpointEvent, store=True)
    @handlers.on("notifier", "checkpoint.escalated", CheckpointEvent, store=True)
    def on_opened(self, event: CheckpointEvent, ctx: Context) -> list[Outbound]:
        # An escalation adds assignees: they get the card; whoever has one already is not told twice.
        return self._announce(event, "opened")

    @handlers.on("notifier", "checkpoint.reminder", CheckpointEvent, store=True)
    def on_reminder(self, event: CheckpointEvent, ctx: Context) -> list[Outbound]:
        return self._announce(event, f"reminder:{event.id}")  # the event's id: a redelivery is the same reminder

    @handlers.on("notifier", "checkpoint.deadline_near", CheckpointEvent, store=True)
    def on_deadline_near(self, event: CheckpointEvent, ctx: Context) -> list[Outbound]:
        return self._announce(event, "deadline_near")

    @handlers.on("notifier", "checkpoint.resolved", CheckpointEvent, store=True)
    @handlers.on("notifier", "checkpoint.expired", CheckpointEvent, store=True)
    @handlers.on("notifier", "checkpoint.cancelled", CheckpointEvent, store=True)
    def on_closed(self, event: CheckpointEvent, ctx: Context) -> list[Outbound]:
        cid = str(event.checkpoint.get("id") or "")
        structlog.contextvars.bind_contextvars(checkpoint_id=cid)
        with self.db.write() as conn:
            now = self.db.now()
            cards = store.close(conn, cid, now)
            updates = store.plan_updates(conn, cards, now)
        if cards:
            log.info("notifications.closing", on=event.type, cards=len(cards), updates=len(updates))
        return [job_for(self.settings.names.commands, row) for row in updates]

    def _announce(self, event: CheckpointEvent, key: str) -> list[Outbound]:
        cp = event.checkpoint
        structlog.contextvars.bind_contextvars(checkpoint_id=cp.get("id"))
        if cp.get("status") != "open" or not cp.get("id"):
            return []  # decided already (a parked decision applied at open): nothing to ask anyone
        recipients = [r for r in routing.recipients(self.settings, cp) if r.channel in self.channels]
        if not recipients:
            return []
        with self.db.write() as conn:
            rows = store.plan_cards(conn, str(cp["id"]), str(cp["app"]), key, recipients, self.db.now(),
                                    event.occurred_at)
        if rows:
            log.info("notifications.planned", on=event.type, cards=len(rows),
                     channels=sorted({r["channel"] for r in rows}))
        return [job_for(self.settings.names.commands, row) for row in rows]

    # ------------------------------------------------------------------ one platform message
    @handlers.on("notifications", NOTIFICATION_DELIVER, NotificationJob)
    async def on_job(self, job: NotificationJob, ctx: Context) -> list[Outbound]:
        return await self.deliverer.run(job, ctx.delivery.attempt)

    # ------------------------------------------------------------------ lifecycle (run_worker's shape)
    def background(self) -> list[Any]:
        return []

    def stop(self) -> None:
        pass

    async def close(self) -> None:
        pass
