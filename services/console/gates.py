"""May this reviewer decide this checkpoint — and if not, why, in words the page shows next to the
disabled buttons. The console says what the decider would say (shared/access.py), before a click.

Someone signed in with the identity provider may decide with the groups its claims give them: the
console sends those groups with the decision (`actor_groups`), and the decider trusts them from our
own processes only (never from a bot).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.console.auth import Session
from shared.access import actor_apps, in_scope, is_assignee
from shared.access import may_decide as decider_may_decide
from shared.settings import Settings


@dataclass(frozen=True)
class Gate:
    allowed: bool
    reason: str = ""
    revise_reason: str = ""  # revise alone is refused (the last round)

    def as_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason": self.reason, "revise_reason": self.revise_reason}


def assigned_to(settings: Settings, session: Session, cp: dict[str, Any]) -> bool:
    """Named among the assignees, or in one of their groups (the session's groups: configured ones and
    those the identity provider sent)."""
    assignees = cp.get("assignees") or []
    return session.name in assignees or any(f"group:{g}" in assignees for g in session.reviewer.groups) \
        or is_assignee(settings, session.name, assignees)


def gate(settings: Settings, session: Session, cp: dict[str, Any]) -> Gate:
    if cp.get("status") != "open":
        return Gate(False, "This checkpoint is already decided.")
    assignees = cp.get("assignees") or []
    if assignees and not assigned_to(settings, session, cp):
        return Gate(False, f"Assigned to {', '.join(assignees)}; you are not among them, so the decider would "
                           "refuse your decision (not_assignee).")
    groups = list(session.reviewer.groups) if session.method == "oidc" else None
    if not in_scope(actor_apps(settings, session.name, groups), cp["app"]):
        return Gate(False, f"You may not decide for app {cp['app']}.")
    if not decider_may_decide(settings, session.name, assignees, groups):
        return Gate(False, f"Assigned to {', '.join(assignees)}; you are not among them.")
    revise = ""
    if cp.get("kind", "http") == "http" and cp.get("round", 1) >= cp.get("max_rounds", 1):
        revise = (f"Round {cp.get('round')} is the last one (max_rounds {cp.get('max_rounds')}): "
                  "the decider refuses a revision.")
    return Gate(True, "", revise)
