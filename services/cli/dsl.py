"""`hitl instrument` and `hitl lint`: add review to an exported Dify app, check an app's checkpoints.

Both work on files only (a Dify DSL export); nothing is sent anywhere.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from shared.dsl.document import DslError
from shared.dsl.recipe import TOKEN_VAR

if TYPE_CHECKING:
    from shared.dsl.instrument import Change

INSTRUMENT_HELP = """\
Reads a Dify DSL export (Studio → app menu → Export DSL) and writes one that imports cleanly, with
a human review after each --after node: the checkpoint HTTP node of the README recipe (token from a
secret environment variable), an IF/ELSE on the decision (approve/edit go on with the reviewed
output, abort ends or goes to --on-abort, anything else to a "review failed" End), and with
--revise a Loop that re-runs the node with the reviewer's feedback. Everything else in the file is
kept as it was. The result is checked (edges, handles, loop children, references) before it is
written.
"""
INSTRUMENT_EPILOG = """\
examples:
  hitl instrument writer.yml --after "Write draft" -o writer.review.yml --app writer
  hitl instrument writer.yml --after write_draft --revise --max-rounds 3 -o out.yml
  hitl instrument writer.yml --after write_draft --human-input -o out.yml
  hitl instrument writer.yml --step -o writer.step.yml --token-env WRITER_CP_TOKEN
  hitl instrument writer.yml --after write_draft -o out.yml --diagram > diagram.md

environment:
  HITL_CHECKPOINT_URL   ingest's base URL as Dify reaches it (default http://$HITL_INGEST_HOST:$HITL_INGEST_PORT,
                        i.e. http://127.0.0.1:8080); --url overrides
  HITL_APPS             with --app NAME: the app's checkpoint_token becomes the secret's value
  HITL_CONFIG_FILE      read like the services read it (HITL_APPS may live there)
  --token-env NAME      names another variable holding the token
  Without a token the secret HITL_CHECKPOINT_TOKEN is left empty: set it in Dify after the import.
"""
LINT_HELP = """\
Checks every checkpoint HTTP node of a Dify DSL export against the README recipe: read timeout vs
the body's read_timeout_s, retry on, fail branch present and connected, body fields, an IF/ELSE
case for approve / edit / abort (and something for revise), a held timeout_s under Dify's 1200 s run
limit, a bearer token; Human Input nodes need web-app delivery and a branch per action; the graph
itself is validated (Dify imports edges to missing nodes without a word). Prints each problem with
the node's title and the fix; exit status 1 when there is any.
"""
LINT_EPILOG = """\
example:
  hitl lint writer.review.yml

environment: none (the file is the only input)
"""


def _checkpoint_url(url: str | None) -> str:
    base = url or os.environ.get("HITL_CHECKPOINT_URL") or \
        f"http://{os.environ.get('HITL_INGEST_HOST', '127.0.0.1')}:{os.environ.get('HITL_INGEST_PORT', '8080')}"
    base = base.rstrip("/")
    return base if base.endswith("/v1/checkpoints") else base + "/v1/checkpoints"


def _token(args) -> tuple[str, str]:
    """(token, where it came from)."""
    if args.token_env:
        value = os.environ.get(args.token_env)
        if not value:
            raise DslError(f"--token-env {args.token_env}: that environment variable is not set")
        return value, f"${args.token_env}"
    if args.app:
        from shared.settings import load_settings

        try:
            app = load_settings().app(args.app)
        except SystemExit as exc:  # SettingsError: the settings themselves are invalid
            raise DslError(f"cannot read the settings for --app: {exc}") from None
        if app is None:
            raise DslError(f"--app {args.app}: no such app in HITL_APPS")
        return app.checkpoint_token, f"HITL_APPS[{args.app}].checkpoint_token"
    return "", ""


def _summary(changes: list[Change], source: str, target: str, token_from: str, uses_http: bool) -> str:
    lines = [f"instrumented {source} -> {target}"]
    for c in changes:
        moved = f"; {c.rewired} downstream reference(s) now read the reviewed output" if c.rewired else ""
        lines.append(f"  {c.title} ({c.node}): reviews {c.output}; added {', '.join(c.added)}{moved}")
        lines.extend(f"    note: {n}" for n in c.notes)
    if uses_http:
        lines.append(f"  secret environment variable {TOKEN_VAR}: " + (
            f"set from {token_from} (the file now holds it: keep it private; Dify encrypts it on import)"
            if token_from else "empty — set it in Dify (Environment variables) after the import"))
    return "\n".join(lines)


def cmd_instrument(args) -> None:
    # Imported here: every other `hitl` command starts without the DSL machinery.
    from shared.dsl import document
    from shared.dsl.diagram import mermaid
    from shared.dsl.graph import Graph
    from shared.dsl.instrument import Options, instrument
    from shared.dsl.recipe import RecipeSettings
    from shared.dsl.step import step

    try:
        if (args.step or args.step_nodes) and args.after:
            raise DslError("--step puts a checkpoint after every node: do not combine it with --after")
        if (args.step or args.step_nodes) and (args.revise or args.human_input):
            raise DslError("--step pauses with held HTTP checkpoints: --revise and --human-input do not apply")
        if not args.step and not args.step_nodes and not args.after:
            raise DslError("name the nodes to review with --after NODE (id or title), or use --step")
        if args.diagram and not args.output:
            raise DslError("--diagram prints the diagrams: write the YAML with -o OUT.yml")
        doc = document.load_file(args.app_file)
        before = mermaid(Graph.of(doc.graph)) if args.diagram else ""
        token, token_from = _token(args)
        settings = RecipeSettings(url=_checkpoint_url(args.url), read_timeout_s=args.read_timeout_s,
                                  timeout_s=args.timeout_s, on_timeout=args.on_timeout, assignees=args.assignee or [],
                                  message=args.message, max_rounds=args.max_rounds)
        opts = Options(settings, token=token, output_var=args.output_var, on_abort=args.on_abort,
                       revise=args.revise, human_input=args.human_input)
        if args.step or args.step_nodes:
            changes = step(doc, [n.strip() for n in args.step_nodes.split(",")] if args.step_nodes else None, opts)
        else:
            changes = instrument(doc, args.after, opts)
        text = doc.dump()
        document.load(text)  # what we write must load again
    except DslError as exc:
        print(f"hitl instrument: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(_summary(changes, args.app_file, args.output or "stdout", token_from, not args.human_input or args.step),
          file=sys.stderr)
    if args.diagram:
        print(f"### Before\n\n```mermaid\n{before}```\n\n### After\n\n```mermaid\n{mermaid(Graph.of(doc.graph))}```")


def cmd_lint(args) -> None:
    from shared.dsl import document
    from shared.dsl.lint import lint

    try:
        problems = lint(document.load_file(args.app_file))
    except DslError as exc:
        print(f"hitl lint: {exc}", file=sys.stderr)
        sys.exit(2)
    for problem in problems:
        print(problem.render())
    if problems:
        print(f"{len(problems)} problem(s) in {args.app_file}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.app_file}: checkpoints follow the recipe")


def add_dsl_commands(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("instrument", help="add human review to an exported Dify app (DSL YAML)",
                              description=INSTRUMENT_HELP, epilog=INSTRUMENT_EPILOG, formatter_class=fmt)
    p.add_argument("app_file", metavar="APP.yml", help="a Dify DSL export")
    p.add_argument("--after", action="append", metavar="NODE", help="review this node's output (id or title; repeat)")
    p.add_argument("-o", "--output", metavar="OUT.yml", help="write here (default: stdout)")
    p.add_argument("--url", help="ingest's base URL as Dify reaches it (default $HITL_CHECKPOINT_URL)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token-env", metavar="NAME", help="environment variable holding the checkpoint token")
    token.add_argument("--app", metavar="NAME", help="take the checkpoint token of this HITL_APPS app")
    p.add_argument("--output-var", metavar="VAR", help="the variable to review (default: by node type: LLM text, "
                   "template output, code its first output, knowledge retrieval result, HTTP body, …)")
    p.add_argument("--on-abort", metavar="NODE", help="on abort go to this node (default: a new End)")
    p.add_argument("--revise", action="store_true", help="a Loop re-runs the node with the reviewer's feedback")
    p.add_argument("--max-rounds", type=int, default=5, help="revise rounds (loop count; default 5)")
    p.add_argument("--human-input", action="store_true", help="use Dify's own Human Input node (webapp delivery, "
                   "approve / revise / abort, the output prefilled in a paragraph input)")
    p.add_argument("--step", action="store_true", help="a held checkpoint after every node of the main path, "
                   "node_output = all variables so far")
    p.add_argument("--step-nodes", metavar="A,B,C", help="--step after these nodes only")
    p.add_argument("--read-timeout-s", type=int, default=600, help="node read timeout = read_timeout_s (default 600)")
    p.add_argument("--timeout-s", type=int, default=900, help="checkpoint deadline (default 900; keep it under "
                   "Dify's 1200 s run limit); Human Input: rounded up to hours")
    p.add_argument("--on-timeout", choices=["abort", "approve"], default="abort",
                   help="at the deadline (default abort)")
    p.add_argument("--assignee", action="append", metavar="NAME", help="reviewer name or group:<name> (repeat)")
    p.add_argument("--message", help="what the reviewer is asked (default: Review <node title>)")
    p.add_argument("--diagram", action="store_true", help="print Mermaid diagrams of the graph before and after")
    p.set_defaults(fn=cmd_instrument)

    lp = subparsers.add_parser("lint", help="check an app's checkpoint nodes against the recipe",
                               description=LINT_HELP, epilog=LINT_EPILOG, formatter_class=fmt)
    lp.add_argument("app_file", metavar="APP.yml", help="a Dify DSL export")
    lp.set_defaults(fn=cmd_lint)
