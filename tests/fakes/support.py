"""What the channel tests share: a checkpoint as `hitl.events` carries it, running adapter coroutines
with a real httpx client, and the check that no secret leaked into what a test saw."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import structlog

T = TypeVar("T")
OPENED_AT = 1_700_000_000.0


def checkpoint(**over: Any) -> dict[str, Any]:
    """A checkpoint.opened event's `checkpoint` (shared.views.public_view of a store row)."""
    cp = {"id": "5f0c7f5e-8d1a-4c3e-9c61-0a1b2c3d4e5f", "app": "support-bot", "kind": "http",
          "workflow_run_id": "run-123", "node_id": "draft_reply", "round": 2, "status": "open",
          "message": "Please check the draft <reply> & tone", "node_output": {"reply": "Dear customer, " + "x" * 50},
          "assignees": ["alice", "bob"], "deadline": OPENED_AT + 3600, "action": None, "decided_by": None,
          "decision_channel": None, "created_at": OPENED_AT, "updated_at": OPENED_AT, "form": None}
    cp.update(over)
    return cp


def resolved(cp: dict[str, Any], action: str = "approve", by: str = "alice", via: str = "slack") -> dict[str, Any]:
    return {**cp, "status": "resolved", "action": action, "decided_by": by, "decision_channel": via,
            "resolved_at": OPENED_AT + 180}


def run(make: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with httpx.AsyncClient() as http:
            return await make(http)

    return asyncio.run(main())


def seen_text(*things: Any) -> str:
    """Everything a test saw, as one string: cards, refs, exceptions, log events."""
    parts = []
    for thing in things:
        if dataclasses.is_dataclass(thing) and not isinstance(thing, type):
            thing = dataclasses.asdict(thing)
        if isinstance(thing, BaseException):
            thing = f"{thing!r} {thing} {vars(thing)}"
        parts.append(thing if isinstance(thing, str) else json.dumps(thing, default=repr, ensure_ascii=False))
    return "\n".join(parts)


def assert_no_secrets(secrets: list[str], *things: Any) -> None:
    text = seen_text(*things)
    for secret in secrets:
        assert secret not in text, f"a secret leaked: {secret[:4]}…"


capture_logs = structlog.testing.capture_logs
