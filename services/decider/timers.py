"""What happens in time, without a person: deadlines, runs that ended under an open checkpoint,
Dify resumes that did not happen, parked decisions whose checkpoint never came, resolutions whose
publication was not confirmed. Every timer is a row in the store (a deadline, a parked decision's
expiry), swept by every decider replica against the store's clock: they survive restarts of every
process and fire once (conditional updates decide who fires)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.decider import forms, policy
from services.decider.outcomes import closing_event, event, reply_to_call
from shared.broker import Outbound
from shared.models import Action, CheckpointStatus, DecisionEvent, DecisionSubmitted, EventType, FormReport, OnTimeout
from shared.settings import Settings
from shared.store import Database, parked, runs, timers
from shared.store import checkpoints as store
from shared.store.rows import CheckpointRow, TimerRow

UNCONFIRMED = ("Dify took the form and its record says running, but nothing has moved since (no node on the "
               "stream, no end): a stop requested while the run was paused leaves it like this for ever — "
               "check the run in Dify")
TIMER_EVENTS = {"reminder": EventType.reminder, "deadline_near": EventType.deadline_near,
                "escalate": EventType.escalated}


class Timers:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.events_exchange = settings.names.events

    def announce_resolution(self, cp: CheckpointRow) -> list[Outbound]:
        """The held call's answer and the closing event — and a decided Dify form's submission, which
        must not be lost if the first publish after the commit was."""
        out = reply_to_call(cp) + [event(self.events_exchange, closing_event(cp), cp)]
        if cp["kind"] == "dify-form" and cp["delivery"] == "pending":
            out.append(forms.delivery_command(self.settings.names.commands, cp, None))
        return out

    def _any(self, query: Callable[..., list[Any]], *args: Any) -> bool:
        """Whether a sweep step has work, asked in a read: a write transaction that changes nothing
        commits even on a full disk, and would tell the store's health that writes work again
        (`/readyz` ready during the outage, issue 13); it also takes SQLite's write lock for nothing."""
        with self.db.read() as conn:
            return bool(query(conn, *args))

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
            action, output = self._default(cp)
            resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.expired, action=action, output=output,
                                     feedback=None, decided_by="system", reason="timeout", channel="deadline",
                                     now=now, published=False)
            if resolved is None:
                return None
            store.append_history(conn, cp["id"], "expired", actor="system", channel="deadline", action=action,
                                 outcome="applied", detail={"on_timeout": cp["on_timeout"]}, at=now)
        return resolved

    # ------------------------------------------------------------------ policy timers
    def due_timers(self) -> list[TimerRow]:
        with self.db.read() as conn:
            return timers.due(conn, self.db.now())

    def fire(self, timer_id: int) -> tuple[list[Outbound], CheckpointRow | None]:
        """Fire one due timer, once across every replica: (events, the checkpoint if it resolved)."""
        with self.db.write() as conn:
            now = self.db.now()
            timer = timers.get(conn, timer_id)
            if timer is None or timer["fired_at"] is not None:
                return [], None
            cp = store.lock(conn, timer["checkpoint_id"])
            if cp is None or cp["status"] != CheckpointStatus.open:
                timers.fire(conn, timer_id, now, outcome="skipped")
                return [], None
            if not timers.fire(conn, timer_id, now):
                return [], None
            if timer["kind"] == "escalate":
                return self._escalate(conn, cp, timer, now)
            snapshot = cp["policy"] or {}
            if timer["kind"] == "reminder":
                every = float(snapshot.get("remind_every_s") or 0)
                if every and timer["due_at"] + every < cp["deadline"]:  # the next one, one at a time
                    timers.schedule(conn, cp["id"], "reminder", timer["step"] + 1, timer["due_at"] + every)
            detail = {"step": timer["step"], "assignees": cp["assignees"], "deadline": cp["deadline"]}
            store.append_history(conn, cp["id"], timer["kind"], actor="policy", channel="policy", outcome="fired",
                                 detail=detail, at=now)
        return [event(self.events_exchange, TIMER_EVENTS[timer["kind"]], cp, detail)], None

    def _escalate(self, conn, cp: CheckpointRow, timer: TimerRow,
                  now: float) -> tuple[list[Outbound], CheckpointRow | None]:
        steps = (cp["policy"] or {}).get("escalate") or []
        step: dict[str, Any] = steps[timer["step"] - 1] if timer["step"] <= len(steps) else {}
        detail: dict[str, Any] = {"step": timer["step"], "after_s": step.get("after_s")}
        if step.get("add_assignees"):
            added = [a for a in step["add_assignees"] if a not in cp["assignees"]]
            assignees, delegated = policy.with_delegates(self.settings, list(cp["assignees"]) + added)
            snapshot = {**(cp["policy"] or {}), "assignees": assignees,
                        "electorate": policy.electorate(self.settings, cp["app"], assignees)}
            cp = store.update_open(conn, cp["id"], now, assignees=assignees, policy=snapshot) or cp
            detail.update(added=added, delegated=delegated)
        out = []
        resolved = None
        if step.get("apply"):
            resolved, why = self._apply(conn, cp, step["apply"], now)
            detail.update(applied=step["apply"], outcome="applied" if resolved else "not_applied", why=why)
        store.append_history(conn, cp["id"], "escalated", actor="policy", channel="policy",
                             action=resolved["action"] if resolved else None,
                             outcome="applied" if resolved else "fired", detail=detail, at=now)
        out.append(event(self.events_exchange, EventType.escalated, resolved or cp, detail))
        return out, resolved  # a resolution is announced (and a form submitted) by announce_resolution

    def _apply(self, conn, cp: CheckpointRow, apply: str, now: float) -> tuple[CheckpointRow | None, str | None]:
        """An escalation step decides, as `policy`, reason `escalation`: approve, abort, or the
        checkpoint's own default (its on_timeout)."""
        action, output = {"approve": (Action.approve, cp["node_output"]), "abort": (Action.abort, None)}.get(
            apply, self._default(cp))
        if cp["kind"] == "dify-form":
            dec = DecisionSubmitted(checkpoint_id=cp["id"], action=action, actor="policy", channel="policy",
                                    output=output, has_output=action == Action.edit)
            action_id, mapped = forms.submission(cp, dec)
            if action_id is None:
                return None, f"{mapped[1]}"  # type: ignore[index]
            output = {"action": action_id, "inputs": mapped}
        resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.resolved, action=action, output=output,
                                 feedback=f"escalation: {apply}", decided_by="policy", reason="escalation",
                                 channel="policy", now=now, published=False)
        if resolved is not None and resolved["kind"] == "dify-form":
            store.set_delivery(conn, cp["id"], "pending", None, now)
            resolved["delivery"] = "pending"
        return resolved, None if resolved else "another decision won"

    @staticmethod
    def _default(cp: CheckpointRow) -> tuple[Action, Any]:
        return {OnTimeout.approve: (Action.approve, cp["node_output"]),
                OnTimeout.default: (Action.edit, cp["default_output"])}.get(OnTimeout(cp["on_timeout"]),
                                                                             (Action.abort, None))

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
        """Delivered forms with no evidence of a resume in time (no end of the run, no filled node on its
        stream): `resume_stuck` while Dify's record still says paused (its known lost resume),
        `resume_unconfirmed` when it says running — what a stop requested during the pause leaves
        behind for ever (fixture 11) — so neither is ever shown as resumed."""
        stuck: list[CheckpointRow] = []
        if not self._any(store.resume_overdue, self.db.now() - self.settings.resume_timeout_s):
            return stuck
        with self.db.write() as conn:
            now = self.db.now()
            for cp in store.resume_overdue(conn, now - self.settings.resume_timeout_s):
                run = runs.get(conn, cp["app"], cp["workflow_run_id"])
                state, why = ("resume_unconfirmed", UNCONFIRMED) if run and run["status"] == "running" else \
                    ("resume_stuck", "the run is still paused after the submit")
                store.set_delivery(conn, cp["id"], state, why, now)
                store.append_history(conn, cp["id"], state, actor="system", channel="poller", outcome=state,
                                     detail={"waited_s": self.settings.resume_timeout_s,
                                             "run_status": run["status"] if run else None}, at=now)
                current = store.get(conn, cp["id"])
                if current is not None:
                    stuck.append(current)
        return stuck

    # ------------------------------------------------------------------ parked decisions
    def expire_parked(self) -> list[Outbound]:
        """Parked decisions whose checkpoint never opened settle `expired` (GET /v1/decisions/{id})."""
        out: list[Outbound] = []
        if not self._any(parked.expired, self.db.now()):
            return out
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
    kind = EventType.resume_unconfirmed if cp["delivery"] == "resume_unconfirmed" else EventType.resume_stuck
    return event(exchange, kind, cp)
