"""How checkpoints and runs are shown outside the store (APIs, events, console, CLI): nothing that
routes replies, schedules polls, or is secret (a Dify form token); the id rule for paths; the
colours; and the one rule that decides a node's displayed state, so the CLI and the console agree."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

CHECKPOINT_HIDDEN = frozenset({"reply_to", "correlation_id", "published", "secret"})
RUN_HIDDEN = frozenset({"lease_owner", "lease_until", "next_poll_at", "poll_interval", "poll_failures"})

ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
_ID = re.compile(ID_PATTERN)

# Colours everywhere (ARCHITECTURE "Run monitoring"): green succeeded, red failed/exception, yellow
# running, blue waiting for a person, grey stopped / not reached.
STATUS_COLOR = {"open": "blue", "resolved": "green", "expired": "yellow", "cancelled": "grey"}
ACTION_COLOR = {"approve": "green", "edit": "green", "revise": "yellow", "abort": "red"}
RUN_COLOR = {"succeeded": "green", "partial-succeeded": "green", "failed": "red", "exception": "red",
             "running": "yellow", "retry": "yellow", "paused": "blue", "waiting": "blue", "stopped": "grey"}
RUN_TERMINAL = frozenset({"succeeded", "failed", "stopped", "partial-succeeded"})
NODE_FINAL = frozenset({"succeeded", "failed", "exception", "stopped"})


def valid_id(value: str) -> bool:
    """Ids in paths (checkpoint, run, decision): a short run of id characters, nothing else."""
    return len(value) <= 64 and bool(_ID.match(value))


def public_view(cp: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cp.items() if k not in CHECKPOINT_HIDDEN}


def public_run(run: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in RUN_HIDDEN}


def node_state(node: Mapping[str, Any], run_status: str, waiting: bool) -> str:
    """What a node execution is, shown: its recorded status, except that
    - in a run that has ended, a node that never finished was stopped with it (grey), and
    - while the run has an open checkpoint, its running HTTP request node is the one holding the
      call (a checkpoint's node_id names the node under review), and a running Human Input node
      waits for its form: both are "waiting" for a person (blue)."""
    status = node.get("status") or "unknown"
    if run_status in RUN_TERMINAL and status not in NODE_FINAL:
        return "stopped"
    if status in ("running", "paused") and (waiting and node.get("node_type") == "http-request"
                                            or node.get("node_type") == "human-input"):
        return "waiting"
    return status


def node_label(state: str) -> str:
    return "waiting for a person" if state == "waiting" else state
