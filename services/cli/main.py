"""`hitl` — the command line for reviewers and operators.

Reviewer commands talk to ingest's HTTP API (HITL_API_URL, HITL_TOKEN = a reviewer token), so a
CLI decision is audited exactly like any other; `hitl db` talks to the store directly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from services.cli import render
from services.cli.dsl import add_dsl_commands
from services.cli.audit import add_audit_commands
from services.cli.runs import add_run_commands


class CliError(Exception):
    pass


def api(method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    base = os.environ.get("HITL_API_URL", "http://127.0.0.1:8080").rstrip("/")
    token = os.environ.get("HITL_TOKEN")
    if not token:
        raise CliError("set HITL_TOKEN to your reviewer token (see README, Configuration)")
    headers = {"Authorization": f"Bearer {token}", "X-HITL-Channel": "cli"}
    try:
        r = httpx.request(method, base + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {base}: {exc}") from None
    try:
        data = r.json()
    except ValueError:
        data = {"error": {"code": "http_error", "message": r.text[:300]}}
    return r.status_code, data


def _fail_on_error(status: int, data: Any, as_json: bool) -> None:
    if status < 400:
        return
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        print(render.error(f"{status} {err.get('code', 'error')}: {err.get('message', data)}"), file=sys.stderr)
        if err.get("winning_decision"):
            w = err["winning_decision"]
            print(f"  decided first: {w.get('action')} by {w.get('decided_by')} ({w.get('channel', '?')})", file=sys.stderr)
    sys.exit(1)


def cmd_checkpoints(args) -> None:
    query = {k: v for k, v in (("status", args.status), ("app", args.app), ("run_id", args.run),
                               ("limit", args.limit)) if v}
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, data = api("GET", "/v1/checkpoints" + (f"?{qs}" if qs else ""))
    _fail_on_error(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else render.checkpoint_table(data))


def cmd_show(args) -> None:
    status, data = api("GET", f"/v1/checkpoints/{args.id}")
    _fail_on_error(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else render.checkpoint_detail(data))


def cmd_decide(args) -> None:
    body: dict[str, Any] = {"action": args.action}
    if args.feedback is not None:
        body["feedback"] = args.feedback
    if args.reason is not None:
        body["reason"] = args.reason
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    if args.form_action:
        body["form_action"] = args.form_action
    if args.form_input:
        from services.cli.runs import _kv

        body["form_inputs"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in _kv(args.form_input).items()}
    if args.output_file or args.output is not None:
        text = Path(args.output_file).read_text() if args.output_file else args.output
        try:
            body["output"] = json.loads(text)
        except ValueError:
            body["output"] = text  # plain text output (e.g. an edited paragraph)
    status, data = api("POST", f"/v1/checkpoints/{args.id}/decision", body)
    _fail_on_error(status, data, args.json)
    print(json.dumps(data, indent=2) if args.json else render.decision_result(data))


def cmd_db(args) -> None:
    from shared.settings import load_settings
    from shared.store import Database

    db = Database(load_settings().database_url)
    if args.db_command == "upgrade":
        print(f"database at revision {db.migrate()} (head {db.head_revision()})")
    else:
        print(f"current {db.current_revision() or 'none'}, head {db.head_revision()}")


def cmd_hash_password(_args) -> None:
    import getpass

    from shared.passwords import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise CliError("use at least 8 characters")
    print(hash_password(password))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hitl", description="Human-in-the-loop checkpoints for Dify")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("checkpoints", help="list checkpoints")
    c.add_argument("--status", choices=["open", "resolved", "expired", "cancelled"])
    c.add_argument("--app")
    c.add_argument("--run", help="workflow run id")
    c.add_argument("--limit", type=int)
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_checkpoints)

    s = sub.add_parser("show", help="one checkpoint: output, rounds, history")
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_show)

    d = sub.add_parser("decide", help="approve | revise --feedback T | edit --output-file F | abort")
    d.add_argument("id")
    d.add_argument("action", choices=["approve", "revise", "edit", "abort"])
    d.add_argument("--feedback", help="what to change (revise)")
    d.add_argument("--output-file", help="file holding the new output, JSON or text (edit)")
    d.add_argument("--output", help="the new output inline, JSON or text (edit)")
    d.add_argument("--reason", help="why (abort)")
    d.add_argument("--idempotency-key", help="send the same key again to repeat safely")
    d.add_argument("--action", dest="form_action", help="Dify form: the user action id (e.g. publish_now)")
    d.add_argument("--input", dest="form_input", action="append", metavar="NAME=VALUE", help="Dify form: an input value")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=cmd_decide)

    add_run_commands(sub, lambda fn: lambda args: fn(args, api, _fail_on_error))
    add_dsl_commands(sub)
    add_audit_commands(sub)

    hp = sub.add_parser("hash-password", help="a password hash for a reviewer's console sign-in")
    hp.set_defaults(fn=cmd_hash_password)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("db_command", choices=["upgrade", "current"])
    db.set_defaults(fn=cmd_db)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except CliError as exc:
        print(render.error(str(exc)), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
