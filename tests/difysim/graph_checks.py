"""Checks a graph must pass before it is registered: features the chosen Dify version does not have.

/_sim/apps accepts any graph shape (like Dify's draft save: no validation), except that a Human
Input input type the simulated version lacks is refused with a clear message, so that a test
written for 1.17 does not silently run against 1.14 behaviour.
"""
from __future__ import annotations

from .versions import NEWER_FORM_INPUT_TYPES, DifyVersion


def human_input_nodes(graph: dict) -> list[dict]:
    return [n for n in graph.get("nodes") or [] if isinstance(n, dict)
            and ((n.get("data") or {}).get("type") or n.get("type")) == "human-input"]


def version_problems(graph: dict, version: DifyVersion) -> list[str]:
    """One sentence per use of a feature this Dify version does not have."""
    problems = []
    for node in human_input_nodes(graph):
        for spec in (node.get("data") or {}).get("inputs") or []:
            kind = spec.get("type") if isinstance(spec, dict) else None
            if kind in NEWER_FORM_INPUT_TYPES and kind not in version.form_input_types:
                problems.append(f"human-input node '{node.get('id')}': input '{spec.get('output_variable_name')}' "
                                f"has type '{kind}', which Dify {version.release} does not have "
                                f"(start the simulator with --dify-version 1.17)")
    return problems
