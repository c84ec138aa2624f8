"""Changes to an open checkpoint that are not decisions: claim (a soft lock others see: who and
since when — others may still decide), release, reassign (hand a seat to another reviewer or a
group). By someone who may decide it (reassign: an assignee or an admin), within their apps; all of
it in the history, each with its event."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.decider import policy
from services.decider.outcomes import Refused, event
from shared.access import Scope, in_scope, is_admin, may_decide, principal, reviewer_apps
from shared.broker import Outbound
from shared.models import CheckpointCommand, CheckpointStatus, EventType
from shared.refusals import Refusal
from shared.settings import Settings
from shared.store import checkpoints as store
from shared.store.rows import CheckpointRow


def apply(conn, settings: Settings, cmd: CheckpointCommand, scope: Scope, now: float,
          events_exchange: str) -> tuple[CheckpointRow | None, Refused | None, list[Outbound]]:
    """(the checkpoint after the command, a refusal, the events to publish)."""
    cp = store.get(conn, cmd.checkpoint_id, apps=scope)
    if cp is None:
        return None, (Refusal.not_found, "no such checkpoint"), []
    cp = store.lock(conn, cp["id"]) or cp
    if cp["status"] != CheckpointStatus.open:
        return cp, (Refusal.already_resolved, f"checkpoint is {cp['status']}"), []
    reviewer = principal(settings, cmd.actor, cmd.actor_groups)
    admin = bool(reviewer and is_admin(reviewer))
    detail: dict[str, Any]
    if not (admin or may_decide(settings, cmd.actor, cp["assignees"], cmd.actor_groups)):
        return cp, (Refusal.not_assignee, f"{cmd.actor} is not among the assignees {cp['assignees']}"), []
    if cmd.command == "claim":
        if cp["claimed_by"] and cp["claimed_by"] != cmd.actor:
            return cp, (Refusal.not_claimable, f"claimed by {cp['claimed_by']} since {cp['claimed_at']:.0f}"), []
        changed = store.update_open(conn, cp["id"], now, claimed_by=cmd.actor, claimed_at=cp["claimed_at"] or now)
        kind, detail = EventType.claimed, {"note": cmd.note}
    elif cmd.command == "release":
        if not cp["claimed_by"]:
            return cp, (Refusal.not_claimable, "nobody has claimed it"), []
        if cp["claimed_by"] != cmd.actor and not admin:
            return cp, (Refusal.not_claimable, f"claimed by {cp['claimed_by']}: only they or an admin release it"), []
        changed = store.update_open(conn, cp["id"], now, claimed_by=None, claimed_at=None)
        kind, detail = EventType.released, {"was": cp["claimed_by"], "note": cmd.note}
    else:
        found = _reassign(settings, cp, cmd, admin)
        if not isinstance(found, Seats):
            return cp, found, []
        assignees, replaced = found.assignees, found.replaced
        snapshot = dict(cp["policy"] or {})
        snapshot["assignees"] = assignees
        snapshot["electorate"] = policy.electorate(settings, cp["app"], assignees)
        changed = store.update_open(conn, cp["id"], now, assignees=assignees, policy=snapshot,
                                    claimed_by=None, claimed_at=None)
        kind, detail = EventType.reassigned, {"to": cmd.to, "replaced": replaced, "note": cmd.note}
    assert changed is not None  # locked and open
    store.append_history(conn, cp["id"], kind.value.removeprefix("checkpoint."), actor=cmd.actor,
                         channel=cmd.channel, outcome="applied", message_id=cmd.id, detail=detail, at=now)
    return changed, None, [event(events_exchange, kind, changed, {"actor": cmd.actor, **detail})]


@dataclass(frozen=True)
class Seats:
    assignees: list[str]
    replaced: list[str]


def _reassign(settings: Settings, cp: CheckpointRow, cmd: CheckpointCommand, admin: bool) -> Seats | Refused:
    target = (cmd.to or "").strip()
    if not target:
        return Refusal.not_claimable, "reassign needs `to`: a reviewer name or group:<name>"
    if not _may_take(settings, target, cp["app"]):
        return Refusal.not_claimable, f"{target!r} is no reviewer or group granted app {cp['app']}"
    current = list(cp["assignees"] or [])
    if cmd.replace and cmd.replace != cmd.actor and not admin:
        return Refusal.not_assignee, "you hand on your own seat; only an admin reassigns someone else's"
    seat = cmd.replace or (cmd.actor if cmd.actor in current else None)
    if seat is not None and seat not in current:
        return Refusal.not_claimable, f"{seat!r} is not among the assignees {current}"
    if seat is None and not admin:
        return Refusal.not_assignee, "only a named assignee hands on their seat (or an admin reassigns)"
    replaced = [seat] if seat else current
    kept = [a for a in current if a not in replaced]
    return Seats(kept + ([target] if target not in kept else []), replaced)


def _may_take(settings: Settings, target: str, app: str) -> bool:
    """A reviewer granted the app, or a group some member of which is."""
    if target.startswith("group:"):
        group = target.removeprefix("group:")
        return any(group in r.groups and in_scope(reviewer_apps(settings, r), app) for r in settings.reviewers) or \
            any(g.name == group and app in g.apps for g in settings.groups)
    reviewer = settings.reviewer(target)
    return reviewer is not None and in_scope(reviewer_apps(settings, reviewer), app)
