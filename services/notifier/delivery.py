"""What one `notification.deliver` job does: send a card, or update a sent card with its outcome.

The row (shared/store/notifications.py) says what to do; the checkpoint is read from the store, so a
card always shows the checkpoint as it is (a card whose checkpoint closed before its turn is not
sent at all). A platform's answer decides what happens to the job:

- sent → the row keeps the platform's reference (for the update later); if the checkpoint closed
  while the card was on its way, the update is planned at once;
- a retryable failure (429, 5xx, timeout) → the row goes back to pending and the job waits in a
  delay queue, no sooner than the platform's `Retry-After`, and the channel pauses (guard.py);
- a permanent failure, or the retry budget spent (`HITL_MAX_DELIVERY_ATTEMPTS`) → the row is
  `failed`, the job goes to `<ns>.notifications.dlq` with the reason, a metric and a log line.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

from services.notifier import metrics
from services.notifier.channels.base import Card, Channel, ChannelError, Click, MessageRef, Target
from services.notifier.channels.cards import card_from_checkpoint
from services.notifier.guard import ChannelGuard
from services.notifier.links import LinkSigner
from shared.broker import Outbound, Reject, RetryLater
from shared.broker.router import in_store
from shared.broker.types import ROUTING_KEY_HEADER
from shared.logs import get_logger
from shared.models import NotificationJob
from shared.settings import Settings
from shared.store import Database
from shared.store import checkpoints as cp_store
from shared.store import notifications as store
from shared.store.notifications import NotificationRow
from shared.topology import NOTIFICATION_DELIVER, delay_queue_name
from shared.views import public_view

log = get_logger(__name__)
UNBOUND = ""  # the URL given to a decision button no reviewer can be bound to: such buttons are left out
TITLE_PREFIX = {"reminder": "Reminder: ", "deadline_near": "Deadline soon: "}


def message_key(channel: str, ref: dict[str, Any]) -> str | None:
    """The platform's id of a sent card, as a click names it (Click.message has the same keys)."""
    if channel == "slack" and ref.get("channel") and ref.get("ts"):
        return f"{ref['channel']}/{ref['ts']}"
    if channel == "feishu":
        return ref.get("message_id")
    if channel == "wecom":
        return ref.get("task_id")
    return None


def job_for(commands_exchange: str, row: NotificationRow) -> Outbound:
    job = NotificationJob(notification_id=row["id"], channel=row["channel"], address_key=row["address_key"])
    return Outbound(commands_exchange, NOTIFICATION_DELIVER, job.to_bytes(), message_id=job.id)


class Deliverer:
    def __init__(self, settings: Settings, db: Database, broker: Any, channels: dict[str, Channel],
                 signer: LinkSigner, guard: ChannelGuard | None = None) -> None:
        self.settings, self.db, self.broker = settings, db, broker
        self.channels, self.signer = channels, signer
        self.guard = guard or ChannelGuard(settings.notifier_channel_concurrency)
        self.commands = settings.names.commands

    # ------------------------------------------------------------------ one job
    async def run(self, job: NotificationJob, attempt: int) -> list[Outbound]:
        adapter = self.channels.get(job.channel)
        if adapter is None:
            raise Reject(f"channel {job.channel} is not configured in this notifier (HITL_CHANNELS)")
        key = ChannelGuard.key(job.channel, job.address_key)
        wait = self.guard.paused_for(key)
        if wait > 0:  # honour the platform's Retry-After without spending an attempt
            raise RetryLater(f"{job.channel} is paused for {wait:.0f}s", delay_s=wait, counted=False)
        async with self.guard.slot(key) as free:
            if not free:  # a slow platform, not a failing one: come back in a second, as often as it takes
                await self._again_soon(job)
                return []
            wait = self.guard.paused_for(key)  # it may have paused while this job waited for its slot
            if wait > 0:
                raise RetryLater(f"{job.channel} is paused for {wait:.0f}s", delay_s=wait, counted=False)
            lease_s = 4 * (adapter.timeout.read or self.settings.notifier_timeout_s) + 10  # a few calls: token, send
            claimed = await in_store(self.broker, self._claim, job.notification_id, lease_s, job.id)
            if claimed == "done":
                return []  # sent, skipped or failed already: a duplicate job
            if claimed == "busy":
                raise RetryLater("another sender holds this notification", delay_s=5.0, counted=False)
            try:
                outbound = await self._perform(adapter, claimed)
            except ChannelError as exc:
                raise await self._failed(claimed, key, exc, attempt) from None
            except ValueError as exc:  # a card this platform cannot show (no link buttons, …): will not change
                error = ChannelError(adapter.name, "unrenderable", str(exc), permanent=True)
                raise await self._failed(claimed, key, error, attempt) from None
        self.guard.succeeded(key)
        return outbound

    async def _again_soon(self, job: NotificationJob) -> None:
        """The job, unchanged, back through the 1 s delay queue. Not a RetryLater: its waits would
        grow (5 s, 30 s) though nothing failed, and a slow platform would fall behind for good."""
        queue = delay_queue_name(self.settings.names.notifications_queue, 1)
        log.info("notification.deferred", channel=job.channel, why="every call slot and waiting place is taken")
        await self.broker.publish("", queue, job.to_bytes(), message_id=job.id,
                                  headers={ROUTING_KEY_HEADER: NOTIFICATION_DELIVER})

    def _claim(self, notification_id: str, lease_s: float, owner: str) -> store.ClaimResult:
        with self.db.write() as conn:
            return store.claim(conn, notification_id, self.db.now(), lease_s, owner)

    async def _perform(self, adapter: Channel, row: NotificationRow) -> list[Outbound]:
        cp = await in_store(self.broker, self._checkpoint, row["checkpoint_id"])
        target = Target(row["channel"], row["address"], row["target_kind"])  # type: ignore[arg-type]
        if row["kind"] == "card":
            if cp is None or row["closed"] or cp["status"] != "open":
                return await self._skip(row, "the checkpoint closed before the card was sent")
            ref = await adapter.send(target, self.card(adapter, cp, row))
            done = await in_store(self.broker, self._sent, row["id"], ref.ref, message_key(adapter.name, ref.ref))
            metrics.sent.labels(adapter.name, "card").inc()
            if row["event_at"]:
                metrics.latency.labels(adapter.name).observe(max(0.0, time.time() - row["event_at"]))
            log.info("notification.sent", channel=adapter.name, checkpoint_id=row["checkpoint_id"],
                     for_event=row["event"], notification_id=row["id"], address=row["address_key"][:12])
            if done is not None and done["closed"]:  # it closed while the card was on its way: update it now
                return [job_for(self.commands, r) for r in await in_store(self.broker, self._plan_updates, done)]
            return []
        parent = await in_store(self.broker, self._row, row["parent_id"]) if row["parent_id"] else None
        if cp is None or cp["status"] == "open" or parent is None or not parent["ref"]:
            return await self._skip(row, "nothing to update")
        await self._update(adapter, MessageRef(adapter.name, target, parent["ref"]), cp, parent["update_token"])
        await in_store(self.broker, self._sent, row["id"], None, None)
        metrics.sent.labels(adapter.name, "update").inc()
        log.info("notification.updated", channel=adapter.name, checkpoint_id=row["checkpoint_id"],
                 outcome=cp["status"], notification_id=row["id"])
        return []

    async def _update(self, adapter: Channel, ref: MessageRef, cp: dict[str, Any], token: str | None) -> None:
        card = card_from_checkpoint(cp, link_policy=adapter.link_policy, console_url=self.detail_url(cp))
        if token:  # the deciding click's token (Feishu delayed update, WeCom response_code) first
            try:
                await adapter.update(ref, card, Click(adapter.name, "", "", None, "", update_token=token))
                return
            except ChannelError as exc:
                if not exc.permanent:
                    raise
                log.info("notification.update_token_refused", channel=adapter.name, code=exc.code)
        await adapter.update(ref, card)

    async def _skip(self, row: NotificationRow, why: str) -> list[Outbound]:
        await in_store(self.broker, self._finish, row["id"], "skipped", why)
        metrics.skipped.labels(row["channel"]).inc()
        log.info("notification.skipped", channel=row["channel"], checkpoint_id=row["checkpoint_id"], why=why)
        return []

    async def _failed(self, row: NotificationRow, key: str, exc: ChannelError, attempt: int) -> Exception:
        """What to raise for a failed platform call: a retry later, or the DLQ with the reason."""
        reason = f"{exc.code}: {exc.message}"
        what = "card" if row["kind"] == "card" else "card update"
        if exc.permanent or attempt >= self.settings.max_delivery_attempts:
            why = "permanent" if exc.permanent else "gave_up"
            await in_store(self.broker, self._finish, row["id"], "failed", reason)
            metrics.failed.labels(exc.channel, why).inc()
            log.warning("notification.failed", channel=exc.channel, checkpoint_id=row["checkpoint_id"],
                        notification_id=row["id"], code=exc.code, why=why, attempts=attempt)
            return Reject(f"{exc.channel} refused the {what}: {reason}" if exc.permanent
                          else f"gave up after {attempt} attempts: {reason}")
        self.guard.failed(key, exc.retry_after_s)
        await in_store(self.broker, self._release, row["id"], reason)
        metrics.retried.labels(exc.channel, metrics.retry_reason(exc.code)).inc()
        delays = self.settings.notifier_retry_delays_s
        delay = max(exc.retry_after_s or 0.0, delays[min(attempt, len(delays)) - 1])
        log.info("notification.retry", channel=exc.channel, checkpoint_id=row["checkpoint_id"], code=exc.code,
                 attempt=attempt, delay_s=delay)
        return RetryLater(f"{exc.channel}: {reason}", delay_s=delay)

    # ------------------------------------------------------------------ the card
    def detail_url(self, cp: dict[str, Any]) -> str | None:
        base = self.settings.notifier_console_url
        return f"{base.rstrip('/')}/checkpoints/{cp['id']}" if base else None

    def card(self, adapter: Channel, cp: dict[str, Any], row: NotificationRow) -> Card:
        """The open card for one recipient: its decision links (where the platform needs links) are
        bound to the reviewer the recipient is — or, for a group, the one its rule names."""
        reviewer = row["reviewer"]
        now = time.time()
        expires = min(float(cp.get("deadline") or now + self.settings.notifier_link_ttl_s),
                      now + self.settings.notifier_link_ttl_s)

        def make_link(cid: str, action: str, form_action: str | None) -> str:
            if reviewer is None:
                return UNBOUND
            return self.signer.make_link(cid, reviewer, action, expires, form_action, channel=adapter.name)

        card = card_from_checkpoint(cp, link_policy=adapter.link_policy, make_link=make_link,
                                    console_url=self.detail_url(cp))
        if reviewer is None:
            card = dataclasses.replace(card, buttons=tuple(b for b in card.buttons if b.url != UNBOUND))
        prefix = TITLE_PREFIX.get(row["event"].split(":", 1)[0])
        return dataclasses.replace(card, title=prefix + card.title) if prefix else card

    # ------------------------------------------------------------------ store work (executor)
    def _checkpoint(self, checkpoint_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = cp_store.get(conn, checkpoint_id)
        return public_view(row) if row is not None else None  # never the form token

    def _row(self, notification_id: str) -> NotificationRow | None:
        with self.db.read() as conn:
            return store.get(conn, notification_id)

    def _sent(self, notification_id: str, ref: dict[str, Any] | None, key: str | None) -> NotificationRow | None:
        with self.db.write() as conn:
            return store.mark_sent(conn, notification_id, ref, key, self.db.now())

    def _plan_updates(self, card: NotificationRow) -> list[NotificationRow]:
        with self.db.write() as conn:
            return store.plan_updates(conn, [card], self.db.now())

    def _release(self, notification_id: str, error: str) -> None:
        with self.db.write() as conn:
            store.release(conn, notification_id, error, self.db.now())

    def _finish(self, notification_id: str, status: str, error: str | None) -> None:
        with self.db.write() as conn:
            store.finish(conn, notification_id, status, self.db.now(), error)  # type: ignore[arg-type]
