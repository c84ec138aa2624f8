"""Settings, in one place: `HITL_*` environment variables, optionally a YAML/JSON config file.

Every process calls `load_settings()` at start; a bad value stops it with a message that names the
setting, instead of failing later in the middle of a request.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class AppConfig(BaseModel):
    """One Dify app that calls our checkpoints (and, later, that we start and watch)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    checkpoint_token: str = Field(min_length=8, description="Bearer token the app's HTTP node sends")
    dify_base_url: str | None = None
    dify_api_key: str | None = None


class ReviewerConfig(BaseModel):
    """A person or bot allowed to decide; `name` is the actor recorded in the history."""

    name: str = Field(min_length=1, max_length=64)
    token: str = Field(min_length=8)
    groups: list[str] = Field(default_factory=list)


class SettingsError(SystemExit):
    """Raised at start when the configuration cannot work; the message names the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HITL_", extra="ignore")

    config_file: Path | None = None
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    database_url: str = "sqlite:///./var/hitl.db"
    auto_migrate: bool = True
    namespace: str = Field(default="hitl", pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")

    apps: list[AppConfig] = Field(default_factory=list)
    reviewers: list[ReviewerConfig] = Field(default_factory=list)

    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(default=8080, ge=0, le=65535)
    decider_host: str = "127.0.0.1"
    decider_port: int = Field(default=8081, ge=0, le=65535)

    # How long one Dify HTTP call is held (see ARCHITECTURE "Waiting longer than one HTTP call").
    hold_default_s: float = Field(default=55.0, gt=0)
    hold_max_s: float = Field(default=590.0, gt=0)
    hold_margin_s: float = Field(default=5.0, ge=0)
    retry_after_s: int = Field(default=1, ge=0)
    decision_reply_timeout_s: float = Field(default=10.0, gt=0)

    body_limit_bytes: int = Field(default=1024 * 1024, gt=0)
    default_timeout_s: float = Field(default=300.0, gt=0)
    default_max_rounds: int = Field(default=5, ge=1)
    deadline_scan_interval_s: float = Field(default=1.0, gt=0)
    republish_after_s: float = Field(default=5.0, gt=0)

    prefetch: int = Field(default=64, ge=1, le=10000)
    handler_threads: int = Field(default=8, ge=1, le=256)
    max_delivery_attempts: int = Field(default=5, ge=1)

    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"

    @field_validator("rabbitmq_url")
    @classmethod
    def _amqp_scheme(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator("database_url")
    @classmethod
    def _sql_scheme(cls, value: str) -> str:
        # Accept the plain postgres URLs people paste; SQLAlchemy needs the psycopg 3 driver name.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix):]
        if not value.startswith(("sqlite://", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.hold_default_s > self.hold_max_s:
            raise ValueError(f"hold_default_s ({self.hold_default_s}) is above hold_max_s ({self.hold_max_s})")
        for label, items, key in (("apps", self.apps, "name"), ("reviewers", self.reviewers, "name")):
            names = [getattr(i, key) for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{label}: duplicate names {dupes}")
        tokens = [a.checkpoint_token for a in self.apps] + [r.token for r in self.reviewers]
        if len(tokens) != len(set(tokens)):
            raise ValueError("a token is used twice: every app and reviewer needs its own token")
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

    def reviewer(self, name: str) -> ReviewerConfig | None:
        return next((r for r in self.reviewers if r.name == name), None)


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
