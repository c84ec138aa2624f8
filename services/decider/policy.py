"""The policy engine's pure parts: the effective policy of a new checkpoint (snapshotted on it), the
timers it schedules, and what a set of votes amounts to. No store access: logic.py and timers.py
call these inside their transactions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.access import in_scope, reviewer_apps
from shared.models import Action, CheckpointRequested
from shared.policy import Approval, Policy, snapshot
from shared.settings import Settings
from shared.store.rows import CheckpointRow, VoteRow

REJECTS = (Action.revise, Action.abort)


def effective(settings: Settings, req: CheckpointRequested) -> tuple[dict[str, Any], list[str]]:
    """(the policy snapshot, the effective assignees) of a checkpoint opening now."""
    app = settings.app(req.app)
    policy = (req.policy or Policy()).over(app.policy if app else None)
    assignees, delegated = with_delegates(settings, list(req.assignees))
    return snapshot(policy, assignees=assignees, electorate=electorate(settings, req.app, assignees),
                    delegated=delegated, app=req.app), assignees


def with_delegates(settings: Settings, assignees: list[str]) -> tuple[list[str], dict[str, str]]:
    """A reviewer away (`delegate_to`) brings their delegate along, named or as a member of an
    assigned group: both may decide."""
    out, delegated = list(assignees), {}
    for name in members(settings, assignees):
        reviewer = settings.reviewer(name)
        if reviewer and reviewer.delegate_to and reviewer.delegate_to not in out:
            out.append(reviewer.delegate_to)
            delegated[name] = reviewer.delegate_to
    return out, delegated


def members(settings: Settings, assignees: list[str]) -> list[str]:
    """The reviewers an assignee list names, groups expanded."""
    voters: set[str] = set()
    for who in assignees:
        if who.startswith("group:"):
            group = who.removeprefix("group:")
            voters.update(r.name for r in settings.reviewers if group in r.groups)
        elif settings.reviewer(who) is not None:
            voters.add(who)
    return sorted(voters)


def electorate(settings: Settings, app: str, assignees: list[str]) -> list[str]:
    """Who may vote: the named assignees and the members of assigned groups — or, with no assignees,
    every reviewer granted the app."""
    if not assignees:
        return sorted(r.name for r in settings.reviewers if in_scope(reviewer_apps(settings, r), app))
    return members(settings, assignees)


def required(cp: CheckpointRow) -> int:
    return int((cp.get("policy") or {}).get("required") or 1)


def approval_of(cp: CheckpointRow) -> Approval:
    raw = (cp.get("policy") or {}).get("approval")
    return Approval.model_validate(raw) if raw else Approval()


def timers_for(policy: dict[str, Any], created_at: float, deadline: float) -> list[tuple[str, int, float]]:
    """(kind, step, due_at) of the timers a checkpoint opening at `created_at` starts with; later
    reminders are scheduled one at a time as each fires."""
    out: list[tuple[str, int, float]] = []
    every = policy.get("remind_every_s")
    if every and created_at + every < deadline:
        out.append(("reminder", 1, created_at + every))
    warn = policy.get("warn_before_s")
    if warn and deadline - warn > created_at:
        out.append(("deadline_near", 1, deadline - warn))
    for i, step in enumerate(policy.get("escalate") or [], start=1):
        out.append(("escalate", i, created_at + float(step["after_s"])))
    return out


@dataclass(frozen=True)
class Tally:
    required: int
    electorate: list[str]
    approved: list[str]
    rejected: list[dict[str, str]]  # {voter, action}

    @property
    def reached(self) -> bool:
        return len(self.approved) >= self.required

    def reachable(self) -> bool:
        """Can the approvals still get there with the voters who have not voted?"""
        voted = set(self.approved) | {r["voter"] for r in self.rejected}
        waiting = [v for v in self.electorate if v not in voted]
        return len(self.approved) + len(waiting) >= self.required

    def as_dict(self) -> dict[str, Any]:
        return {"required": self.required, "electorate": self.electorate, "approved": self.approved,
                "rejected": self.rejected, "progress": self.progress()}

    def progress(self) -> str:
        names = ", ".join(self.approved)
        text = f"{len(self.approved)} of {self.required} approved" + (f": {names}" if names else "")
        if self.rejected:
            text += "; " + ", ".join(f"{r['action']} by {r['voter']}" for r in self.rejected)
        return text


def tally(cp: CheckpointRow, votes: list[VoteRow]) -> Tally:
    policy = cp.get("policy") or {}
    return Tally(required=required(cp), electorate=list(policy.get("electorate") or []),
                 approved=[v["voter"] for v in votes if v["action"] == Action.approve],
                 rejected=[{"voter": v["voter"], "action": v["action"]} for v in votes if v["action"] in REJECTS])


def is_self(settings: Settings, cp: CheckpointRow, actor: str) -> bool:
    """The reviewer is the Dify end user who started the run (the mapping in `end_users`)."""
    reviewer = settings.reviewer(actor)
    return bool(reviewer and cp.get("user") and cp["user"] in reviewer.end_users)
