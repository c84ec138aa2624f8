"""Quorum votes: a checkpoint whose policy needs more than one approval collects votes; it resolves
when the approvals reach the quorum, at once on a revise or abort when `reject_wins`, or when the
quorum can no longer be reached. The checkpoint row is locked while a vote is counted, so votes that
arrive at once from HTTP, the console, the CLI and bots are counted one after another: every vote
once, exactly one resolution."""
from __future__ import annotations

from typing import Any

from services.decider import policy
from services.decider.outcomes import Decided
from shared.models import Action, CheckpointStatus, DecisionSubmitted
from shared.refusals import Refusal
from shared.store import checkpoints as store
from shared.store import votes
from shared.store.rows import CheckpointRow


def vote(conn, cp: CheckpointRow, dec: DecisionSubmitted, now: float, detail: dict[str, Any], output: Any) -> Decided:
    """Count one vote; `output` is what the checkpoint resolves with if this vote decides it."""
    locked = store.lock(conn, cp["id"]) or cp
    if locked["status"] != CheckpointStatus.open:
        return refused(conn, locked, dec, now, detail, (Refusal.already_resolved, f"checkpoint is {locked['status']}"))
    if not votes.cast(conn, checkpoint_id=cp["id"], voter=dec.actor, action=dec.action, channel=dec.channel, at=now,
                      message_id=dec.id, feedback=dec.feedback if dec.feedback is not None else dec.reason):
        return refused(conn, locked, dec, now, detail, (Refusal.already_voted, f"{dec.actor} has voted already"))
    tally = policy.tally(locked, votes.of(conn, cp["id"]))
    resolving = (tally.reached or (dec.action in policy.REJECTS and
                                   (policy.approval_of(locked).reject_wins or not tally.reachable())))
    if not resolving:
        current = store.update_open(conn, cp["id"], now, tally=tally.as_dict()) or locked
        store.append_history(conn, cp["id"], "decision", actor=dec.actor, channel=dec.channel, action=dec.action,
                             outcome="voted", message_id=dec.id, idempotency_key=dec.idempotency_key,
                             detail={**detail, "progress": tally.progress()}, at=now)
        return Decided(current, applied=False, voted=True)
    feedback = dec.feedback if dec.feedback is not None else dec.reason
    if dec.action == Action.approve:  # the quorum's own words: who approved
        feedback = feedback or tally.progress()
    store.update_open(conn, cp["id"], now, tally=tally.as_dict())
    resolved = store.resolve(conn, cp["id"], status=CheckpointStatus.resolved, action=dec.action, output=output,
                             feedback=feedback, decided_by=dec.actor, reason="decision", channel=dec.channel, now=now)
    assert resolved is not None  # the row is locked and was open
    store.append_history(conn, cp["id"], "decision", actor=dec.actor, channel=dec.channel, action=dec.action,
                         outcome="applied", message_id=dec.id, idempotency_key=dec.idempotency_key,
                         detail={**detail, "progress": tally.progress()}, at=now)
    return Decided(resolved, applied=True)


def refused(conn, cp: CheckpointRow, dec: DecisionSubmitted, now: float, detail: dict[str, Any],
            refusal: tuple[str, str]) -> Decided:
    """Record a refused decision (or vote) in the history, with the decision that won if one did."""
    store.append_history(conn, cp["id"], "decision", actor=dec.actor, channel=dec.channel, action=dec.action,
                         outcome="rejected", code=refusal[0], message_id=dec.id,
                         idempotency_key=dec.idempotency_key, detail=detail, at=now)
    return Decided(cp, applied=False, refusal=refusal, winning=store.winning_decision(conn, cp["id"]))
