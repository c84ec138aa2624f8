"""`hitl dlq list|replay`: the operator's view of the dead-letter queues, and the way back.

It talks to RabbitMQ directly (HITL_RABBITMQ_URL, HITL_NAMESPACE), through the project's broker
package like every process; the logic is in letters.py (unit-tested on the in-memory broker).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from services.cli import render
from services.cli.client import CliError
from services.cli.helptext import BROKER_ENV, command
from services.cli.letters import DeadLetters, ReplayReport, list_letters, replay
from shared.broker import Broker, BrokerError
from shared.broker.signing import Verifier
from shared.settings import Settings, load_settings
from shared.topology import build_topology

T = TypeVar("T")


def operator_key(settings: Settings) -> tuple[bytes | None, str]:
    """The internal signing key and where it came from; (None, why) when it cannot be had."""
    if settings.internal_key:
        return settings.internal_key.encode(), "HITL_INTERNAL_KEY"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from shared.store import Database, keys
    from shared.store.errors import StoreUnavailable

    url = settings.database_url
    if url.startswith("sqlite"):
        path = make_url(url).database
        if not path or not Path(path).exists():  # never create a store file just to look for a key
            return None, f"no store at {url}"
    db = Database(url)
    try:
        with db.read() as conn:
            value = keys.get(conn, keys.INTERNAL)
    except (StoreUnavailable, SQLAlchemyError) as exc:
        return None, f"the store did not answer ({type(exc).__name__})"
    finally:
        db.dispose()
    return (value.encode(), "the store") if value else (None, "no key in the store yet")


def _safe_urls(settings: Settings) -> str:
    from shared.broker.nodes import safe_url

    return ", ".join(safe_url(u) for u in settings.rabbitmq_nodes)


def with_broker(settings: Settings, key: bytes | None, work: Callable[[Broker], Awaitable[T]]) -> T:
    from shared.logs import setup_logging

    setup_logging("WARNING", "console", "hitl-dlq")  # the broker's own lines to stderr, warnings only

    async def session() -> T:
        broker = Broker(settings.rabbitmq_url, name="hitl-dlq",
                        topology=build_topology(settings.names, settings.quorum_group_size), signing_key=key)
        try:
            await broker.start(wait_s=15)
            return await work(broker)
        finally:
            await broker.close(drain_s=1)

    try:
        return asyncio.run(session())
    except BrokerError as exc:
        raise CliError(f"RabbitMQ at {_safe_urls(settings)}: {exc}") from None


def _setup(args: argparse.Namespace) -> tuple[Settings, bytes | None, Verifier | None, str]:
    from shared.runner import verifier_for

    settings = load_settings()
    key, source = operator_key(settings)
    verifier = verifier_for(settings, key) if key else None
    checked = f"signatures checked with the internal key from {source}" if key else \
        f"signatures not checked: {source} (set HITL_INTERNAL_KEY or HITL_DATABASE_URL)"
    return settings, key, verifier, checked


def letters_text(found: list[DeadLetters], checked: str) -> str:
    out = []
    for q in found:
        head = f"{q.dlq}  {q.count} letter{'s' if q.count != 1 else ''}"
        out.append(render.paint(head, "red" if q.count else "green"))
        for letter in q.letters:
            out.append(f"  {letter.message_id or '(no message id)'}  {letter.message_type}  "
                       f"dead {render.when(letter.dead_at)}  routing key {letter.routing_key or '(none)'}  "
                       f"sender {letter.sender}")
            out.append(f"    reason  {letter.reason}")
            out.append(f"    body    {letter.preview}")
        if q.count > len(q.letters):
            out.append(f"  … {q.count - len(q.letters)} more (--limit)")
    out.append(f"({checked})")
    return "\n".join(out)


def cmd_list(args: argparse.Namespace) -> None:
    settings, key, verifier, checked = _setup(args)
    try:
        found = with_broker(settings, key, lambda broker: list_letters(
            broker, settings.names, queue=args.queue, limit=args.limit, verifier=verifier))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps({"queues": [q.as_json() for q in found]}, indent=2, ensure_ascii=False, default=str))
    else:
        print(letters_text(found, checked))


def report_text(report: ReplayReport, dry_run: bool) -> str:
    verb = "would replay" if dry_run else "replayed"
    out = [f"{verb} {letter.message_id}  {letter.message_type} → {letter.work_queue} "
           f"(routing key {letter.routing_key or '(none)'})"
           for letter in report.replayed]
    out += [render.error(f"skipped {letter.message_id}: {why}") for letter, why in report.skipped]
    out += [render.error(f"not confirmed {letter.message_id}: {why} (still in {letter.dlq})")
            for letter, why in report.failed]
    out += [render.error(f"no letter with message id {m}") for m in report.missing]
    done = len(report.replayed)
    summary = (f"dry run: {done} would be replayed" if dry_run else f"{done} replayed") + \
        f", {len(report.skipped)} skipped, {len(report.failed)} not confirmed"
    still = ", ".join(f"{n} in {dlq}" for dlq, n in report.left.items() if n)
    return "\n".join([*out, summary + (f"; left: {still}" if still else "; the DLQs named are empty")])


def cmd_replay(args: argparse.Namespace) -> None:
    if not args.id and not args.all:
        raise CliError("name the letters with --id MESSAGE_ID (repeat it), or replay every letter with --all")
    if args.id and args.all:
        raise CliError("--id and --all do not go together")
    settings, key, verifier, _checked = _setup(args)
    if args.resign and key is None:
        raise CliError("--resign signs with the internal key: set HITL_INTERNAL_KEY (or HITL_DATABASE_URL)")
    try:
        report = with_broker(settings, key, lambda broker: replay(
            broker, settings.names, queue=args.queue, ids=args.id or (), everything=args.all, dry_run=args.dry_run,
            resign=args.resign, verifier=verifier))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(report_text(report, args.dry_run))
    if report.failed or report.missing:
        sys.exit(1)


def add_dlq_commands(sub: argparse._SubParsersAction) -> None:
    d = command(sub, "dlq", summary="dead letters: list them, replay them (operators)",
                description="Every work queue has a dead-letter queue <namespace>.<queue>.dlq: a poison message, "
                            "an unsigned one, or one that ran out of retries lands there with the reason. `list` "
                            "shows them without taking them; `replay` puts them back once the cause is fixed.",
                examples=["hitl dlq list", "hitl dlq replay --queue decisions --all"], env=BROKER_ENV)
    dsub = d.add_subparsers(dest="dlq_command", required=True, metavar="list|replay")

    ls = command(dsub, "list", summary="what waits in the DLQs (nothing is taken)",
                 description="For every DLQ (or --queue): how many letters, and for each its message id, type, "
                             "when it died, the routing key it was first published with, the reason "
                             "(x-hitl-reason), who signed it, and a short body preview (secrets masked). "
                             "The letters stay where they are.",
                 examples=["hitl dlq list", "hitl dlq list --queue decisions --json"], env=BROKER_ENV)
    ls.add_argument("--queue", help="one work queue: decisions, checkpoints, runs (or its full name)")
    ls.add_argument("--limit", type=int, default=50, help="letters shown per DLQ (default 50; the count is exact)")
    ls.add_argument("--json", action="store_true", help="as JSON")
    ls.set_defaults(fn=cmd_list)

    rp = command(dsub, "replay", summary="put letters back to their work queue",
                 description="Moves letters back to their work queue with their original routing key and the "
                             "attempt count reset. Each copy is confirmed by RabbitMQ before its letter leaves the "
                             "DLQ: a crash mid-way duplicates at worst (the consumers are idempotent), never loses. "
                             "Signatures are kept as they are; --resign signs again, with the current internal "
                             "key, only letters whose internal signature no longer verifies (after a key rotation) "
                             "— never unsigned letters or bots' — so use it only for letters you know are ours.",
                 examples=["hitl dlq replay --queue decisions --id 6f1e2a4c-… --dry-run",
                           "hitl dlq replay --queue decisions --id 6f1e2a4c-… --id 0b9c7d2e-…",
                           "hitl dlq replay --all", "hitl dlq replay --queue checkpoints --all --resign"],
                 env=BROKER_ENV)
    rp.add_argument("--queue", help="one work queue: decisions, checkpoints, runs (or its full name)")
    rp.add_argument("--id", action="append", metavar="MESSAGE_ID", help="a letter's message id (repeat)")
    rp.add_argument("--all", action="store_true", help="every letter (of --queue, or of every DLQ)")
    rp.add_argument("--dry-run", action="store_true", help="say what would be replayed; change nothing")
    rp.add_argument("--resign", action="store_true", help="sign again letters whose internal signature is stale")
    rp.set_defaults(fn=cmd_replay)


