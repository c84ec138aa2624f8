"""A published workflow graph (Dify DSL `nodes`/`edges`) split into scopes: top level and each loop body."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Edge:
    id: str
    source: str
    target: str
    source_handle: str


@dataclass
class Scope:
    """The nodes of one level (top level, or the body of one loop) and the edges between them."""
    nodes: dict[str, dict]
    incoming: dict[str, list[Edge]] = field(default_factory=dict)
    outgoing: dict[str, list[Edge]] = field(default_factory=dict)


class Graph:
    def __init__(self, dsl: dict) -> None:
        self.dsl = dsl
        self.nodes: dict[str, dict] = {n["id"]: n for n in dsl.get("nodes", [])}
        self.edges = [Edge(e.get("id") or f"{e['source']}-{e['target']}", e["source"], e["target"],
                           e.get("sourceHandle") or "source")
                      for e in dsl.get("edges", []) if e.get("source") in self.nodes and e.get("target") in self.nodes]

    @staticmethod
    def node_type(node: dict) -> str:
        return (node.get("data") or {}).get("type") or node.get("type", "")

    def parent_of(self, node: dict) -> str | None:
        data = node.get("data") or {}
        return node.get("parentId") or data.get("loop_id") or data.get("iteration_id") or None

    def scope(self, parent_id: str | None) -> Scope:
        nodes = {nid: n for nid, n in self.nodes.items() if self.parent_of(n) == parent_id}
        scope = Scope(nodes)
        for edge in self.edges:
            if edge.source in nodes and edge.target in nodes:
                scope.outgoing.setdefault(edge.source, []).append(edge)
                scope.incoming.setdefault(edge.target, []).append(edge)
        return scope

    def start_node(self) -> dict | None:
        return next((n for n in self.nodes.values() if self.node_type(n) == "start" and not self.parent_of(n)), None)

    def start_variables(self) -> list[dict]:
        start = self.start_node()
        return list(((start or {}).get("data") or {}).get("variables") or [])
