"""decider wiring: broker deliveries → state machine (in a worker thread) → confirmed publishes → ack.

The ack comes only after the effect is committed and its messages confirmed, so a kill -9 at any
point redelivers the message and the idempotent state machine finishes the job.
"""
from __future__ import annotations

import asyncio
import time

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from services.decider.logic import Decider, Outcome
from shared import metrics
from shared.broker import Broker, Delivery, Reject, RetryLater
from shared.logs import get_logger
from shared.outbox import Outbound, publish_all
from shared.models import CheckpointRequested, CheckpointStatus, DecisionSubmitted, FormReport, RunEnded
from shared.topology import FORM_REPORT, RUN_ENDED
from shared.settings import Settings
from shared.store import Database

log = get_logger(__name__)


def validation_summary(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])


class DeciderService:
    def __init__(self, settings: Settings, db: Database, broker: Broker) -> None:
        self.settings = settings
        self.db = db
        self.broker = broker
        self.logic = Decider(db, settings)
        self._stop = asyncio.Event()
        broker.consume(settings.names.checkpoints_queue, self.on_request)
        broker.consume(settings.names.decisions_queue, self.on_decision)

    async def _run_logic(self, fn, *args) -> Outcome:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.broker.executor, fn, *args)
        except OperationalError as exc:  # store unreachable or locked: try again later, lose nothing
            raise RetryLater(f"store unavailable: {exc.orig!r}", delay_s=5) from exc

    async def publish_all(self, outbound: list[Outbound]) -> None:
        await publish_all(self.broker, outbound)

    async def on_request(self, delivery: Delivery) -> None:
        if delivery.routing_key == RUN_ENDED:
            return await self.on_run_ended(delivery)
        if delivery.routing_key == FORM_REPORT:
            return await self.on_form_report(delivery)
        try:
            req = CheckpointRequested.model_validate_json(delivery.body)
        except ValidationError as exc:
            metrics.messages_handled.labels(delivery.queue, "invalid").inc()
            raise Reject(f"invalid checkpoint.requested: {validation_summary(exc)}") from None
        structlog.contextvars.bind_contextvars(run_id=req.workflow_run_id)
        outcome = await self._run_logic(self.logic.on_request, req, delivery.reply_to, delivery.correlation_id,
                                        delivery.redelivered)
        await self.publish_all(outcome.outbound)
        cp = outcome.checkpoint
        structlog.contextvars.bind_contextvars(checkpoint_id=cp["id"])
        if outcome.kind == "opened":
            metrics.checkpoints_opened.labels(cp["app"]).inc()
            log.info("checkpoint.opened", node_id=cp["node_id"], round=cp["round"], mode=cp["mode"])
        elif outcome.kind == "reattached":
            metrics.hold_reattaches.inc()
            log.info("checkpoint.reattached", round=cp["round"])
        else:
            log.info("checkpoint.replayed", action=cp["action"], round=cp["round"])
        metrics.messages_handled.labels(delivery.queue, outcome.kind).inc()

    async def on_decision(self, delivery: Delivery) -> None:
        try:
            dec = DecisionSubmitted.model_validate_json(delivery.body)
        except ValidationError as exc:
            metrics.messages_handled.labels(delivery.queue, "invalid").inc()
            metrics.decisions_rejected.labels("invalid").inc()
            raise Reject(f"invalid decision: {validation_summary(exc)}") from None
        outcome = await self._run_logic(self.logic.on_decision, dec, delivery.reply_to, delivery.correlation_id)
        await self.publish_all(outcome.outbound)
        cp = outcome.checkpoint
        if cp:
            structlog.contextvars.bind_contextvars(checkpoint_id=cp["id"], run_id=cp["workflow_run_id"])
        metrics.messages_handled.labels(delivery.queue, outcome.kind).inc()
        if outcome.kind == "applied":
            self._count_resolution(cp)
            log.info("decision.applied", action=dec.action.value, actor=dec.actor, channel=dec.channel)
            return
        if outcome.kind == "rejected":
            metrics.decisions_rejected.labels(outcome.code).inc()
            log.info("decision.rejected", code=outcome.code, actor=dec.actor, channel=dec.channel)
            # A bot gets no reply: what it sent wrongly is kept, with the reason, in the DLQ.
            if not delivery.reply_to and outcome.code != "already_resolved":
                raise Reject(f"{outcome.code}: {outcome.message}")

    async def on_run_ended(self, delivery: Delivery) -> None:
        try:
            ended = RunEnded.model_validate_json(delivery.body)
        except ValidationError as exc:
            raise Reject(f"invalid run.ended: {validation_summary(exc)}") from None
        for cp in await self._run_logic(self.logic.cancel_run, ended.workflow_run_id, ended.status):
            await self._announce(cp, self.logic.announce_resolution(cp))
            self._count_resolution(cp)
            log.info("checkpoint.cancelled", checkpoint_id=cp["id"], run_id=ended.workflow_run_id,
                     run_status=ended.status)

    async def on_form_report(self, delivery: Delivery) -> None:
        try:
            report = FormReport.model_validate_json(delivery.body)
        except ValidationError as exc:
            raise Reject(f"invalid form.report: {validation_summary(exc)}") from None
        outbound = await self._run_logic(self.logic.on_form_report, report)
        await self.publish_all(outbound)
        log.info("form.report", run_id=report.workflow_run_id, outcome=report.outcome, changed=len(outbound))

    @staticmethod
    def _count_resolution(cp) -> None:
        metrics.checkpoints_resolved.labels(cp["app"], cp["action"], cp["reason"]).inc()
        metrics.time_to_decision.labels(cp["app"], cp["node_id"]).observe(max(0.0, cp["resolved_at"] - cp["created_at"]))

    # ------------------------------------------------------------------ deadlines and the outbox
    async def run_deadlines(self) -> None:
        """Apply on_timeout to overdue checkpoints; re-send resolutions whose publish was not confirmed.
        State lives in the store, so any decider replica (or a restarted one) picks up where one died."""
        last_sweep = 0.0
        while not self._stop.is_set():
            try:
                for cid in await self._run_logic(self.logic.due_ids):
                    outcome = await self._run_logic(self.logic.expire, cid)
                    if outcome is not None:
                        await self._announce(outcome.checkpoint, outcome.outbound)
                        metrics.deadline_expiries.labels(outcome.checkpoint["app"]).inc()
                        self._count_resolution(outcome.checkpoint)
                        log.info("checkpoint.expired", checkpoint_id=cid, action=outcome.checkpoint["action"])
                for cp in await self._run_logic(self.logic.flag_stuck_resumes):
                    await self.publish_all([self.logic.event_of("checkpoint.resume_stuck", cp)])
                    metrics.resume_stuck.labels(cp["app"]).inc()
                    log.warning("checkpoint.resume_stuck", checkpoint_id=cp["id"], run_id=cp["workflow_run_id"])
                if time.monotonic() - last_sweep > self.settings.republish_after_s:
                    last_sweep = time.monotonic()
                    for cp in await self._run_logic(self.logic.unpublished):
                        await self._announce(cp, self.logic.announce_resolution(cp))
                        log.info("checkpoint.republished", checkpoint_id=cp["id"])
            except Exception as exc:  # the loop must outlive a broker or store outage
                log.warning("deadlines.sweep_failed", error=f"{type(exc).__name__}: {exc}")
            try:
                await asyncio.wait_for(self._stop.wait(), self.settings.deadline_scan_interval_s)
            except asyncio.TimeoutError:
                pass

    async def _announce(self, cp, outbound: list[Outbound]) -> None:
        await self.publish_all(outbound)
        if cp["status"] != CheckpointStatus.open:
            await self._run_logic(self.logic.mark_published, cp["id"])

    def background(self) -> list:
        return [self.run_deadlines()]

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        pass
