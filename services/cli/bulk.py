"""`hitl bulk-decide`: one decision for many open checkpoints, through `POST /v1/checkpoints/bulk-decision`.

The checkpoints are named by `--id` (ids or unique prefixes, resolved among the reviewer's apps as
`hitl decide` resolves them) or selected by `--app` / `--node` / `--run`: that filter is sent as it
is, and ingest picks the open checkpoints of the reviewer's own apps that match — the CLI lists
nothing itself, so it can neither widen nor narrow what the reviewer may decide. Each selected
checkpoint is decided on its own (its own history row, its own idempotency key) and answered per item.

`--dry-run` sends `preview: true`: what would be decided and what would be refused, with the
reason, and nothing is decided. An edit is one checkpoint's: its new output is checked against that
checkpoint's node output (shared/outputs.py), and the bulk API takes no output — `hitl decide ID edit`.

Exit status: 0 when every checkpoint was decided (or would be, with --dry-run), 1 when any was refused
or nothing matched, 2 for a request that is not sent (the arguments), like the other commands.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from services.cli import render
from services.cli.client import Api, CliError, output, refuse
from services.cli.helptext import command
from services.cli.review import resolve
from shared.limits import BULK_DECISION_LIMIT

ACTIONS = ("approve", "revise", "abort")
BULK_LIMIT = BULK_DECISION_LIMIT
FAILED = ("refused", "not_queued")  # per-item statuses that are not a decision taken (or queued)


def check(args: argparse.Namespace) -> None:
    """Everything that can be said about the arguments, before anything is sent."""
    if args.output is not None or args.output_file is not None or args.text:
        raise CliError("bulk-decide sends no output: an edit is one checkpoint's, its new output checked against "
                       "that checkpoint's own node output — use hitl decide ID edit --output …")
    if args.action == "edit":
        raise CliError("bulk-decide takes approve, revise or abort: an edit is one checkpoint's "
                       "(hitl decide ID edit --output …)")
    if args.action == "revise" and not (args.feedback or "").strip():
        raise CliError("revise needs --feedback: it goes to every next round")
    picked = [name for name, value in (("--app", args.app), ("--node", args.node), ("--run", args.run)) if value]
    if args.ids and picked:
        raise CliError(f"name the checkpoints by --id or select them by {' / '.join(picked)}, not both")
    if not args.ids and not picked:
        raise CliError("name the checkpoints: --id ID (again for each), or select the open ones by --app, --node, "
                       "--run")
    if args.ids and len(args.ids) > BULK_LIMIT:
        raise CliError(f"at most {BULK_LIMIT} checkpoints at once")


def selection(args: argparse.Namespace, api: Api) -> dict[str, Any]:
    """`{"ids": […]}` (each resolved among the reviewer's apps: an unknown or ambiguous one stops it all,
    nothing decided) or `{"filter": {…}}` for ingest to select within the reviewer's apps."""
    if args.ids:
        return {"ids": list(dict.fromkeys(resolve(api, ident)["id"] for ident in args.ids))}
    return {"filter": {k: v for k, v in (("app", args.app), ("node_id", args.node), ("run_id", args.run)) if v}}


def bulk_body(args: argparse.Namespace, selected: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {**selected, "action": args.action}
    if args.feedback is not None:
        body["feedback"] = args.feedback
    if args.reason is not None:
        body["reason"] = args.reason
    if args.dry_run:
        body["preview"] = True
    return body


def described(args: argparse.Namespace) -> str:
    parts = [f"{label} {value}" for label, value in (("app", args.app), ("node", args.node), ("run", args.run))
             if value]
    return "no open checkpoint of your apps matches " + ", ".join(parts)


def cmd_bulk_decide(args: argparse.Namespace, api: Api) -> None:
    check(args)
    data = api.post("/v1/checkpoints/bulk-decision", bulk_body(args, selection(args, api)))
    if args.dry_run:
        items, gone = data.get("checkpoints") or [], data.get("not_open_or_not_found") or []
        seen = bool(items or gone)
        failed = bool(gone) or any(not item.get("may_decide", True) for item in items)
    else:
        results = data.get("results") or []
        seen, failed = bool(results), any(r.get("status") in FAILED for r in results)
    if not seen and not args.json:
        refuse(f"nothing to decide: {described(args)}")
    output(data, args.json, render.bulk_preview if args.dry_run else render.bulk_results)
    if failed or not seen:
        raise SystemExit(1)


def add_bulk_commands(sub: argparse._SubParsersAction, bind: Callable[..., Any]) -> None:
    b = command(sub, "bulk-decide", summary="one decision for many open checkpoints, by ids or by app / node",
                description="The same approve, revise or abort for several open checkpoints: named by --id (ids or "
                            "unique prefixes, as for decide), or selected by --app / --node / --run, which ingest "
                            "matches against the open checkpoints of your own apps only. Each is decided on its own "
                            "(its own history row) and answered per item: applied, vote counted, queued, or refused "
                            "with the reason; at most 500 at once.\n\n"
                            "--dry-run decides nothing: it lists what would be decided and what would be refused, "
                            "and why (not an assignee; not open any more). Exit status 0 when every one was (or "
                            "would be) decided, 1 when any was refused or nothing matched, 2 for arguments refused "
                            "before sending. An edit is one checkpoint's: hitl decide ID edit.",
                examples=["hitl bulk-decide approve --app writer --node draft --dry-run",
                          "hitl bulk-decide approve --app writer --node draft",
                          'hitl bulk-decide revise --id 3f2a9c11 --id 77aa0e01 --feedback "cite the source"',
                          'hitl bulk-decide abort --run 5f0c2a8e-… --reason "duplicate run" --json'])
    b.add_argument("action", metavar="ACTION", choices=[*ACTIONS, "edit"], help="approve | revise | abort")
    b.add_argument("--id", dest="ids", action="append", metavar="ID",
                   help="a checkpoint id or unique prefix (again for each); not with --app / --node / --run")
    b.add_argument("--app", help="select the open checkpoints of this app (one of yours)")
    b.add_argument("--node", help="select the open checkpoints of this node id")
    b.add_argument("--run", help="select the open checkpoints of this workflow run id")
    b.add_argument("--feedback", help="what to change (revise: required, sent to every next round)")
    b.add_argument("--reason", help="why (abort)")
    b.add_argument("--dry-run", action="store_true",
                   help="decide nothing: list what would be decided and what would be refused, and why")
    b.add_argument("--json", action="store_true", help="the API's JSON")
    # Not taken, so that they are refused with the reason (an edit is one checkpoint's), not as unknown.
    b.add_argument("--output", help=argparse.SUPPRESS)
    b.add_argument("--output-file", help=argparse.SUPPRESS)
    b.add_argument("--text", action="store_true", help=argparse.SUPPRESS)
    b.set_defaults(fn=bind(cmd_bulk_decide))
