"""`hitl` run commands: runs, run-show, track, run, rerun, stop."""
from __future__ import annotations

import json
from typing import Any

from services.cli import render


def _kv(pairs: list[str] | None) -> dict[str, Any]:
    """key=value pairs; a value that parses as JSON is taken as JSON (numbers, objects), else text."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def cmd_runs(args, api, fail) -> None:
    query = "&".join(f"{k}={v}" for k, v in (("status", args.status), ("app", args.app), ("limit", args.limit)) if v)
    status, data = api("GET", "/v1/runs" + (f"?{query}" if query else ""))
    fail(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else render.run_table(data))


def cmd_run_show(args, api, fail) -> None:
    status, data = api("GET", f"/v1/runs/{args.id}")
    fail(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else render.run_detail(data))


def cmd_track(args, api, fail) -> None:
    status, data = api("POST", "/v1/runs/track", {"run_id": args.id, "app": args.app})
    fail(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else f"tracking run {args.id} of app {args.app}")


def cmd_run(args, api, fail) -> None:
    body = {"app": args.app, "inputs": _kv(args.input)}
    if args.user:
        body["user"] = args.user
    status, data = api("POST", "/v1/runs", body)
    fail(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else
          f"started run {data['workflow_run_id']} (task {data['task_id']}) of app {data['app']}")


def cmd_rerun(args, api, fail) -> None:
    body: dict[str, Any] = {"set": _kv(args.set)}
    if args.app:
        body["app"] = args.app
    status, data = api("POST", f"/v1/runs/{args.id}/rerun", body)
    fail(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else
          f"re-run {data['workflow_run_id']} of {args.id}" + (f" with {data['overrides']}" if data.get("overrides") else ""))


def cmd_stop(args, api, fail) -> None:
    status, data = api("POST", f"/v1/runs/{args.id}/stop")
    fail(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else f"stop requested for run {args.id}")


def add_run_commands(sub, wrap) -> None:
    p = sub.add_parser("runs", help="tracked runs, newest first")
    p.add_argument("--status")
    p.add_argument("--app")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=wrap(cmd_runs))

    p = sub.add_parser("run-show", help="one run: status and its node timeline")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=wrap(cmd_run_show))

    p = sub.add_parser("track", help="start tracking a run started elsewhere")
    p.add_argument("id", help="the workflow run id")
    p.add_argument("--app", required=True, help="the app name in HITL_APPS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=wrap(cmd_track))

    p = sub.add_parser("run", help="start a run of an app (streamed, recorded live)")
    p.add_argument("app")
    p.add_argument("--input", action="append", metavar="KEY=VALUE")
    p.add_argument("--user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=wrap(cmd_run))

    p = sub.add_parser("rerun", help="a new run with the original inputs plus overrides")
    p.add_argument("id")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--app", help="needed only for a run that is not tracked")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=wrap(cmd_rerun))

    p = sub.add_parser("stop", help="stop a run started through dify-hitl")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=wrap(cmd_stop))
