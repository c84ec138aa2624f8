"""May this reviewer decide this checkpoint — and if not, why, in words the page shows next to the
disabled buttons. The console says what the decider would say (shared/access.py and the policy
snapshot on the checkpoint), before a click: not an assignee, outside their apps, the last round
(revise), the self-approval guard (approve, edit), an edit under a quorum, a vote already cast.
A claim by someone else is only a notice: a claim is a soft lock, and the decider lets others decide.

Someone signed in with the identity provider may decide with the groups its claims give them: the
console sends those groups with the decision (`actor_groups`), and the decider trusts them from our
own processes only (never from a bot). Claim, release and reassign (`CheckpointCommand`) carry no
groups: for those the decider counts configured reviewers and their configured groups only, and so
does `commands_gate` below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.console.auth import Session
from shared.access import actor_apps, in_scope, is_admin, is_assignee, principal
from shared.access import may_decide as decider_may_decide
from shared.settings import Settings

ACTIONS = ("approve", "revise", "edit", "abort")


@dataclass(frozen=True)
class Gate:
    allowed: bool  # may decide at all
    reason: str = ""  # why not, when not at all
    code: str = ""  # the refusal code the decider would answer
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)  # action → (code, reason): refused alone
    notice: str = ""  # worth knowing, refuses nothing (a claim by someone else)
    quorum: int = 1  # approvals needed
    vote: dict[str, Any] | None = None  # this reviewer's counted vote: {"action", "progress"}

    @property
    def revise_reason(self) -> str:
        return self.refused.get("revise", ("", ""))[1]

    def why(self, action: str) -> str:
        """Why `action` would be refused ("" if the decider would take it)."""
        if not self.allowed:
            return self.reason
        return self.refused.get(action, ("", ""))[1]

    def code_of(self, action: str) -> str:
        return self.code if not self.allowed else self.refused.get(action, ("", ""))[0]

    def as_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason": self.reason, "code": self.code, "notice": self.notice,
                "revise_reason": self.revise_reason, "quorum": self.quorum, "vote": self.vote,
                "refused": {a: {"code": c, "reason": r} for a, (c, r) in self.refused.items()}}


def assigned_to(settings: Settings, session: Session, cp: dict[str, Any]) -> bool:
    """Named among the assignees, or in one of their groups (the session's groups: configured ones and
    those the identity provider sent)."""
    assignees = cp.get("assignees") or []
    return session.name in assignees or any(f"group:{g}" in assignees for g in session.reviewer.groups) \
        or is_assignee(settings, session.name, assignees)


def required(cp: dict[str, Any]) -> int:
    """Approvals the checkpoint needs (its policy snapshot; 1 without one)."""
    return int((cp.get("policy") or {}).get("required") or 1)


def own_vote(cp: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The vote `name` cast on this checkpoint, as its tally records it (updated with each vote)."""
    tally = cp.get("tally") or {}
    if name in (tally.get("approved") or []):
        return {"action": "approve", "progress": tally.get("progress") or ""}
    for r in tally.get("rejected") or []:
        if isinstance(r, dict) and r.get("voter") == name:
            return {"action": r.get("action") or "abort", "progress": tally.get("progress") or ""}
    return None


def is_self(settings: Settings, cp: dict[str, Any], name: str) -> bool:
    """The reviewer is the Dify end user who started the run (`end_users` of a configured reviewer),
    as the decider reads it."""
    reviewer = settings.reviewer(name)
    return bool(reviewer and cp.get("user") and cp["user"] in reviewer.end_users)


def claim_notice(cp: dict[str, Any], name: str) -> str:
    who = cp.get("claimed_by")
    if not who or who == name:
        return ""
    return f"{who} has claimed this checkpoint: they are on it. You may still decide (a claim is a soft lock)."


def gate(settings: Settings, session: Session, cp: dict[str, Any]) -> Gate:
    if cp.get("status") != "open":
        return Gate(False, "This checkpoint is already decided.", "already_resolved")
    assignees = cp.get("assignees") or []
    need = required(cp)
    if assignees and not assigned_to(settings, session, cp):
        return Gate(False, f"Assigned to {', '.join(assignees)}; you are not among them, so the decider would "
                           "refuse your decision (not_assignee).", "not_assignee", quorum=need)
    groups = list(session.reviewer.groups) if session.method == "oidc" else None
    if not in_scope(actor_apps(settings, session.name, groups), cp["app"]):
        return Gate(False, f"You may not decide for app {cp['app']}.", "not_found", quorum=need)
    if not decider_may_decide(settings, session.name, assignees, groups):
        return Gate(False, f"Assigned to {', '.join(assignees)}; you are not among them.", "not_assignee",
                    quorum=need)
    notice = claim_notice(cp, session.name)
    vote = own_vote(cp, session.name) if need > 1 else None
    if vote is not None:
        return Gate(False, f"Your {vote['action']} vote counted ({vote['progress']}). One vote per reviewer: the "
                           "decider would refuse another (already_voted).", "already_voted", notice=notice,
                    quorum=need, vote=vote)
    refused: dict[str, tuple[str, str]] = {}
    if cp.get("kind", "http") == "http" and cp.get("round", 1) >= cp.get("max_rounds", 1):
        refused["revise"] = ("max_rounds_reached", f"Round {cp.get('round')} is the last one (max_rounds "
                                                   f"{cp.get('max_rounds')}): the decider refuses a revision.")
    if (cp.get("policy") or {}).get("no_self_approval") and is_self(settings, cp, session.name):
        why = (f"You started this run (as the Dify user {cp.get('user')}), and this checkpoint may not be approved "
               "by the one who started it (self_approval): revise or abort are open to you.")
        refused["approve"] = refused["edit"] = ("self_approval", why)
    if need > 1 and "edit" not in refused:
        instead = "approve or abort (the last round allows no revision)" if "revise" in refused \
            else "revise with the change instead"
        refused["edit"] = ("quorum_edit", f"This checkpoint needs {need} approvals, and an edit cannot be voted on "
                                          f"(quorum_edit): {instead}.")
    return Gate(True, "", "", refused, notice, need)


# ---------------------------------------------------------------------- claim, release, reassign
@dataclass(frozen=True)
class Commands:
    """What this reviewer may do with the checkpoint besides deciding, each with the reason if not."""

    claim: str = ""  # "" = allowed, else why not
    release: str = ""
    reassign: str = ""
    admin: bool = False  # may name whose seat a reassign replaces

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "release": self.release, "reassign": self.reassign, "admin": self.admin}


def commands_gate(settings: Settings, session: Session, cp: dict[str, Any]) -> Commands:
    """As the decider's commands.py reads it: claim by someone who may decide (or an admin), and not
    while someone else holds the claim; release by the claimer or an admin; reassign by a named
    assignee (their own seat) or an admin."""
    if cp.get("status") != "open":
        closed = "This checkpoint is already decided."
        return Commands(closed, closed, closed)
    groups = list(session.reviewer.groups) if session.method == "oidc" else None
    reviewer = principal(settings, session.name, groups)
    if reviewer is None or not in_scope(actor_apps(settings, session.name, groups), cp["app"]):
        why = f"You may not act on checkpoints of app {cp['app']}."
        return Commands(why, why, why)
    admin = is_admin(reviewer)
    assignees = cp.get("assignees") or []
    claimed_by = cp.get("claimed_by")
    claim = ""
    if not (admin or decider_may_decide(settings, session.name, assignees, groups)):
        claim = f"Assigned to {', '.join(assignees)}; you are not among them (not_assignee)."
    elif claimed_by == session.name:
        claim = "You have claimed it already."
    elif claimed_by:
        claim = f"{claimed_by} has claimed it: only they or an admin release it (not_claimable)."
    release = ""
    if not claimed_by:
        release = "Nobody has claimed it."
    elif claimed_by != session.name and not admin:
        release = f"Claimed by {claimed_by}: only they or an admin release it (not_claimable)."
    reassign = ""
    if not admin and session.name not in assignees:
        reassign = (f"Only a named assignee ({', '.join(assignees)}) hands on their seat, or an admin reassigns."
                    if assignees else "No assignees (anyone granted the app decides): only an admin reassigns.")
    return Commands(claim, release, reassign, admin)
