"""What the state machine hands back: the outcome of one request or decision, and the messages it
makes (the held call's answer, the caller's reply, events) — published once the transaction has
committed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.broker import Outbound
from shared.models import CheckpointEvent, CheckpointStatus, EventType, Reply, Resolution
from shared.store.rows import CheckpointRow, HistoryRow
from shared.views import public_view

OutcomeKind = Literal["opened", "reattached", "replayed", "applied", "rejected", "duplicate", "parked", "expired",
                      "voted"]
Refused = tuple[str, str]  # (Refusal code, message)


@dataclass
class Decided:
    """One decision tried against one checkpoint inside a transaction."""

    checkpoint: CheckpointRow  # as it is now (resolved by this decision, or as found)
    applied: bool
    refusal: Refused | None = None
    duplicate_of: HistoryRow | None = None  # the same decision seen before (message id / idempotency key)
    winning: HistoryRow | None = None
    voted: bool = False  # a vote of a quorum that did not resolve it (yet)


@dataclass
class Outcome:
    """What happened to one request or decision, for the caller, logs and metrics."""

    kind: OutcomeKind
    checkpoint: CheckpointRow | None = None
    code: str | None = None
    message: str | None = None
    outbound: list[Outbound] = field(default_factory=list)
    applied_parked: list[CheckpointRow] = field(default_factory=list)  # resolved at open by a parked decision


def resolution_of(cp: CheckpointRow) -> Resolution:
    return Resolution(action=cp["action"] or "", checkpoint_id=cp["id"], round=cp["round"], output=cp["output"],
                      feedback=cp["feedback"], decided_by=cp["decided_by"] or "", reason=cp["reason"] or "decision")


def reply_to_call(cp: CheckpointRow, reply_to: str | None = None, correlation_id: str | None = None) -> list[Outbound]:
    """The resolution for the held Dify call (the one recorded on the checkpoint unless given)."""
    reply_to = reply_to or cp.get("reply_to")
    correlation_id = correlation_id or cp.get("correlation_id")
    if not reply_to:
        return []
    body = Reply(outcome="resolved", checkpoint_id=cp["id"], resolution=resolution_of(cp)).to_bytes()
    return [Outbound("", reply_to, body, correlation_id, persistent=False)]


def event(exchange: str, kind: EventType, cp: CheckpointRow, decision: dict[str, Any] | None = None) -> Outbound:
    msg = CheckpointEvent(type=kind.value, checkpoint=public_view(cp), decision=decision)
    return Outbound(exchange, kind.value, msg.to_bytes())


def closing_event(cp: CheckpointRow) -> EventType:
    return {CheckpointStatus.expired: EventType.expired,
            CheckpointStatus.cancelled: EventType.cancelled}.get(CheckpointStatus(cp["status"]), EventType.resolved)


def answer(outcome: Outcome, reply_to: str | None, correlation_id: str | None,
           winning: dict[str, Any] | None = None, applied: bool = False) -> Outcome:
    """Add the reply to the process that submitted a decision and waits for its verdict."""
    if reply_to:
        cp = outcome.checkpoint
        if outcome.kind == "parked":
            reply = Reply(outcome="parked", checkpoint_id=None, error_message=outcome.message)
        elif outcome.kind == "voted" and cp is not None:
            reply = Reply(outcome="voted", checkpoint_id=cp["id"], progress=cp.get("tally"))
        else:
            ok = outcome.kind == "applied" or applied
            reply = Reply(outcome="applied" if ok else "rejected", checkpoint_id=cp["id"] if cp else None,
                          resolution=resolution_of(cp) if ok and cp else None,
                          error_code=None if ok else outcome.code,
                          error_message=None if ok else outcome.message, winning=winning)
        outcome.outbound.append(Outbound("", reply_to, reply.to_bytes(), correlation_id, persistent=False))
    return outcome


def winning_view(winning: HistoryRow | None, cp: CheckpointRow) -> dict[str, Any] | None:
    """Who decided first, for a 409: what was decided, by whom, when, through which channel."""
    if cp["status"] == CheckpointStatus.open:
        return None
    view: dict[str, Any] = {"action": cp["action"], "decided_by": cp["decided_by"], "reason": cp["reason"],
                            "resolved_at": cp["resolved_at"], "output": cp["output"], "feedback": cp["feedback"],
                            "channel": cp["decision_channel"]}
    if winning:
        view["channel"] = winning["channel"]
    return view
