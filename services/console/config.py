"""Console settings: `HITL_CONSOLE_*` environment variables (the shared `HITL_*` settings still apply)."""
from __future__ import annotations

import secrets

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import SettingsError


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HITL_CONSOLE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # Signs session cookies. Unset: a random one per process (sessions end at a restart, and several
    # replicas behind one address need the same value).
    secret: str | None = Field(default=None, min_length=16)
    ephemeral_secret: bool = False
    session_hours: float = Field(default=12.0, gt=0)
    secure_cookie: bool = False  # behind HTTPS: the cookie is then never sent over plain HTTP
    login_attempts: int = Field(default=5, ge=1)  # failed sign-ins per name per minute before a pause
    sse_keepalive_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _secret(self) -> "ConsoleSettings":
        if self.secret is None:
            self.secret = secrets.token_urlsafe(32)
            self.ephemeral_secret = True
        return self


def load_console_settings(**overrides) -> ConsoleSettings:
    try:
        return ConsoleSettings(**overrides)
    except ValidationError as exc:
        lines = [f"  HITL_CONSOLE_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid console configuration:\n" + "\n".join(lines)) from None
