"""`hitl` — the command line for reviewers and operators.

Reviewer commands talk to ingest's HTTP API (HITL_API_URL, HITL_TOKEN = a reviewer token), so a
CLI decision is audited exactly like any other; `hitl db` talks to the store, `hitl dlq` to
RabbitMQ, `hitl serve` runs a process, `hitl instrument` / `lint` work on files.
"""
from __future__ import annotations

import argparse
import getpass
import importlib
import sys
from collections.abc import Callable

from services.cli import render
from services.cli.audit import add_audit_commands
from services.cli.bulk import add_bulk_commands
from services.cli.client import Api, CliError
from services.cli.dlq import add_dlq_commands
from services.cli.dsl import add_dsl_commands
from services.cli.helptext import command
from services.cli.review import add_review_commands
from services.cli.runs import add_run_commands

PROCESSES = ("ingest", "decider", "poller", "console", "notifier")
SETTINGS_ENV = (("HITL_CONFIG_FILE", "a YAML/JSON file with the settings (the environment wins)"),
                ("HITL_RABBITMQ_URL", "RabbitMQ"), ("HITL_DATABASE_URL", "the store (SQLite file or PostgreSQL)"),
                ("HITL_*", "every other setting of README, Configuration"))


def cmd_db(args: argparse.Namespace) -> None:
    from shared.settings import load_settings
    from shared.store import Database

    db = Database(load_settings().database_url)
    if args.db_command == "upgrade":
        print(f"database at revision {db.migrate()} (head {db.head_revision()})")
    else:
        print(f"current {db.current_revision() or 'none'}, head {db.head_revision()}")


def cmd_hash_password(args: argparse.Namespace) -> None:
    from shared.passwords import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise CliError("use at least 8 characters")
    hashed = hash_password(password)
    print(hashed)  # alone on stdout, so that `$(hitl hash-password)` is the hash
    name = args.name or "<reviewer>"
    print(f"\nThis is the password_hash of reviewer {name} in HITL_REVIEWERS (or under reviewers: in "
          f"HITL_CONFIG_FILE), next to the token:\n"
          f'  [{{"name": "{name}", "token": "…", "apps": ["…"], "password_hash": "{hashed}"}}]\n'
          f"then restart the console; {name} signs in with this password (the token keeps working).",
          file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> None:
    """Run a process as `python -m services.<name>` does: its __main__ module's `main()`."""
    module_name = f"services.{args.process}.__main__"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in (module_name, f"services.{args.process}"):
            raise  # a dependency of the process is missing: say that, not "no such process"
        raise CliError(f"this install has no {args.process} process (no {module_name})") from None
    entry = getattr(module, "main", None)
    if not callable(entry):
        raise CliError(f"{module_name} has no main() to run")
    entry()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hitl", description="Human-in-the-loop checkpoints for Dify: review, decide, "
                                                         "watch runs, operate. `hitl COMMAND --help` for each.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def bind(fn: Callable[[argparse.Namespace, Api], None]) -> Callable[[argparse.Namespace], None]:
        return lambda args: fn(args, args.api)

    add_review_commands(sub, bind)
    add_bulk_commands(sub, bind)
    add_run_commands(sub, bind)
    add_dsl_commands(sub)
    add_audit_commands(sub)
    add_dlq_commands(sub)

    hp = command(sub, "hash-password", summary="a password hash for a reviewer's console sign-in",
                 description="Reads a password (typed without echo, or one line on stdin) and prints its hash "
                             "alone on stdout; on stderr, where it goes: the password_hash of the reviewer in "
                             "HITL_REVIEWERS. The reviewer then signs in to the console with name and password.",
                 examples=["hitl hash-password --name alice", "echo 'a long passphrase' | hitl hash-password"],
                 env=())
    hp.add_argument("--name", help="the reviewer's name, for the snippet printed on stderr")
    hp.set_defaults(fn=cmd_hash_password)

    db = command(sub, "db", summary="database schema: upgrade or show the revision",
                 description="`upgrade` applies the migrations (every service also does it at start unless "
                             "HITL_AUTO_MIGRATE=false); `current` prints the store's revision and the head.",
                 examples=["hitl db upgrade", "HITL_DATABASE_URL=postgresql://hitl@db/hitl hitl db current"],
                 env=(("HITL_DATABASE_URL", "the store (default sqlite:///./var/hitl.db)"),
                      ("HITL_CONFIG_FILE", "a YAML/JSON file with the settings (the environment wins)")))
    db.add_argument("db_command", choices=["upgrade", "current"])
    db.set_defaults(fn=cmd_db)

    sv = command(sub, "serve", summary="run a process: ingest | decider | poller | console | notifier",
                 description="Runs one dify-hitl process in the foreground, exactly as `python -m services.NAME` "
                             "does (SIGTERM drains it). Every process reads the same settings.",
                 examples=["hitl serve ingest", "HITL_CONFIG_FILE=/etc/hitl.yaml hitl serve decider"],
                 env=SETTINGS_ENV)
    sv.add_argument("process", choices=PROCESSES)
    sv.set_defaults(fn=cmd_serve)
    return p


def main(argv: list[str] | None = None, api: Api | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.api = api or Api.from_env()
    args.api.as_json = bool(getattr(args, "json", False))
    try:
        args.fn(args)
    except CliError as exc:
        print(render.error(str(exc)), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()


