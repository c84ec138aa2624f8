"""Routing rules (HITL_NOTIFY): who hears of a checkpoint, on which channel, at which address.

Every rule whose criteria all match (app, node, an assignee, a group) applies; its targets become
recipients. A `direct` target messages each assignee on their own identity (HITL_REVIEWERS) when the
platform can and the reviewer may see the app; the rest — and checkpoints without assignees — go to
the target's group address. The same (channel, address) is one recipient, however many rules name it.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.access import in_scope, is_assignee, reviewer_apps
from shared.logs import get_logger
from shared.settings import NotifyRule, NotifyTarget, Settings
from shared.store.notifications import Recipient

log = get_logger(__name__)
MAX_DIRECT_PER_TARGET = 50  # a group of hundreds named as assignees should not become hundreds of DMs


def people(settings: Settings, assignees: Iterable[str]) -> list[str]:
    """The configured reviewers among assignees: names as they are, `group:<name>` as its members."""
    out: list[str] = []
    for who in assignees:
        if who.startswith("group:"):
            group = who.removeprefix("group:")
            out += [r.name for r in settings.reviewers if group in r.groups]
        elif settings.reviewer(who) is not None:
            out.append(who)
    return list(dict.fromkeys(out))


def matches(settings: Settings, rule: NotifyRule, cp: dict[str, Any]) -> bool:
    assignees = [str(a) for a in cp.get("assignees") or []]
    if rule.app not in (None, "*") and rule.app != cp.get("app"):
        return False
    if rule.node and rule.node != cp.get("node_id"):
        return False
    if rule.assignee and not (rule.assignee in assignees or is_assignee(settings, rule.assignee, assignees)):
        return False
    if rule.group and f"group:{rule.group}" not in assignees:
        members = (settings.reviewer(m) for m in people(settings, assignees))
        if not any(r is not None and rule.group in r.groups for r in members):
            return False
    return True


def expand(settings: Settings, target: NotifyTarget, cp: dict[str, Any]) -> list[Recipient]:
    address = target.address
    group = Recipient(target.channel, address, "group", target.reviewer) if address else None
    assignees = [str(a) for a in cp.get("assignees") or []]
    if not target.direct or not assignees:
        return [group] if group else []
    direct: list[Recipient] = []
    missed = False
    for name in people(settings, assignees):
        reviewer = settings.reviewer(name)
        if reviewer is None or not in_scope(reviewer_apps(settings, reviewer), str(cp.get("app"))):
            continue  # cannot see this app, so cannot decide it: not told, directly or through the group
        ident = reviewer.identity(target.channel)
        if ident:
            direct.append(Recipient(target.channel, ident, "user", name))
        else:
            missed = True
    if len(direct) > MAX_DIRECT_PER_TARGET:
        log.warning("notify.too_many_direct", channel=target.channel, assignees=len(direct),
                    limit=MAX_DIRECT_PER_TARGET)
        direct, missed = direct[:MAX_DIRECT_PER_TARGET], True
    if (missed or not direct) and group:
        direct.append(group)
    return direct


def recipients(settings: Settings, cp: dict[str, Any]) -> list[Recipient]:
    """Every recipient of this checkpoint under the routing rules, each once."""
    found: dict[tuple[str, str], Recipient] = {}
    for rule in settings.notify:
        if matches(settings, rule, cp):
            for target in rule.targets:
                for r in expand(settings, target, cp):
                    found.setdefault((r.channel, r.address), r)
    return list(found.values())
