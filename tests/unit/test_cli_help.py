"""Every `hitl` command explains itself: a description, an example and the environment it reads in its
--help; and the README's CLI reference lists every command with the same one-line summary."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from services.cli.main import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(parser: argparse.ArgumentParser, prefix: str = "hitl") -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(full command, summary, parser) for every subcommand, nested ones too (`hitl dlq list`)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", summaries.get(name) or "", sub))
                found += commands(sub, f"{prefix} {name}")
    return found


ALL = commands(build_parser())


def test_every_command_is_found():
    names = {name for name, _, _ in ALL}
    assert {"hitl show", "hitl decide", "hitl wait", "hitl decision", "hitl dlq list", "hitl dlq replay",
            "hitl serve", "hitl hash-password", "hitl run-show"} <= names


@pytest.mark.parametrize("name, summary, parser", ALL, ids=[c[0] for c in ALL])
def test_help_has_a_description_an_example_and_the_environment(name, summary, parser):
    text = parser.format_help()
    assert summary, f"{name} has no one-line summary"
    assert parser.description and len(parser.description) > 40, f"{name}: no description"
    assert re.search(r"^examples?:\n  hitl ", text, re.M), f"{name}: no example"
    assert re.search(r"^environment:", text, re.M), f"{name}: no environment section"
    examples = text.split("example", 1)[1].split("environment:")[0]
    assert name.split()[1] in examples, f"{name}: the example does not use the command"


def test_every_option_says_what_it_is_for():
    for name, _, parser in ALL:
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"


def test_the_readme_lists_every_command_with_its_summary():
    readme = README.read_text()
    reference = readme.split("### CLI reference", 1)[1].split("\n## ", 1)[0]
    for name, summary, _ in ALL:
        row = next((line for line in reference.splitlines() if re.match(rf"\| `{re.escape(name)}[ `]", line)), None)
        assert row is not None, f"README's CLI reference has no row for {name}"
        assert summary in row.replace("\\|", "|"), f"README row for {name} should say {summary!r}"
