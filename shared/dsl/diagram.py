"""A Mermaid flowchart of a workflow graph (`hitl instrument --diagram`, the README's before/after).

Loops become subgraphs with their start child as a small circle; an edge is labelled with its
handle unless it is the plain `source`; fail branches are dotted.
"""
from __future__ import annotations

from .graph import Graph, node_type, title
from .layout import position

SHAPES = {"if-else": ("{", "}"), "human-input": ("[/", "/]"), "start": ("([", "])"), "end": ("([", "])")}
STARTS = {"loop-start", "iteration-start"}


def _id(node_id: str) -> str:
    return f"n_{node_id}"  # Mermaid keywords (end, subgraph, …) are common Dify node ids


def _label(node: dict) -> str:
    text = f"{title(node)}<br/><small>{node_type(node)}</small>"
    return '"' + text.replace('"', "'") + '"'


def mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]

    def order(nodes: list[dict]) -> list[dict]:
        return sorted(nodes, key=lambda n: (position(n)[0], position(n)[1]))

    def emit(nodes: list[dict], indent: str) -> None:
        for node in order(nodes):
            kind, nid = node_type(node), str(node.get("id"))
            if kind in STARTS:
                lines.append(f"{indent}{_id(nid)}((start))")
                continue
            if kind in ("loop", "iteration"):
                lines.append(f"{indent}subgraph {_id(nid)}[{_label(node)}]")
                emit(graph.children(nid), indent + "  ")
                lines.append(f"{indent}end")
                continue
            left, right = SHAPES.get(kind, ("[", "]"))
            lines.append(f"{indent}{_id(nid)}{left}{_label(node)}{right}")

    emit(graph.top_level(), "  ")
    for edge in graph.edges:
        source, target = str(edge.get("source")), str(edge.get("target"))
        handle = str(edge.get("sourceHandle") or "source")
        arrow = "-.->" if handle == "fail-branch" else "-->"
        label = "" if handle == "source" else f"|{handle}|"
        lines.append(f"  {_id(source)} {arrow}{label} {_id(target)}")
    return "\n".join(lines) + "\n"
