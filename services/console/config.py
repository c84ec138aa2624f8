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
    # Failed sign-ins per (client address, name) per minute before that pair waits: guessing from
    # elsewhere never locks a reviewer out of their own address.
    login_attempts: int = Field(default=5, ge=1)
    login_throttle_keys: int = Field(default=10_000, ge=100)  # pairs remembered; the oldest go first
    # Proxies in front of the console that append to X-Forwarded-For (0: the socket's address is the client).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    page_size: int = Field(default=50, ge=5, le=500)  # inbox and runs rows per page
    # Dify's web console, for a link from a checkpoint to its run ({app_id}, {run_id}, {workflow_id}).
    dify_web_url: str | None = Field(default=None, pattern=r"^https?://")
    dify_run_path: str = "/app/{app_id}/logs"

    # OpenID Connect sign-in (authorization code + PKCE): on when an issuer is set.
    oidc_issuer: str | None = Field(default=None, pattern=r"^https?://")
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None  # unset: a public client (PKCE alone)
    oidc_scopes: str = "openid profile email"
    oidc_name_claim: str = "preferred_username"  # the claim that is the reviewer's name
    oidc_groups_claim: str = "groups"  # a list of group names (a string: one group)
    # Identity-provider group → dify-hitl group; empty: the provider's names as they are. Unmapped
    # groups are dropped when a map is set.
    oidc_groups_map: dict[str, str] = Field(default_factory=dict)
    oidc_only_reviewers: bool = False  # refuse names that HITL_REVIEWERS does not list
    # Where the provider sends the browser back; default: this console's own /login/oidc/callback.
    oidc_redirect_url: str | None = Field(default=None, pattern=r"^https?://")
    oidc_label: str = "single sign-on"  # the button says "Sign in with <label>"
    oidc_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _secret(self) -> ConsoleSettings:
        if self.secret is None:
            self.secret = secrets.token_urlsafe(32)
            self.ephemeral_secret = True
        if self.oidc_issuer and not self.oidc_client_id:
            raise ValueError("HITL_CONSOLE_OIDC_CLIENT_ID is needed with HITL_CONSOLE_OIDC_ISSUER")
        return self

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)


def load_console_settings(**overrides) -> ConsoleSettings:
    try:
        return ConsoleSettings(**overrides)
    except ValidationError as exc:
        lines = [f"  HITL_CONSOLE_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid console configuration:\n" + "\n".join(lines)) from None
