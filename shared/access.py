"""Who may see and decide what: apps are tenants, reviewers and bots are principals granted per app.

A reviewer's scope is the set of apps granted to them — directly (`apps`), through a group
(`groups: [...]` on the reviewer, `apps` on the group), or by the app (`reviewers: [name |
group:<name>]`). `all_apps: true` or the `admin` role sees every app: `ALL` (None), which store
queries read as "no filter". Outside their scope a reviewer gets `404`, never `403` (do not reveal
that a checkpoint exists). The assignee rule lives here too, once.
"""
from __future__ import annotations

import secrets
from collections.abc import Collection

from pydantic import ValidationError

from shared.settings import BotConfig, ReviewerConfig, Settings

Scope = frozenset[str] | None
ALL: Scope = None


def reviewer_apps(settings: Settings, reviewer: ReviewerConfig) -> Scope:
    if reviewer.all_apps or reviewer.role == "admin":
        return ALL
    granted = set(reviewer.apps)
    groups = set(reviewer.groups)
    for group in settings.groups:
        if group.name in groups:
            granted.update(group.apps)
    for app in settings.apps:
        if reviewer.name in app.reviewers or any(f"group:{g}" in app.reviewers for g in groups):
            granted.add(app.name)
    return frozenset(granted)


def principal(settings: Settings, actor: str, groups: Collection[str] | None = None) -> ReviewerConfig | None:
    """The reviewer `actor` is: the configured one, with `groups` added when one of our processes
    vouches for them (the console, for someone signed in with the company's identity provider, whose
    groups come from its claims); without configuration, such a person is their groups alone."""
    reviewer = settings.reviewer(actor)
    if groups is None:
        return reviewer
    if reviewer is None:
        try:
            return ReviewerConfig(name=actor, token=secrets.token_urlsafe(16), groups=sorted(groups))
        except ValidationError:  # not a name we could record: no principal
            return None
    return reviewer.model_copy(update={"groups": sorted(set(reviewer.groups) | set(groups))})


def actor_apps(settings: Settings, actor: str, groups: Collection[str] | None = None) -> Scope:
    """The apps a decision by `actor` may touch: a reviewer's scope; nothing for an unknown name
    (the system's own decisions — deadlines, run ends — do not go through here)."""
    reviewer = principal(settings, actor, groups)
    return reviewer_apps(settings, reviewer) if reviewer is not None else frozenset()


def bot_scope(settings: Settings, bot: BotConfig, actor: str) -> tuple[Scope, str | None]:
    """(the apps this bot may decide in for `actor`, or None with the reason it may not act)."""
    reviewer = settings.reviewer(actor)
    if reviewer is None:
        return frozenset(), f"{actor!r} is not a reviewer"
    if "*" not in bot.acts_for and actor not in bot.acts_for:
        return frozenset(), f"bot {bot.name!r} may not act for {actor!r}"
    apps = reviewer_apps(settings, reviewer)
    bot_apps = frozenset(bot.apps)
    return (bot_apps if apps is None else apps & bot_apps), None


def in_scope(scope: Scope, app: str) -> bool:
    return scope is None or app in scope


def is_admin(reviewer: ReviewerConfig) -> bool:
    return reviewer.role == "admin"


def is_assignee(settings: Settings, actor: str, assignees: Collection[str],
                groups: Collection[str] | None = None) -> bool:
    """Named in the assignees, or a member of a `group:<name>` among them."""
    if actor in assignees:
        return True
    reviewer = principal(settings, actor, groups)
    return bool(reviewer and {f"group:{g}" for g in reviewer.groups} & set(assignees))


def may_decide(settings: Settings, actor: str, assignees: Collection[str],
               groups: Collection[str] | None = None) -> bool:
    return not assignees or is_assignee(settings, actor, assignees, groups)
