"""Every `hitl` command's --help in one shape: what it does, examples, and the environment it reads
(the README's CLI reference shows the same one-line summaries; a test keeps them in sync)."""
from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

WIDTH = 100

API_ENV = (("HITL_API_URL", "ingest's base URL (default http://127.0.0.1:8080)"),
           ("HITL_TOKEN", "your reviewer token: you see and decide only the apps granted to you"),
           ("NO_COLOR", "set: no colours (there are none when the output is not a terminal)"))
BROKER_ENV = (("HITL_RABBITMQ_URL", "the RabbitMQ the services use (default amqp://guest:guest@127.0.0.1:5672/%2F)"),
              ("HITL_NAMESPACE", "the services' queue namespace (default hitl)"),
              ("HITL_INTERNAL_KEY", "the internal signing key, to check signatures (else read from the store)"),
              ("HITL_DATABASE_URL", "the store, where the internal key is kept when HITL_INTERNAL_KEY is unset"),
              ("HITL_BOTS", "the configured bots, to check bot signatures"),
              ("HITL_CONFIG_FILE", "a YAML/JSON file with the same settings (the environment wins)"))


def epilog(examples: Sequence[str], env: Sequence[tuple[str, str]]) -> str:
    lines = ["example:" if len(examples) == 1 else "examples:"]
    lines += [f"  {e}" for e in examples]
    lines += ["", "environment:"]
    width = max((len(name) for name, _ in env), default=0)
    lines += [f"  {name:{width}}  {meaning}" for name, meaning in env] or ["  none"]
    return "\n".join(lines) + "\n"


def command(sub: argparse._SubParsersAction, name: str, *, summary: str, description: str,
            examples: Sequence[str], env: Sequence[tuple[str, str]] = API_ENV) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does, shows how, and names what it reads."""
    wrapped = "\n\n".join(textwrap.fill(part, WIDTH) for part in description.split("\n\n"))
    return sub.add_parser(name, help=summary, description=wrapped, epilog=epilog(examples, env),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
