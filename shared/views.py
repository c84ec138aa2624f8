"""How checkpoints and runs are shown outside the store (APIs, events, console, CLI): nothing that
routes replies, schedules polls, or is secret (a Dify form token); the id rule for paths; the
colours; and the one rule that decides a node's displayed state, so the CLI and the console agree."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.models import ABORT_ACTION_IDS

CHECKPOINT_HIDDEN = frozenset({"reply_to", "correlation_id", "published", "secret"})
RUN_HIDDEN = frozenset({"lease_owner", "lease_until", "next_poll_at", "poll_interval", "poll_failures",
                        "capture_due_at", "direct_until", "stream_alive_at", "reattached_at"})

ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
_ID = re.compile(ID_PATTERN)

# Colours everywhere (ARCHITECTURE "Run monitoring"): green succeeded, red failed/exception, yellow
# running, blue waiting for a person, grey stopped / not reached.
STATUS_COLOR = {"open": "blue", "resolved": "green", "expired": "yellow", "cancelled": "grey"}
ACTION_COLOR = {"approve": "green", "edit": "green", "revise": "yellow", "abort": "red"}
RUN_COLOR = {"succeeded": "green", "partial-succeeded": "green", "failed": "red", "exception": "red",
             "running": "yellow", "retry": "yellow", "paused": "blue", "waiting": "blue", "stopped": "grey"}
RUN_TERMINAL = frozenset({"succeeded", "failed", "stopped", "partial-succeeded"})
# What a tracked run's status is recorded as (DIFY.md "Run and node status values", and not_found for
# a run Dify does not know): what GET /v1/runs?status= and `hitl runs --status` accept.
TRACKED_RUN_STATUSES = ("running", "paused", "succeeded", "partial-succeeded", "failed", "stopped", "scheduled",
                        "not_found")
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


def loop_iterations(nodes: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """Which iteration of its Loop each node execution (in run order) belongs to, 0-based; None
    outside a loop. Dify reports `loop_index` only when a child node finishes, so a running child
    (the HTTP node holding a checkpoint in round 2) counts as one more than the earlier executions
    of the same node in the same loop."""
    seen: dict[tuple[Any, Any], int] = {}
    out: list[int | None] = []
    for node in nodes:
        if node.get("loop_id") is None and node.get("loop_index") is None:
            out.append(None)
            continue
        key = (node.get("loop_id"), node.get("node_id"))
        index = node.get("loop_index")
        out.append(index if index is not None else seen.get(key, 0))
        seen[key] = (out[-1] or 0) + 1
    return out


# How a checkpoint ended, in words: "aborted by alice", "timed out → abort".
_DECIDED = {"approve": "approved", "edit": "edited", "revise": "revise requested", "abort": "aborted"}
# Which outcome speaks for a run with several checkpoints: one that stopped the happy path wins, then the latest.
_WEIGHT = {"abort": 3, "timeout": 2, "run_ended": 1}


def checkpoint_outcome(cp: Mapping[str, Any]) -> str | None:
    """One checkpoint's outcome, or None while it is open."""
    status, action, who = cp.get("status"), cp.get("action"), cp.get("decided_by")
    if status == "open" or not action:
        return None
    if status == "cancelled" or cp.get("reason") == "run_ended":
        return "cancelled: the run ended"
    if status == "expired" or cp.get("reason") == "timeout":
        if who == "dify":
            return "timed out in Dify"
        return f"timed out → {'default output' if cp.get('on_timeout') == 'default' else action}"
    form_action = (cp.get("output") or {}).get("action") if cp.get("kind") == "dify-form" else None
    if who == "dify":
        return "decided in Dify"
    words = f"{_DECIDED.get(action, action)} by {who}"
    plain = {"approve": ("approve",), "edit": ("approve",), "revise": ("revise",), "abort": ABORT_ACTION_IDS}
    return words + (f" ({form_action})" if form_action and form_action not in plain.get(action, ()) else "")


def run_outcome(checkpoints: Iterable[Mapping[str, Any]]) -> str | None:
    """What the run's checkpoints decided, shown beside its status ("succeeded · aborted by alice"), so
    that a run that went down an abort or timeout branch does not read as a plain success.

    The outcome of one checkpoint speaks for the run: an abort first, then a timeout, then a
    cancellation, else the latest decided one; with more than one checkpoint the count follows.
    "waiting for a person" while one is open; None when the run had no checkpoint."""
    cps = list(checkpoints)
    if not cps:
        return None
    if any(c.get("status") == "open" for c in cps):
        return "waiting for a person"
    decided = [c for c in cps if checkpoint_outcome(c)]
    if not decided:
        return None

    def weight(c: Mapping[str, Any]) -> tuple[int, float]:
        kind = "abort" if c.get("action") == "abort" and c.get("reason") == "decision" else c.get("reason")
        return _WEIGHT.get(str(kind), 0), float(c.get("resolved_at") or c.get("created_at") or 0)

    words = checkpoint_outcome(max(decided, key=weight))
    return words + (f" ({len(cps)} checkpoints)" if len(cps) > 1 else "") if words else None
