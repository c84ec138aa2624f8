"""The demo apps `make run` starts, one per kind of wait (README "Which wait to use"):

- `demo` — the held HTTP checkpoint in a revise loop (demo/review-loop.graph.json): short reviews,
  a worker of Dify's holds the HTTP node the whole time, and Dify ends every run at 1200 s.
- `longreview` — Dify's own Human Input node (demo/human-input.graph.json): long reviews, the run
  is paused in Dify's database and nothing is held; Dify caps a form at 7 days.
- `handoff` + `handoff-continue` — a detached checkpoint (demo/detached.graph.json): the checkpoint
  answers `pending` at once and the run ends; the decision starts `handoff-continue`
  (demo/continue.graph.json) with the decision as its inputs. No time limit but our own.

The same definitions serve `make run` (demo/run.py) and the end-to-end test of the demo.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from demo.stack import APP_TOKEN, DIFY_APP_KEY, ROOT, ProcessStack

DEMO = ROOT / "demo"


@dataclass(frozen=True)
class DemoApp:
    name: str  # in HITL_APPS
    sim_name: str  # in the simulator
    dify_api_key: str
    checkpoint_token: str
    graph: Path
    continuation_app: str | None = None
    wait: str = ""


APPS = (
    DemoApp("demo", "demo-review", DIFY_APP_KEY, APP_TOKEN, DEMO / "review-loop.graph.json",
            wait="held HTTP checkpoint (short reviews)"),
    DemoApp("longreview", "long-review", "app-longreview-key", "cp-longreview-token-change-me",
            DEMO / "human-input.graph.json", wait="Dify Human Input form (long reviews, nothing held)"),
    DemoApp("handoff", "handoff", "app-handoff-key", "cp-handoff-token-change-me", DEMO / "detached.graph.json",
            continuation_app="handoff-continue",
            wait="detached checkpoint (any length; continues in handoff-continue)"),
    DemoApp("handoff-continue", "handoff-continue", "app-handoff-continue-key", "cp-handoff-continue-token-change-me",
            DEMO / "continue.graph.json", wait="the continuation of handoff"),
)
REVIEWERS = [{"name": "alice", "token": "rv-alice-token", "apps": [a.name for a in APPS]},
             {"name": "bob", "token": "rv-bob-token", "apps": [a.name for a in APPS]}]


def apps_env(sim_url: str) -> dict[str, str]:
    """HITL_APPS and HITL_REVIEWERS for a stack that runs every demo app against the simulator."""
    apps = [{"name": a.name, "checkpoint_token": a.checkpoint_token, "dify_base_url": sim_url,
             "dify_api_key": a.dify_api_key, **({"continuation_app": a.continuation_app} if a.continuation_app else {})}
            for a in APPS]
    return {"HITL_APPS": json.dumps(apps), "HITL_REVIEWERS": json.dumps(REVIEWERS)}


def register_apps(stack: ProcessStack) -> None:
    """Publish every demo app in the simulator; the checkpoint nodes call this stack's ingest."""
    for app in APPS:
        text = app.graph.read_text().replace("__HITL_URL__", stack.ingest_url)
        graph = json.loads(text.replace("__HITL_TOKEN__", app.checkpoint_token))
        httpx.post(f"{stack.sim_url}/_sim/apps", json={"name": app.sim_name, "graph": graph,
                                                       "api_key": app.dify_api_key}, timeout=10).raise_for_status()


def gateway_curl(stack: ProcessStack, app: DemoApp, topic: str) -> str:
    """A streaming run through the gateway (ingest): Dify's own answer, with every node event recorded."""
    head = f"curl -sN -X POST {stack.ingest_url}/v1/workflows/run -H 'Authorization: Bearer {app.dify_api_key}'"
    return (f"{head} \\\n"
            f"        -H 'Content-Type: application/json' \\\n"
            f"        -d '{{\"inputs\": {{\"topic\": \"{topic}\"}}, "
            f"\"response_mode\": \"streaming\", \"user\": \"me\"}}'")
