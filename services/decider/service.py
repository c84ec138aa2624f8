"""decider wiring: the declared handlers (one per message type) and the timer sweep.

Each handler runs the state machine in the store executor; the router publishes what it returns
with confirms and only then acks, so a kill -9 at any point redelivers the message and the
idempotent state machine finishes the job.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from services.decider import commands
from services.decider.logic import Decider
from services.decider.outcomes import Outcome
from services.decider.timers import Timers, stuck_event
from shared import metrics
from shared.access import actor_apps, bot_scope
from shared.broker import Outbound, Reject, publish_all
from shared.broker.outbound import Handled
from shared.broker.router import ANY_KEY, Context, Handlers, in_store
from shared.broker.signing import Verifier
from shared.logs import get_logger
from shared.models import (
    CheckpointCommand,
    CheckpointRequested,
    CheckpointStatus,
    DecisionSubmitted,
    FormReport,
    Reply,
    RunEnded,
)
from shared.refusals import Refusal
from shared.settings import Settings
from shared.store import Database, audit, retention
from shared.store.batch import SharedWrites
from shared.store.rows import CheckpointRow
from shared.topology import CHECKPOINT_COMMAND, CHECKPOINT_REQUESTED, FORM_REPORT, RUN_ENDED
from shared.views import public_view

log = get_logger(__name__)
handlers = Handlers()
PRUNE_EVERY_S = 3600.0


class DeciderService:
    def __init__(self, settings: Settings, db: Database, broker: Any, verifier: Verifier) -> None:
        self.settings = settings
        # Handlers' writes join the batch of deliveries they arrived with (group commit, one
        # transaction: shared/store/batch.py, shared/broker/batches.py); alone, each is its own.
        self.db = SharedWrites(db)
        self.broker = broker
        self.logic = Decider(self.db, settings)
        self.timers = Timers(self.db, settings)
        self.store_batch = self.db.batch
        self.store_batch_limits = (settings.store_batch_max, settings.store_batches)
        self._stop = asyncio.Event()
        self._last_anchor = time.monotonic()
        self._last_prune = 0.0
        self.router = handlers.bind(self, broker, settings.names, verifier)

    # ------------------------------------------------------------------ handlers
    # Each store handler returns its messages and what to tell once its transaction committed (Handled):
    # a batch that has to run again alone tells each thing once, and only what happened.
    @handlers.on("checkpoints", CHECKPOINT_REQUESTED, CheckpointRequested, store=True)
    def on_request(self, req: CheckpointRequested, ctx: Context) -> Handled:
        outcome = self.logic.on_request(req, ctx.reply_to, ctx.correlation_id, ctx.redelivered)
        return Handled(outcome.outbound, lambda: self._after_request(outcome, ctx))

    def _after_request(self, outcome: Outcome, ctx: Context) -> None:
        cp = outcome.checkpoint
        assert cp is not None
        metrics.messages_handled.labels(ctx.delivery.queue, outcome.kind).inc()
        if outcome.kind == "opened":
            metrics.checkpoints_opened.labels(cp["app"]).inc()
            log.info("checkpoint.opened", checkpoint_id=cp["id"], node_id=cp["node_id"], round=cp["round"],
                     kind=cp["kind"], mode=cp["mode"])
        elif outcome.kind == "reattached":
            metrics.hold_reattaches.inc()
            log.info("checkpoint.reattached", checkpoint_id=cp["id"], round=cp["round"])
        else:
            log.info("checkpoint.replayed", checkpoint_id=cp["id"], action=cp["action"], round=cp["round"])
        for resolved in outcome.applied_parked:
            metrics.decisions_parked.labels("applied").inc()
            self._count_resolution(resolved)
            log.info("decision.applied", checkpoint_id=resolved["id"], action=resolved["action"],
                     actor=resolved["decided_by"], parked=True)

    @handlers.on("decisions", ANY_KEY, DecisionSubmitted, store=True, bots=True)
    def on_decision(self, dec: DecisionSubmitted, ctx: Context) -> Handled:
        if ctx.sender.kind == "bot":
            bot = self.settings.bot(ctx.sender.name)
            assert bot is not None  # the verifier knows only configured bots
            scope, why = bot_scope(self.settings, bot, dec.actor)
            if why:
                return Handled([], lambda: _unauthorized_bot(f"bot {bot.name}: {why}"))
            # The channel is what we observed, not what the message says; a bot vouches for no groups.
            dec = dec.model_copy(update={"channel": f"bot:{bot.name}", "actor_groups": None})
        else:
            scope = actor_apps(self.settings, dec.actor, dec.actor_groups)
        outcome = self.logic.on_decision(dec, scope, ctx.reply_to, ctx.correlation_id)
        return Handled(outcome.outbound, lambda: self._after_decision(dec, outcome, ctx))

    def _after_decision(self, dec: DecisionSubmitted, outcome: Outcome, ctx: Context) -> None:
        metrics.messages_handled.labels(ctx.delivery.queue, outcome.kind).inc()
        cp = outcome.checkpoint
        ids = {"checkpoint_id": cp["id"], "run_id": cp["workflow_run_id"]} if cp else {}
        if cp is not None and outcome.kind in ("applied", "voted"):
            self._count_vote(cp)
        if outcome.kind == "voted":
            assert cp is not None
            log.info("decision.voted", action=dec.action.value, actor=dec.actor, channel=dec.channel,
                     progress=(cp.get("tally") or {}).get("progress"), **ids)
        elif outcome.kind == "applied":
            assert cp is not None
            self._count_resolution(cp)
            log.info("decision.applied", action=dec.action.value, actor=dec.actor, channel=dec.channel, **ids)
        elif outcome.kind == "parked":
            metrics.decisions_parked.labels("parked").inc()
            log.info("decision.parked", actor=dec.actor, run_id=dec.workflow_run_id, node_id=dec.node_id)
        elif outcome.kind == "rejected":
            metrics.decisions_rejected.labels(outcome.code or "unknown").inc()
            log.info("decision.rejected", code=outcome.code, actor=dec.actor, channel=dec.channel, **ids)
            # A bot gets no reply: what it sent wrongly is kept, with the reason, in the DLQ.
            if not ctx.reply_to and outcome.code != Refusal.already_resolved:
                raise Reject(f"{outcome.code}: {outcome.message}")

    @handlers.on("checkpoints", CHECKPOINT_COMMAND, CheckpointCommand, store=True)
    def on_command(self, cmd: CheckpointCommand, ctx: Context) -> Handled:
        """claim / release / reassign, answered on the caller's reply queue."""
        scope = actor_apps(self.settings, cmd.actor, cmd.actor_groups)
        with self.db.write() as conn:
            cp, refusal, events = commands.apply(conn, self.settings, cmd, scope, self.db.now(),
                                                 self.settings.names.events)
        told = lambda: log.info(f"checkpoint.{cmd.command}", checkpoint_id=cmd.checkpoint_id,  # noqa: E731
                                actor=cmd.actor, outcome="refused" if refusal else "applied",
                                code=refusal[0] if refusal else None)
        if not ctx.reply_to:
            return Handled(events, told)
        if refusal:
            reply = Reply(outcome="rejected", checkpoint_id=cmd.checkpoint_id, error_code=refusal[0],
                          error_message=refusal[1])
        else:  # the checkpoint as it is now
            reply = Reply(outcome="done", checkpoint_id=cmd.checkpoint_id, progress=public_view(cp) if cp else None)
        return Handled(events + [Outbound("", ctx.reply_to, reply.to_bytes(), ctx.correlation_id, persistent=False)],
                       told)

    @handlers.on("checkpoints", RUN_ENDED, RunEnded)
    async def on_run_ended(self, ended: RunEnded, ctx: Context) -> list[Outbound]:
        for cp in await in_store(self.broker, self.timers.cancel_run, ended.app, ended.workflow_run_id,
                                 ended.status):
            await self._announce(cp)  # then marked published (the outbox flag)
            self._count_resolution(cp)
            log.info("checkpoint.cancelled", checkpoint_id=cp["id"], run_status=ended.status)
        return []

    @handlers.on("checkpoints", FORM_REPORT, FormReport, store=True)
    def on_form_report(self, report: FormReport, ctx: Context) -> Handled:
        outbound = self.timers.on_form_report(report)
        return Handled(outbound, lambda: log.info("form.report", outcome=report.outcome, changed=len(outbound)))

    def _count_resolution(self, cp: CheckpointRow) -> None:
        node = metrics.node_labels(cp["app"], cp["node_id"])
        waited = max(0.0, (cp["resolved_at"] or 0) - cp["created_at"])
        metrics.checkpoints_resolved.labels(cp["app"], cp["action"], cp["reason"]).inc()
        metrics.time_to_decision.labels(cp["app"], node).observe(waited)
        tally = cp.get("tally") or {}
        if tally:
            metrics.quorum_resolved.labels(cp["app"], "reached" if cp["action"] == "approve" else "rejected").inc()
        elif cp["reason"] == "decision":  # a single decision: it was the first vote too
            metrics.time_to_first_vote.labels(cp["app"]).observe(waited)

    def _count_vote(self, cp: CheckpointRow) -> None:
        tally = cp.get("tally") or {}
        if not tally:
            return
        metrics.votes.labels(cp["app"]).inc()
        if len(tally.get("approved") or []) + len(tally.get("rejected") or []) == 1:
            metrics.time_to_first_vote.labels(cp["app"]).observe(max(0.0, self.db.now() - cp["created_at"]))

    # ------------------------------------------------------------------ the timer sweep
    async def run_timers(self) -> None:
        """Deadlines, stuck resumes, expired parked decisions, unconfirmed resolutions. State lives in the
        store, so any decider replica (or a restarted one) picks up where one died."""
        last_republish = 0.0
        while not self._stop.is_set():
            republish = time.monotonic() - last_republish > self.settings.republish_after_s
            if republish:
                last_republish = time.monotonic()
            try:
                await self.sweep(republish)
            except Exception as exc:  # the loop must outlive a broker or store outage
                log.warning("timers.sweep_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            metrics.clock_offset.set(self.db.clock_offset_s)
            try:
                await asyncio.wait_for(self._stop.wait(), self.settings.deadline_scan_interval_s)
            except TimeoutError:
                pass

    async def sweep(self, republish: bool = True) -> None:
        for cid in await in_store(self.broker, self.timers.due_ids):
            cp = await in_store(self.broker, self.timers.expire, cid)
            if cp is not None:
                await self._announce(cp)
                metrics.deadline_expiries.labels(cp["app"]).inc()
                self._count_resolution(cp)
                log.info("checkpoint.expired", checkpoint_id=cid, action=cp["action"])
        for cp in await in_store(self.broker, self.timers.flag_stuck_resumes):
            await publish_all(self.broker, [stuck_event(self.settings.names.events, cp)])
            metrics.resume_stuck.labels(cp["app"]).inc()
            log.warning(f"checkpoint.{cp['delivery']}", checkpoint_id=cp["id"], run_id=cp["workflow_run_id"])
        for timer in await in_store(self.broker, self.timers.due_timers):
            events, resolved = await in_store(self.broker, self.timers.fire, timer["id"])
            await publish_all(self.broker, events)
            if events:
                metrics.policy_timers.labels(timer["kind"]).inc()
                log.info(f"checkpoint.{timer['kind']}", checkpoint_id=timer["checkpoint_id"], step=timer["step"],
                         resolved=resolved is not None)
            if resolved is not None:
                await self._announce(resolved)
                self._count_resolution(resolved)
        expired = await in_store(self.broker, self.timers.expire_parked)
        if expired:
            await publish_all(self.broker, expired)
            metrics.decisions_parked.labels("expired").inc(len(expired))
            log.info("decisions.parked_expired", count=len(expired))
        if republish:
            for cp in await in_store(self.broker, self.timers.unpublished):
                await self._announce(cp)
                log.info("checkpoint.republished", checkpoint_id=cp["id"])
        # Housekeeping waits while the store refuses writes: a prune or an anchor with nothing to write
        # would commit even on a full disk and tell the store's health that writes work (issue 13).
        writable = self.db.health.up
        if writable and self.settings.retention_days and time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
            done = await in_store(self.broker, self.prune)
            if done.checkpoints or done.runs or done.parked:
                self._last_prune = 0.0  # more to do: the next sweep takes the next batch
                log.info("retention.pruned", checkpoints=done.checkpoints, runs=done.runs, parked=done.parked)
        if writable and time.monotonic() - self._last_anchor >= self.settings.audit_anchor_interval_s:
            self._last_anchor = time.monotonic()
            written = await in_store(self.broker, self.anchor)
            if written:
                log.info("audit.anchored", checkpoints=len(written["heads"]))

    def prune(self) -> retention.Pruned:
        with self.db.write() as conn:
            now = self.db.now()
            return retention.prune(conn, now - self.settings.retention_days * 86400, now)

    def anchor(self) -> dict[str, Any] | None:
        with self.db.write() as conn:
            return audit.anchor(conn, self.db.now())

    async def _announce(self, cp: CheckpointRow) -> None:
        await publish_all(self.broker, self.timers.announce_resolution(cp))
        if cp["status"] != CheckpointStatus.open:
            await in_store(self.broker, self.timers.mark_published, cp["id"])

    # ------------------------------------------------------------------ lifecycle
    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self.run_timers()]

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        pass


def _unauthorized_bot(why: str) -> None:
    metrics.decisions_rejected.labels("unauthorized_bot").inc()
    raise Reject(why)
