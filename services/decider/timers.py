"""What happens in time, without a person: deadlines, runs that ended under an open checkpoint,
Dify resumes that did not happen, parked decisions whose checkpoint never came, resolutions whose
publication was not confirmed. Every timer is a row in the store (a deadline, a parked decision's
expiry), swept by every decider replica against the store's clock: they survive restarts of every
process and fire once (conditional updates decide who fires)."""
from __future__ import annotations

from services.decider import forms
from services.decider.outcomes import closing_event, event, reply_to_call
from shared.broker import Outbound
from shared.models import Action, CheckpointStatus, DecisionEvent, EventType, FormReport, OnTimeout
from shared.settings import Settings
from shared.store import Database
from shared.store import checkpoints as store
from shared.store import parked
from shared.store.rows import CheckpointRow


class Timers:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.events_exchange = settings.names.events

    def announce_resolution(self, cp: CheckpointRow) -> list[Outbound]:
        return reply_to_call(cp) + [event(self.events_exchange, closing_event(cp), cp)]

    # ------------------------------------------------------------------ deadlines
    def due_ids(self) -> list[str]:
        with self.db.read() as conn:
            return store.due(conn, self.db.now())

    def expire(self, checkpoint_id: str) -> CheckpointRow | None:
        """Apply on_timeout to one overdue checkpoint, as a decision by `system`."""
        with self.db.write() as conn:
            now = self.db.now()
            cp = store.get(conn, checkpoint_id)
            if cp is None or cp["status"] != CheckpointStatus.open or cp["deadline"] > now:
                return None
            action, output = {
                OnTimeout.approve: (Action.approve, cp["node_output"]),
                OnTimeout.default: (Action.edit, cp["default_output"]),
            }.get(OnTimeout(cp["on_timeout"]), (Action.abort, None))
            resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.expired, action=action, output=output,
                                     feedback=None, decided_by="system", reason="timeout", channel="deadline",
                                     now=now, published=False)
            if resolved is None:
                return None
            store.append_history(conn, cp["id"], "expired", actor="system", channel="deadline", action=action,
                                 outcome="applied", detail={"on_timeout": cp["on_timeout"]}, at=now)
        return resolved

    # ------------------------------------------------------------------ runs that ended
    def cancel_run(self, app: str, run_id: str, run_status: str) -> list[CheckpointRow]:
        """The run ended (failed/stopped) with checkpoints of its app still open: close them as
        aborted by `system`, reason run_ended, so a still-held call is answered `abort`."""
        cancelled = []
        with self.db.write() as conn:
            now = self.db.now()
            for cp in store.open_of_run(conn, app, run_id):
                resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.cancelled, action=Action.abort,
                                         output=None, feedback=f"the run ended {run_status}", decided_by="system",
                                         reason="run_ended", channel="poller", now=now, published=False)
                if resolved is not None:
                    store.append_history(conn, cp["id"], "cancelled", actor="system", channel="poller",
                                         action=Action.abort, outcome="applied", code="run_ended", at=now,
                                         detail={"run_status": run_status})
                    cancelled.append(resolved)
        return cancelled

    # ------------------------------------------------------------------ Dify forms
    def on_form_report(self, report: FormReport) -> list[Outbound]:
        with self.db.write() as conn:
            changes = forms.apply_report(conn, report, self.db.now())
        return [event(self.events_exchange, kind, cp) for kind, cp in changes]

    def flag_stuck_resumes(self) -> list[CheckpointRow]:
        """Delivered forms whose run has not left `paused` in time: Dify's known lost resume."""
        stuck = []
        with self.db.write() as conn:
            now = self.db.now()
            for cp in store.resume_overdue(conn, now - self.settings.resume_timeout_s):
                store.set_delivery(conn, cp["id"], "resume_stuck", "the run is still paused after the submit", now)
                store.append_history(conn, cp["id"], "resume_stuck", actor="system", channel="poller",
                                     outcome="resume_stuck", detail={"waited_s": self.settings.resume_timeout_s},
                                     at=now)
                current = store.get(conn, cp["id"])
                if current is not None:
                    stuck.append(current)
        return stuck

    # ------------------------------------------------------------------ parked decisions
    def expire_parked(self) -> list[Outbound]:
        """Parked decisions whose checkpoint never opened settle `expired` (GET /v1/decisions/{id})."""
        out = []
        with self.db.write() as conn:
            now = self.db.now()
            for row in parked.expired(conn, now):
                if parked.settle(conn, row["id"], "expired", now, code="expired"):
                    body = DecisionEvent(type=EventType.decision_expired.value, decision=row["decision"],
                                         apps=row["apps"]).to_bytes()
                    out.append(Outbound(self.events_exchange, EventType.decision_expired.value, body))
        return out

    # ------------------------------------------------------------------ the outbox
    def unpublished(self) -> list[CheckpointRow]:
        with self.db.read() as conn:
            return store.unpublished(conn, self.db.now() - self.settings.republish_after_s)

    def mark_published(self, checkpoint_id: str) -> None:
        with self.db.write() as conn:
            store.mark_published(conn, checkpoint_id)


def stuck_event(exchange: str, cp: CheckpointRow) -> Outbound:
    return event(exchange, EventType.resume_stuck, cp)
