"""How checkpoints and runs are shown outside the store (APIs, events, console): nothing that routes
replies, schedules polls, or is secret (a Dify form token)."""
from __future__ import annotations

from typing import Any

CHECKPOINT_HIDDEN = frozenset({"reply_to", "correlation_id", "published", "secret"})
RUN_HIDDEN = frozenset({"lease_owner", "lease_until", "next_poll_at", "poll_interval", "poll_failures"})


def public_view(cp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cp.items() if k not in CHECKPOINT_HIDDEN}


def public_run(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in RUN_HIDDEN}
