"""Where new nodes go on the canvas, their ids, and moving edges between nodes.

Dify's exports place nodes 300 px apart from left to right (fixture 17: x = 80, 380, 680, 980); new
nodes take the columns right after the node they follow and everything further right moves over,
so the instrumented app reads like the original with review steps slotted in.
"""
from __future__ import annotations

from typing import Any

from .document import to_yaml
from .graph import Graph, parent_of

COLUMN = 300  # px between columns
ROW = 160  # px between a main-path node and a branch below it
MAX_ID = 50


def position(node: dict) -> tuple[float, float]:
    pos = node.get("position") or {}
    return float(pos.get("x") or 0), float(pos.get("y") or 0)


def make_room(graph: Graph, after_x: float, width: float) -> None:
    """Move every top-level node right of `after_x` by `width` (children move with their loop)."""
    for node in graph.top_level():
        pos = node.get("position")
        if pos is not None and float(pos.get("x") or 0) > after_x:
            pos["x"] = _num(float(pos.get("x") or 0) + width)
        absolute = node.get("positionAbsolute")
        if absolute is not None and float(absolute.get("x") or 0) > after_x:
            absolute["x"] = _num(float(absolute.get("x") or 0) + width)


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


class Ids:
    """Fresh node ids: Dify's `[a-zA-Z0-9_]{1,50}`, never one the graph already has."""

    def __init__(self, graph: Graph) -> None:
        self.taken = graph.ids()

    def make(self, base: str, room: int = 0) -> str:
        """A new id from `base`; `room` keeps characters free for a derived id (a loop's `<id>start`)."""
        limit = MAX_ID - room
        clean = "".join(c if c.isalnum() or c == "_" else "_" for c in base)[:limit]
        candidate, n = clean, 2
        while candidate in self.taken or f"{candidate}start" in self.taken:
            suffix = f"_{n}"
            candidate, n = clean[:limit - len(suffix)] + suffix, n + 1
        self.taken.add(candidate)
        return candidate


def add(graph: Graph, *items: dict[str, Any]) -> None:
    """Append new nodes or edges (plain data) to the graph in the file's style."""
    for item in items:
        target = graph.edges if "source" in item and "target" in item else graph.nodes
        target.append(to_yaml(item))


def move_edge(edge: dict, *, source: str | None = None, target: str | None = None, handle: str | None = None) -> None:
    """Re-point an edge; an id in Dify's `<source>-<handle>-<target>-target` form follows the move."""
    old_id = f"{edge.get('source')}-{edge.get('sourceHandle') or 'source'}-{edge.get('target')}-target"
    if source is not None:
        edge["source"] = source
    if target is not None:
        edge["target"] = target
    if handle is not None:
        edge["sourceHandle"] = handle
    if edge.get("id") == old_id:
        edge["id"] = f"{edge['source']}-{edge.get('sourceHandle') or 'source'}-{edge['target']}-target"
    for key in ("sourceType", "targetType"):  # the editor's hints, stale after a move
        if key in (edge.get("data") or {}):
            del edge["data"][key]


def require_top_level(node: dict, what: str) -> None:
    if parent_of(node):
        raise ValueError(f"{what} {node.get('id')!r} is inside {parent_of(node)!r}: only top-level nodes can be "
                         "instrumented (a checkpoint inside a loop or iteration needs its own design)")
