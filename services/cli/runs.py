"""`hitl` run commands: runs, run-show, track, run, rerun, stop."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from services.cli import render
from services.cli.client import Api, CliError, output
from services.cli.helptext import command
from shared.views import TRACKED_RUN_STATUSES


def key_values(pairs: list[str] | None) -> dict[str, Any]:
    """key=value pairs; a value that parses as JSON is taken as JSON (numbers, objects), else text."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def cmd_runs(args: argparse.Namespace, api: Api) -> None:
    output(api.get("/v1/runs", status=args.status, app=args.app, limit=args.limit), args.json, render.run_table)


def cmd_run_show(args: argparse.Namespace, api: Api) -> None:
    output(api.get(f"/v1/runs/{args.id}"), args.json, render.run_detail)


def cmd_track(args: argparse.Namespace, api: Api) -> None:
    data = api.post("/v1/runs/track", {"run_id": args.id, "app": args.app})
    output(data, args.json, lambda _d: f"tracking run {args.id} of app {args.app}")


def cmd_run(args: argparse.Namespace, api: Api) -> None:
    body: dict[str, Any] = {"app": args.app, "inputs": key_values(args.input)}
    if args.user:
        body["user"] = args.user
    data = api.post("/v1/runs", body)
    output(data, args.json, lambda d: f"started run {d['workflow_run_id']} (task {d['task_id']}) of app {d['app']}")


def cmd_rerun(args: argparse.Namespace, api: Api) -> None:
    body: dict[str, Any] = {"set": key_values(args.set)}
    if args.app:
        body["app"] = args.app
    data = api.post(f"/v1/runs/{args.id}/rerun", body)
    output(data, args.json, lambda d: f"re-run {d['workflow_run_id']} of {args.id}"
           + (f" with {d['overrides']}" if d.get("overrides") else ""))


def cmd_stop(args: argparse.Namespace, api: Api) -> None:
    output(api.post(f"/v1/runs/{args.id}/stop"), args.json, lambda _d: f"stop requested for run {args.id}")


def add_run_commands(sub: argparse._SubParsersAction, bind: Callable[..., Any]) -> None:
    p = command(sub, "runs", summary="tracked runs, newest first",
                description="The runs dify-hitl tracks in your apps (from checkpoints, `hitl track`, runs started "
                            "through it, and Dify's logs), newest first, with their status in colour.",
                examples=["hitl runs --status paused", "hitl runs --app writer --limit 20 --json"])
    p.add_argument("--status", choices=TRACKED_RUN_STATUSES, help="only runs with this status")
    p.add_argument("--app", help="only this app")
    p.add_argument("--limit", type=int, help="at most this many (1..500, default 50)")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(fn=bind(cmd_runs))

    p = command(sub, "run-show", summary="one run: status and its node timeline",
                description="One run: its status, and its node timeline like the console's — each node's title and "
                            "id, its loop iteration, its state (green succeeded, red failed/exception, yellow "
                            "running, blue waiting for a person, grey stopped / not reached), time and retries — "
                            "then its checkpoints.",
                examples=["hitl run-show 5f0c2a8e-1b7d-4c3a-9e2f-6a8b0c1d2e3f"])
    p.add_argument("id", metavar="RUN_ID")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(fn=bind(cmd_run_show))

    p = command(sub, "track", summary="start tracking a run started elsewhere",
                description="Start watching a run that was started outside dify-hitl (the poller polls it until it "
                            "ends). The app needs dify_base_url and dify_api_key in HITL_APPS.",
                examples=["hitl track 5f0c2a8e-1b7d-4c3a-9e2f-6a8b0c1d2e3f --app writer"])
    p.add_argument("id", metavar="RUN_ID", help="the workflow run id")
    p.add_argument("--app", required=True, help="the app name in HITL_APPS")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(fn=bind(cmd_track))

    p = command(sub, "run", summary="start a run of an app (streamed, recorded live)",
                description="Start a run of an app through dify-hitl: it is streamed, so every node is recorded "
                            "live and a Dify form (Human Input) becomes a checkpoint.",
                examples=['hitl run writer --input topic="release notes"',
                          'hitl run writer --input topic=pricing --input words=300 --user me'])
    p.add_argument("app", metavar="APP", help="the app name in HITL_APPS")
    p.add_argument("--input", action="append", metavar="KEY=VALUE", help="an input (JSON values are taken as JSON)")
    p.add_argument("--user", help="Dify's user for the run (default hitl:<you>)")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(fn=bind(cmd_run))

    p = command(sub, "rerun", summary="a new run with the original inputs plus overrides",
                description="Start a new run with the inputs of RUN_ID, some of them changed; the new run is "
                            "linked to the original.",
                examples=['hitl rerun 5f0c2a8e-1b7d-4c3a-9e2f-6a8b0c1d2e3f --set topic="pricing"'])
    p.add_argument("id", metavar="RUN_ID")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="an input to change")
    p.add_argument("--app", help="needed only for a run that is not tracked")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(fn=bind(cmd_rerun))

    p = command(sub, "stop", summary="stop a run started through dify-hitl",
                description="Ask Dify to stop a run. Dify stops runs by task id, so only runs started through "
                            "dify-hitl can be stopped; a run paused at a Human Input form is refused (decide abort "
                            "on its form instead).",
                examples=["hitl stop 5f0c2a8e-1b7d-4c3a-9e2f-6a8b0c1d2e3f"])
    p.add_argument("id", metavar="RUN_ID")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    p.set_defaults(fn=bind(cmd_stop))
