"""Settings, in one place: `HITL_*` environment variables, optionally a YAML/JSON config file.

Every process calls `load_settings()` at start; a bad value stops it with a message that names the
setting, instead of failing later in the middle of a request.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.broker.nodes import default_group_size, parse_node_urls
from shared.policy import Policy
from shared.store.urls import normalise_database_url


class AppConfig(BaseModel):
    """One Dify app that calls our checkpoints (and, later, that we start and watch)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    checkpoint_token: str = Field(min_length=8, description="Bearer token the app's HTTP node sends")
    dify_base_url: str | None = Field(default=None, description="e.g. http://dify.internal (with or without /v1)")
    dify_api_key: str | None = Field(default=None, description="the app's service-API key, app-…")
    rate_per_s: float | None = Field(default=None, gt=0, description="Dify calls per second for this app")
    continuation_app: str | None = Field(default=None, description="app started when a detached checkpoint is decided")
    reviewers: list[str] = Field(default_factory=list, description="reviewers (names or group:<name>) granted this app")
    policy: Policy | None = Field(default=None, description="decision policy defaults of this app's checkpoints")

    @property
    def watched(self) -> bool:
        """The poller can talk to this app's Dify."""
        return bool(self.dify_base_url and self.dify_api_key)


class ReviewerConfig(BaseModel):
    """A person allowed to decide; `name` is the actor recorded in the history. A reviewer sees and
    decides only the apps granted to them (`apps`, a group's `apps`, or an app's `reviewers`);
    `all_apps: true` or the `admin` role sees every app."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[^:\s]+$")
    token: str = Field(min_length=8)
    groups: list[str] = Field(default_factory=list)
    apps: list[str] = Field(default_factory=list)
    all_apps: bool = False
    role: Literal["reviewer", "admin"] = "reviewer"
    password_hash: str | None = Field(default=None, description="console sign-in; `hitl hash-password` makes one")
    end_users: list[str] = Field(default_factory=list, description="Dify end-user ids that are this person "
                                                                   "(the self-approval guard)")
    delegate_to: str | None = Field(default=None, description="while away: checkpoints assigned to this reviewer are "
                                                              "also assigned to this one")
    # Who this person is on each chat platform (the notifier): a click by that platform user is a
    # decision by this reviewer, and direct messages go there.
    slack: str | None = Field(default=None, min_length=1, description="Slack user id, U…")
    feishu: str | None = Field(default=None, min_length=1, description="Feishu / Lark open_id, ou_…")
    dingtalk: str | None = Field(default=None, min_length=1, description="DingTalk userid")
    wecom: str | None = Field(default=None, min_length=1, description="WeCom (企业微信) userid")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$", description="email address")

    def identity(self, channel: str) -> str | None:
        """This reviewer's address on a notifier channel (None: not reachable there)."""
        return getattr(self, channel, None) if channel in CHANNEL_NAMES and channel != "webhook" else None


# ---------------------------------------------------------------------- the notifier (HITL_NOTIFY, HITL_CHANNELS)
CHANNEL_NAMES = ("slack", "feishu", "dingtalk", "wecom", "email", "webhook")
ChannelName = Literal["slack", "feishu", "dingtalk", "wecom", "email", "webhook"]
# Platforms on which a message can go to one person (a DingTalk custom robot posts to its group only;
# a webhook goes to its URL).
DIRECT_CHANNELS = ("slack", "feishu", "wecom", "email")


class NotifyTarget(BaseModel):
    """Where a matching checkpoint is announced on one channel.

    `to`: the group address — a Slack channel id (C…), a Feishu chat id (oc_…), a WeCom department id,
    an email address (a list), a webhook URL; DingTalk needs none (its robot posts to its group).
    `direct`: message each assignee on their own identity (HITL_REVIEWERS) where the platform allows;
    assignees without one, and checkpoints without assignees, go to `to`.
    `reviewer`: who the decision links of a group message decide as (a link cannot know who clicked);
    without it a group message on a link-only channel carries no decision buttons."""

    channel: ChannelName
    to: str | None = Field(default=None, min_length=1, max_length=2048)
    direct: bool = False
    reviewer: str | None = None

    @property
    def address(self) -> str | None:
        return "robot" if self.channel == "dingtalk" else self.to


class NotifyRule(BaseModel):
    """One routing rule: a checkpoint that matches every criterion given (app, node, an assignee, a
    group among the assignees) is announced on every target. All matching rules apply."""

    app: str | None = None
    node: str | None = None
    assignee: str | None = Field(default=None, description="a reviewer among the assignees (directly or by group)")
    group: str | None = Field(default=None, description="a group named among the assignees, or a member's group")
    targets: list[NotifyTarget] = Field(min_length=1)


class GroupConfig(BaseModel):
    """A named group of reviewers (members list `groups: [name]`) and the apps it is granted."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    apps: list[str] = Field(default_factory=list)


class BotConfig(BaseModel):
    """A chat bot that publishes decisions to `hitl.decisions`: it names itself in the `x-hitl-bot`
    header and signs the body with `secret` (`x-hitl-signature: v1=<hex HMAC-SHA256>`). It may act
    only for the reviewers in `acts_for` (`["*"]`: any reviewer) and only in `apps` (and the actor's
    own grants still apply)."""

    name: str = Field(min_length=1, max_length=24, pattern=r"^[A-Za-z0-9_.-]+$")
    secret: str = Field(min_length=16)
    acts_for: list[str] = Field(default_factory=list)
    apps: list[str] = Field(default_factory=list)


class SettingsError(SystemExit):
    """Raised at start when the configuration cannot work; the message names the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HITL_", extra="ignore")

    config_file: Path | None = None
    # One RabbitMQ node or several (a cluster): amqp:// URLs separated by commas (shared/broker/nodes.py).
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # Replicas of each quorum queue when it is created. Unset: one per node URL, at most 3; RabbitMQ's
    # own default when a single URL is given (it may be a load balancer in front of any cluster).
    rabbitmq_quorum_group_size: int | None = Field(default=None, ge=1, le=9)
    # SQLite file, or PostgreSQL; libpq's multi-host form (`postgresql://u@primary:5432,standby:5432/db`)
    # follows a failover to whichever host takes writes (shared/store/urls.py).
    database_url: str = "sqlite:///./var/hitl.db"
    auto_migrate: bool = True
    namespace: str = Field(default="hitl", pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")

    apps: list[AppConfig] = Field(default_factory=list)
    reviewers: list[ReviewerConfig] = Field(default_factory=list)
    groups: list[GroupConfig] = Field(default_factory=list)
    bots: list[BotConfig] = Field(default_factory=list)
    # The key our processes sign their messages with; unset, one is created in the store and shared
    # through it (every process reads the same store).
    internal_key: str | None = Field(default=None, min_length=32, repr=False)

    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(default=8080, ge=0, le=65535)
    decider_host: str = "127.0.0.1"
    decider_port: int = Field(default=8081, ge=0, le=65535)
    poller_host: str = "127.0.0.1"
    poller_port: int = Field(default=8082, ge=0, le=65535)

    # Run monitoring (poller).
    dify_rate_per_s: float = Field(default=10.0, gt=0)
    dify_max_concurrency: int = Field(default=8, ge=1, le=256)
    dify_timeout_s: float = Field(default=30.0, gt=0)
    poll_min_interval_s: float = Field(default=1.0, gt=0)
    poll_max_interval_s: float = Field(default=30.0, gt=0)
    poll_tick_s: float = Field(default=0.25, gt=0)
    poll_max_inflight: int = Field(default=50, ge=1)
    poll_lease_s: float = Field(default=60.0, gt=0)
    discovery_interval_s: float = Field(default=10.0, gt=0)
    discovery_lookback_s: float = Field(default=3600.0, ge=0)
    stream_idle_limit_s: float = Field(default=60.0, gt=0)
    # Where live runs' statuses come from: `listing` walks GET /v1/workflows/logs (100 runs a request)
    # and polls one by one only what changed or what the listing cannot show; `per_run` polls every
    # live run with GET /v1/workflows/run/{id} (the former algorithm, kept as the bench's baseline).
    status_source: Literal["listing", "per_run"] = "listing"
    listing_lookback_s: float = Field(default=8 * 86400.0, gt=0)  # older live runs are polled one by one
    sweep_interval_s: float = Field(default=2.0, gt=0)  # least time between two passes over an app's listing
    sweep_window_runs: int = Field(default=1000, ge=1)  # live runs per time window of a pass
    sweep_window_s: float = Field(default=3600.0, gt=0)  # longest time window of a pass
    sweep_lease_s: float = Field(default=60.0, gt=0)  # one poller walks an app's listing at a time
    # While an app's listing is walked, one-by-one polls (outputs of finished runs, fallbacks) may take at
    # most this share of its rate; the rest goes to the walk. Idle walk: polls take the whole rate.
    direct_poll_share: float = Field(default=0.1, gt=0, le=1)
    capture_retry_s: float = Field(default=60.0, gt=0)  # one capture re-attach per paused run per interval
    capture_grace_s: float = Field(default=2.0, ge=0)  # a pause seen by a poll: wait for its stream's form first
    stream_heartbeat_s: float = Field(default=20.0, gt=0)  # a live stream's reader says it is alive this often
    stream_lost_after_s: float = Field(default=60.0, gt=0)  # no sign of a reader this long: re-attach
    stream_reattach_max: int = Field(default=10, ge=0)  # re-attaches of one run after lost streams

    # How long one Dify HTTP call is held (see ARCHITECTURE "Waiting longer than one HTTP call").
    hold_default_s: float = Field(default=55.0, gt=0)
    hold_max_s: float = Field(default=590.0, gt=0)
    hold_margin_s: float = Field(default=5.0, ge=0)
    retry_after_s: int = Field(default=1, ge=0)
    max_held_per_app: int = Field(default=5000, ge=1)  # held calls of one app token in one ingest process
    decision_reply_timeout_s: float = Field(default=10.0, gt=0)

    body_limit_bytes: int = Field(default=1024 * 1024, gt=0)
    body_read_timeout_s: float = Field(default=30.0, gt=0)  # a body slower than this gets 408
    default_timeout_s: float = Field(default=300.0, gt=0)
    default_max_rounds: int = Field(default=5, ge=1)
    deadline_scan_interval_s: float = Field(default=1.0, gt=0)
    republish_after_s: float = Field(default=5.0, gt=0)
    resume_timeout_s: float = Field(default=60.0, gt=0)  # a submitted Dify form whose run stays paused
    # A decision for a checkpoint that has not opened yet waits this long for it, then settles `expired`.
    parked_decision_ttl_s: float = Field(default=3600.0, gt=0)
    # Retention: resolved checkpoints older than this many days are pruned by the decider (0: never).
    retention_days: float = Field(default=0, ge=0)
    # Per-node metric labels: the first N node ids of an app seen by a process keep their name, the
    # rest are counted as "other" (a workflow with thousands of node ids must not explode /metrics).
    metric_node_labels: int = Field(default=50, ge=0, le=1000)
    # Dify ends every run after WORKFLOW_MAX_EXECUTION_TIME (1200 s by default): a held checkpoint whose
    # deadline or escalation lies beyond it is refused at open (422 beyond_run_limit), not cut silently.
    dify_run_limit_s: float = Field(default=1200.0, gt=0)
    # The decision log's cross-checkpoint anchors (shared/store/audit.py): how often one is written.
    audit_anchor_interval_s: float = Field(default=60.0, gt=0)

    prefetch: int = Field(default=64, ge=1, le=10000)
    # Threads running store work. Unset: 1 on SQLite (one writer: concurrent write transactions would
    # only wait in SQLite's sleeping busy handler), 8 on PostgreSQL.
    handler_threads: int | None = Field(default=None, ge=1, le=256)
    max_delivery_attempts: int = Field(default=5, ge=1)

    # Decider group commit (batches.py): deliveries arriving together share a transaction; in flight: 1 SQLite, 2 PG.
    store_batch_max: int = Field(default=64, ge=1, le=1000)
    store_batches_in_flight: int | None = Field(default=None, ge=1, le=256)

    @property
    def store_threads(self) -> int:
        return self.handler_threads or (1 if self.database_url.startswith("sqlite") else 8)

    @property
    def store_batches(self) -> int:
        return self.store_batches_in_flight or (1 if self.database_url.startswith("sqlite") else 2)

    # The notifier: routing rules, channel credentials (secrets: never logged or shown), its HTTP server
    # (platform callbacks and decision links), and how it retries a platform that fails.
    notify: list[NotifyRule] = Field(default_factory=list, repr=False)  # webhook URLs may carry secrets
    channels: dict[ChannelName, dict[str, Any]] = Field(default_factory=dict, repr=False)
    notifier_host: str = "127.0.0.1"
    notifier_port: int = Field(default=8083, ge=0, le=65535)
    notifier_public_url: str | None = Field(default=None, pattern=r"^https?://", description="how platforms and "
                                            "reviewers reach the notifier; default http://<host>:<port>")
    notifier_console_url: str | None = Field(default=None, pattern=r"^https?://", description="the console, for "
                                             "the cards' Open-in-console button")
    notifier_link_secret: str | None = Field(default=None, min_length=32, repr=False)
    notifier_link_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    notifier_retry_delays_s: list[float] = Field(default_factory=lambda: [5.0, 30.0, 30.0, 300.0], min_length=1)
    notifier_channel_concurrency: int = Field(default=16, ge=1, le=256)
    notifier_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def notifier_url(self) -> str:
        host = "127.0.0.1" if self.notifier_host in ("0.0.0.0", "::") else self.notifier_host
        return (self.notifier_public_url or f"http://{host}:{self.notifier_port}").rstrip("/")

    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"

    @field_validator("rabbitmq_url")
    @classmethod
    def _amqp_nodes(cls, value: str) -> str:
        return ",".join(parse_node_urls(value))

    @property
    def rabbitmq_nodes(self) -> tuple[str, ...]:
        return parse_node_urls(self.rabbitmq_url)

    @property
    def quorum_group_size(self) -> int | None:
        return default_group_size(self.rabbitmq_nodes, self.rabbitmq_quorum_group_size)

    @field_validator("database_url")
    @classmethod
    def _sql_scheme(cls, value: str) -> str:
        # Accept the plain and multi-host postgres URLs people paste; SQLAlchemy needs the psycopg 3
        # driver name and the hosts as parameters.
        return normalise_database_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.hold_default_s > self.hold_max_s:
            raise ValueError(f"hold_default_s ({self.hold_default_s}) is above hold_max_s ({self.hold_max_s})")
        for label, items, key in (("apps", self.apps, "name"), ("reviewers", self.reviewers, "name"),
                                  ("groups", self.groups, "name"), ("bots", self.bots, "name")):
            listed = [getattr(i, key) for i in items]
            dupes = sorted({n for n in listed if listed.count(n) > 1})
            if dupes:
                raise ValueError(f"{label}: duplicate names {dupes}")
        names = {a.name for a in self.apps}
        for a in self.apps:
            if a.continuation_app and a.continuation_app not in names:
                raise ValueError(f"apps.{a.name}.continuation_app: no app named {a.continuation_app!r}")
            if bool(a.dify_base_url) != bool(a.dify_api_key):
                raise ValueError(f"apps.{a.name}: dify_base_url and dify_api_key go together")
        if self.poll_min_interval_s > self.poll_max_interval_s:
            raise ValueError("poll_min_interval_s is above poll_max_interval_s")
        if self.stream_heartbeat_s >= self.stream_lost_after_s:
            raise ValueError(f"stream_heartbeat_s ({self.stream_heartbeat_s}) must be below stream_lost_after_s "
                             f"({self.stream_lost_after_s}): a live stream would be taken for lost")
        tokens = [a.checkpoint_token for a in self.apps] + [r.token for r in self.reviewers]
        if len(tokens) != len(set(tokens)):
            raise ValueError("a token is used twice: every app and reviewer needs its own token")
        self._check_grants(names)
        return self

    def _check_grants(self, app_names: set[str]) -> None:
        reviewers, groups = {r.name for r in self.reviewers}, {g.name for g in self.groups}
        for r in self.reviewers:
            for app in r.apps:
                if app not in app_names:
                    raise ValueError(f"reviewers.{r.name}.apps: no app named {app!r}")
        for g in self.groups:
            for app in g.apps:
                if app not in app_names:
                    raise ValueError(f"groups.{g.name}.apps: no app named {app!r}")
        for a in self.apps:
            for who in a.reviewers:
                name = who.removeprefix("group:")
                if name not in (groups | {gg for r in self.reviewers for gg in r.groups}
                                if who.startswith("group:") else reviewers):
                    raise ValueError(f"apps.{a.name}.reviewers: no reviewer or group {who!r}")
        for r in self.reviewers:
            if r.delegate_to and r.delegate_to not in reviewers:
                raise ValueError(f"reviewers.{r.name}.delegate_to: no reviewer named {r.delegate_to!r}")
        for b in self.bots:
            for who in b.acts_for:
                if who != "*" and who not in reviewers:
                    raise ValueError(f"bots.{b.name}.acts_for: no reviewer named {who!r}")
            for app in b.apps:
                if app not in app_names:
                    raise ValueError(f"bots.{b.name}.apps: no app named {app!r}")

    @model_validator(mode="after")
    def _notify_consistent(self) -> Settings:
        """Routing rules name configured channels, known apps, reviewers and groups; a platform
        identity belongs to one reviewer (a click must map to exactly one person)."""
        for channel in CHANNEL_NAMES:
            if channel == "webhook":
                continue
            seen: dict[str, str] = {}
            for r in self.reviewers:
                ident = r.identity(channel)
                if ident and ident in seen:
                    raise ValueError(f"reviewers.{r.name}.{channel}: {ident!r} is also {seen[ident]}'s")
                if ident:
                    seen[ident] = r.name
        apps, reviewers = {a.name for a in self.apps}, {r.name for r in self.reviewers}
        groups = {g.name for g in self.groups} | {g for r in self.reviewers for g in r.groups}
        for i, rule in enumerate(self.notify):
            where = f"notify[{i}]"
            if rule.app not in (None, "*") and rule.app not in apps:
                raise ValueError(f"{where}.app: no app named {rule.app!r}")
            if rule.assignee and rule.assignee.removeprefix("group:") not in (
                    groups if rule.assignee.startswith("group:") else reviewers):
                raise ValueError(f"{where}.assignee: no reviewer or group {rule.assignee!r}")
            if rule.group and rule.group not in groups:
                raise ValueError(f"{where}.group: no group named {rule.group!r}")
            for j, t in enumerate(rule.targets):
                at = f"{where}.targets[{j}]"
                if t.channel not in self.channels:
                    raise ValueError(f"{at}: channel {t.channel} is not configured in HITL_CHANNELS")
                if t.reviewer and t.reviewer not in reviewers:
                    raise ValueError(f"{at}.reviewer: no reviewer named {t.reviewer!r}")
                if t.channel == "webhook" and not (t.to or "").startswith(("http://", "https://")):
                    raise ValueError(f"{at}.to: a webhook target needs the receiver's http(s) URL")
                if t.channel not in ("dingtalk", "webhook") and not t.to and not t.direct:
                    raise ValueError(f"{at}: give `to` (a group address) or `direct: true` (the assignees)")
                if t.direct and t.channel not in DIRECT_CHANNELS:
                    raise ValueError(f"{at}.direct: {t.channel} cannot message one person; use its group")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Environment wins over the config file, the file over the defaults.
        return (init_settings, env_settings, _ConfigFileSource(settings_cls), file_secret_settings)

    @property
    def names(self):
        from shared.topology import Names

        return Names(self.namespace)

    def app_for_token(self, token: str) -> AppConfig | None:
        return _match_token(token, self.apps, "checkpoint_token")

    def reviewer_for_token(self, token: str) -> ReviewerConfig | None:
        return _match_token(token, self.reviewers, "token")

    def app(self, name: str) -> AppConfig | None:
        return next((a for a in self.apps if a.name == name), None)

    def app_for_dify_key(self, key: str) -> AppConfig | None:
        """The app whose Dify key a gateway client sent (constant-time, like every token check)."""
        return _match_token(key, [a for a in self.apps if a.dify_api_key], "dify_api_key")

    def reviewer(self, name: str) -> ReviewerConfig | None:
        return next((r for r in self.reviewers if r.name == name), None)

    def reviewer_on(self, channel: str, identity: str) -> ReviewerConfig | None:
        """The reviewer whose identity on `channel` (Slack user id, Feishu open_id, …) this is."""
        return next((r for r in self.reviewers if identity and r.identity(channel) == identity), None)

    def bot(self, name: str) -> BotConfig | None:
        return next((b for b in self.bots if b.name == name), None)


def _match_token(token: str, items: list[Any], attr: str):
    """Constant-time comparison against every configured token (no early exit on a match)."""
    import hmac

    found = None
    for item in items:
        if hmac.compare_digest(token.encode(), getattr(item, attr).encode()):
            found = item
    return found


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by HITL_CONFIG_FILE (YAML or JSON) with the settings' own field names."""

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the base class
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("HITL_CONFIG_FILE")
        if not path:
            return {}
        file = Path(path)
        if not file.is_file():
            raise SettingsError(f"HITL_CONFIG_FILE: no such file {file}")
        text = file.read_text()
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise SettingsError(f"HITL_CONFIG_FILE: {file} must hold a mapping of setting names to values")
        return data


def load_settings(**overrides: Any) -> Settings:
    """Validated settings, or a SystemExit whose message lists every bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  HITL_{where.split('.')[0].upper()} ({where}): {err['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
