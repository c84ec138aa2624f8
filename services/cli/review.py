"""`hitl` reviewer commands: checkpoints, show, decide, wait, decision.

A checkpoint is named by its id or a unique prefix of it (at least MIN_PREFIX characters), resolved
by ingest among the reviewer's own apps (`GET /v1/checkpoints?id_prefix=`): an ambiguous prefix
lists the candidates instead of guessing.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from services.cli import render
from services.cli.client import Api, CliError, fail_on_error, output, refuse
from services.cli.helptext import command
from shared.outputs import InvalidOutput, edited_output

MIN_PREFIX = 6
POLL_S = 1.0  # how often `wait` asks ingest (tests make it shorter)
DEFAULT_REVISE_WAIT_S = 10.0
T = TypeVar("T")


# ---------------------------------------------------------------------- finding checkpoints
def resolve(api: Api, ident: str) -> dict[str, Any]:
    """The checkpoint named by `ident` (an id, or a unique prefix of one) among the reviewer's apps."""
    if len(ident) < MIN_PREFIX:
        raise CliError(f"{ident!r}: give at least {MIN_PREFIX} characters of the checkpoint id")
    data = api.get("/v1/checkpoints", id_prefix=ident, limit=10)
    rows = data["checkpoints"]
    exact = [r for r in rows if r["id"] == ident]
    if exact:
        return exact[0]
    if not rows:
        refuse(f"no checkpoint {ident} among your apps")
    if data["total"] > 1:
        more = data["total"] - len(rows)
        refuse(f"{ident} matches {data['total']} checkpoints; type more of the id:\n"
               + "\n".join("  " + render.checkpoint_line(r) for r in rows) + (f"\n  … and {more} more" if more else ""))
    return rows[0]


def lookup(api: Api, checkpoint_id: str) -> dict[str, Any] | None:
    rows = api.get("/v1/checkpoints", id_prefix=checkpoint_id, limit=1)["checkpoints"]
    return rows[0] if rows and rows[0]["id"] == checkpoint_id else None


def find(api: Api, run_id: str, node_id: str | None, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The earliest round of `run_id` (and `node_id`) that `accept` takes."""
    rows = api.get("/v1/checkpoints", run_id=run_id, limit=500)["checkpoints"]
    found = [r for r in rows if (node_id is None or r["node_id"] == node_id) and accept(r)]
    return min(found, key=lambda r: (r["round"], r["created_at"])) if found else None


def poll(probe: Callable[[], T | None], timeout_s: float) -> T | None:
    """`probe()` until it answers something, at most `timeout_s` (0: once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def next_round(api: Api, cp: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
    return poll(lambda: find(api, cp["workflow_run_id"], cp["node_id"], lambda r: r["round"] > cp["round"]),
                timeout_s)


def wait_hint(cp: dict[str, Any]) -> str:
    return (f"hitl wait {render.short_id(cp['id'])}   "
            f"(or: hitl wait --run {cp['workflow_run_id']} --node {cp['node_id']} --round {cp['round'] + 1})")


# ---------------------------------------------------------------------- commands
def cmd_checkpoints(args: argparse.Namespace, api: Api) -> None:
    data = api.get("/v1/checkpoints", status=args.status, app=args.app, run_id=args.run, limit=args.limit)
    output(data, args.json, render.checkpoint_table)


def cmd_show(args: argparse.Namespace, api: Api) -> None:
    cp = resolve(api, args.id)
    output(api.get(f"/v1/checkpoints/{cp['id']}"), args.json, render.checkpoint_detail)


def new_output(args: argparse.Namespace, cp: dict[str, Any]) -> Any:
    """The edited output, by the console's rule (shared/outputs.py), or as a string with --text. A Dify
    form's edit is the text of its paragraph input: always a string."""
    text = Path(args.output_file).read_text() if args.output_file else args.output
    if args.text or cp.get("kind") == "dify-form":
        return text
    try:
        return edited_output(cp.get("node_output"), text)
    except InvalidOutput as exc:
        refuse(f"not sent: {exc}. Fix the JSON, or send it as a string on purpose with --text")


def decision_body(args: argparse.Namespace, cp: dict[str, Any]) -> dict[str, Any]:
    has_output = args.output_file is not None or args.output is not None
    if args.text and not has_output:
        raise CliError("--text sends --output / --output-file as a string: give one of them")
    if has_output and args.action != "edit":
        raise CliError(f"--output / --output-file are for edit, not {args.action}")
    body: dict[str, Any] = {"action": args.action}
    for field in ("feedback", "reason", "idempotency_key", "form_action"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.form_input:
        body["form_inputs"] = form_values(args.form_input)
    if has_output:
        body["output"] = new_output(args, cp)
    return body


def form_values(pairs: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs for a Dify form: a value that is a JSON object or list is sent as JSON (a file
    `{"transfer_method": "remote_url", "url": …}`, a file list); anything else as the text typed (a
    select option, a paragraph — "42" stays the text "42")."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--input: expected NAME=VALUE, got {pair!r}")
        parsed: Any = value
        if value.lstrip().startswith(("{", "[")):
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise CliError(f"--input {name}: the value looks like JSON but is not: {exc}") from None
        out[name] = parsed
    return out


def cmd_decide(args: argparse.Namespace, api: Api) -> None:
    cp = resolve(api, args.id)
    data = api.post(f"/v1/checkpoints/{cp['id']}/decision", decision_body(args, cp))
    revised = data.get("status") == "applied" and args.action == "revise"
    form = cp.get("kind") == "dify-form"  # a form's revise is one of its actions: the graph says what follows
    wait_s = args.wait if args.wait is not None else 0.0 if form else DEFAULT_REVISE_WAIT_S
    after = next_round(api, cp, wait_s) if revised else None
    if args.json:
        output({**data, "next_checkpoint": after} if revised else data, True, str)
        return
    print(render.decision_result(data))
    if revised and after is not None:
        print(f"round {after['round']} is open: {after['id']}   (hitl show {render.short_id(after['id'])})")
    elif revised and form:
        print(f"if the workflow brings this form back, round {cp['round'] + 1} can be waited for: {wait_hint(cp)}")
    elif revised:
        print(f"round {cp['round'] + 1} opens when the workflow calls the checkpoint again: {wait_hint(cp)}")


def settled(cp: dict[str, Any] | None) -> dict[str, Any] | None:
    return cp if cp is not None and cp["status"] != "open" else None


def cmd_wait(args: argparse.Namespace, api: Api) -> None:
    deadline = time.monotonic() + args.timeout

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    if args.id:
        if args.run or args.node or args.round is not None:
            raise CliError("name a checkpoint (ID) or a place (--run, --node, --round), not both")
        cp = resolve(api, args.id)
        if cp["status"] == "open":
            decided = poll(lambda: settled(lookup(api, cp["id"])), left())
            if decided is None:
                refuse(f"still open after {args.timeout:.0f}s: {render.checkpoint_line(cp)}")
            cp = decided
        if cp.get("action") != "revise":  # decided for good: nothing follows it
            output(cp, args.json, lambda c: "decided: " + render.checkpoint_line(c))
            return
        if not args.json:
            print("revised: " + render.checkpoint_line(cp))
        found = next_round(api, cp, left())
        what = f"round {cp['round'] + 1} of {cp['workflow_run_id']} / {cp['node_id']}"
    else:
        if not args.run:
            raise CliError("name a checkpoint ID, or --run RUN_ID (with --node and --round to be precise)")
        wanted = args.round

        def accept(r: dict[str, Any]) -> bool:
            return r["round"] == wanted if wanted is not None else r["status"] == "open"

        found = poll(lambda: find(api, args.run, args.node, accept), left())
        what = (f"round {wanted}" if wanted is not None else "an open checkpoint") + f" of {args.run}" + \
            (f" / {args.node}" if args.node else "")
    if found is None:
        refuse(f"{what} has not opened after {args.timeout:.0f}s")
    output(found, args.json, lambda c: f"{render.checkpoint_line(c)}\nhitl show {render.short_id(c['id'])}")


def decision_state(api: Api, decision_id: str) -> dict[str, Any]:
    """GET /v1/decisions/{id}; a 404 `unknown` (not handled yet, or not yours) is an answer too."""
    status, data = api.call("GET", f"/v1/decisions/{decision_id}")
    if not (status == 404 and isinstance(data, dict) and data.get("status") == "unknown"):
        fail_on_error(status, data, api.as_json)
    return data


def cmd_decision(args: argparse.Namespace, api: Api) -> None:
    found = poll(lambda: d if (d := decision_state(api, args.id)).get("status") not in ("unknown", "parked") else None,
                 args.wait)
    data = found or decision_state(api, args.id)
    if data.get("status") == "unknown":
        if args.json:
            output(data, True, str)
            raise SystemExit(1)
        refuse(f"decision {args.id}: not handled yet (still queued), or not one of yours")
    output(data, args.json, render.decision_status)


# ---------------------------------------------------------------------- the parsers
def add_review_commands(sub: argparse._SubParsersAction, bind: Callable[..., Any]) -> None:
    c = command(sub, "checkpoints", summary="list checkpoints (kind, assignees, who decided)",
                description="The checkpoints of your apps, soonest deadline first for open ones, newest first "
                            "otherwise: short id, status (or the action taken), kind, app, node, round, time "
                            "left, assignees, who decided, run.",
                examples=["hitl checkpoints --status open", "hitl checkpoints --run 5f0c2a8e-… --json"])
    c.add_argument("--status", choices=["open", "resolved", "expired", "cancelled"],
                   help="only checkpoints in this state")
    c.add_argument("--app", help="only this app")
    c.add_argument("--run", help="only this workflow run id")
    c.add_argument("--limit", type=int, help="at most this many (1..500, default 50)")
    c.add_argument("--json", action="store_true", help="the API's JSON")
    c.set_defaults(fn=bind(cmd_checkpoints))

    s = command(sub, "show", summary="one checkpoint: output, rounds, history",
                description="One checkpoint in full: the message, the node output pretty-printed, the output sent "
                            "to Dify, every round with its feedback, and the history (who, which channel, what). "
                            f"ID is the checkpoint id or a unique prefix of it (at least {MIN_PREFIX} characters).",
                examples=["hitl show 3f2a9c", "hitl show 3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10 --json"])
    s.add_argument("id", metavar="ID", help=f"checkpoint id or a unique prefix (≥ {MIN_PREFIX} characters)")
    s.add_argument("--json", action="store_true", help="the API's JSON")
    s.set_defaults(fn=bind(cmd_show))

    d = command(sub, "decide", summary="approve | revise | edit | abort a checkpoint",
                description="Decide a checkpoint, audited like any other channel (the first valid decision wins; a "
                            "later one is refused 409 with the winner). edit: when the node's output is JSON the "
                            "new output must be valid JSON (refused before sending otherwise), when it is text it is "
                            "sent as typed; --text sends it as a string on purpose. revise: waits up to --wait "
                            "seconds for the next round and prints its id, else how to wait for it. "
                            "Dify forms: --action picks the form's action, --input sets its inputs.",
                examples=['hitl decide 3f2a9c approve',
                          'hitl decide 3f2a9c revise --feedback "mention the new API"',
                          "hitl decide 3f2a9c edit --output-file new.json",
                          'hitl decide 3f2a9c edit --output "[draft] keep the brackets" --text',
                          'hitl decide 3f2a9c abort --reason "off topic"',
                          "hitl decide 7d41e0 approve --action publish_now --input edited=\"Final text\""])
    d.add_argument("id", metavar="ID", help=f"checkpoint id or a unique prefix (≥ {MIN_PREFIX} characters)")
    d.add_argument("action", choices=["approve", "revise", "edit", "abort"])
    d.add_argument("--feedback", help="what to change (revise)")
    d.add_argument("--output-file", help="file holding the new output (edit)")
    d.add_argument("--output", help="the new output inline (edit)")
    d.add_argument("--text", action="store_true", help="send the new output as a string, even where JSON is expected")
    d.add_argument("--reason", help="why (abort)")
    d.add_argument("--idempotency-key", help="send the same key again to repeat safely")
    d.add_argument("--action", dest="form_action", help="Dify form: the user action id (e.g. publish_now)")
    d.add_argument("--input", dest="form_input", action="append", metavar="NAME=VALUE",
                   help="Dify form: an input value; JSON for files, e.g. "
                        "doc='{\"transfer_method\": \"remote_url\", \"url\": \"https://…\"}'")
    d.add_argument("--wait", type=float, metavar="SECONDS",
                   help=f"revise: how long to wait for the next round (default {DEFAULT_REVISE_WAIT_S:.0f}, "
                        "Dify forms 0; 0: not)")
    d.add_argument("--json", action="store_true", help="the API's JSON (with next_checkpoint after a revise)")
    d.set_defaults(fn=bind(cmd_decide))

    w = command(sub, "wait", summary="wait for a decision, or for a checkpoint to open",
                description="With ID: waits until that checkpoint is decided, and when it was revised, until the "
                            "next round opens; prints it. With --run (and --node, --round): waits until that "
                            "checkpoint exists (without --round: until one is open). Exit status 1 after --timeout.",
                examples=["hitl wait 3f2a9c", "hitl wait --run 5f0c2a8e-… --node draft --round 2",
                          "hitl wait --run 5f0c2a8e-… --timeout 60 --json"])
    w.add_argument("id", metavar="ID", nargs="?", help="a checkpoint id or unique prefix")
    w.add_argument("--run", help="workflow run id")
    w.add_argument("--node", help="node id (the reviewed node)")
    w.add_argument("--round", type=int, help="round number (1 is the first)")
    w.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="give up after (default 600)")
    w.add_argument("--json", action="store_true", help="the checkpoint as JSON")
    w.set_defaults(fn=bind(cmd_wait))

    dc = command(sub, "decision", summary="what became of a decision (after a 202)",
                 description="A decision answered 202 (queued, or parked until its checkpoint opens) is a promise: "
                             "this says whether it was applied, refused (with the code), is still parked, or "
                             "expired. DECISION_ID is the decision_id of the 202 answer.",
                 examples=["hitl decision 0b9c7d2e-5a61-4f0e-8f3c-2d1e6a7b8c90",
                           "hitl decision 0b9c7d2e-5a61-4f0e-8f3c-2d1e6a7b8c90 --wait 30"])
    dc.add_argument("id", metavar="DECISION_ID")
    dc.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long for it to be applied, refused or expired (default 0)")
    dc.add_argument("--json", action="store_true", help="the API's JSON")
    dc.set_defaults(fn=bind(cmd_decision))
