"""Our model of a Dify workflow graph, and the checks a graph must pass before we write it.

Real Dify imports and publishes a graph whose edges point at missing nodes (fixture 17,
import-bad-edge-to-missing-node): nothing on Dify's side guards an edited file, so these checks do.
They cover what instrumenting can break: edge ends, source handles per node type, loop children,
ids usable in `{{#node_id.var#}}` templates, and variable references to nodes that do not exist.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Dify's template pattern: a node id (no dashes, 1..50 chars) then 1..10 dotted names (DIFY.md).
NODE_ID = re.compile(r"^[a-zA-Z0-9_]{1,50}$")
TEMPLATE_REF = re.compile(r"\{\{#([a-zA-Z0-9_]{1,50})((?:\.[a-zA-Z_$][a-zA-Z0-9_]{0,29}){1,10})#\}\}")
# Selectors whose first element is not a node.
POOL_ROOTS = {"sys", "env", "conversation", "rag", "rag_pipeline"}
CONTAINER_TYPES = {"loop": ("loop-start", "isInLoop", "loop_id"),
                   "iteration": ("iteration-start", "isInIteration", "iteration_id")}
START_TYPES = {"loop-start", "iteration-start"}
BRANCH_TYPES = {"if-else", "question-classifier", "human-input"}
TERMINAL_TYPES = {"end", "answer"}
FAIL_BRANCH = "fail-branch"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph: where (node or edge id), and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def node_type(node: dict) -> str:
    return str((node.get("data") or {}).get("type") or node.get("type") or "")


def title(node: dict) -> str:
    return str((node.get("data") or {}).get("title") or node.get("id"))


def parent_of(node: dict) -> str | None:
    data = node.get("data") or {}
    return node.get("parentId") or data.get("loop_id") or data.get("iteration_id") or None


class Graph:
    """A view over the DSL's `nodes` and `edges` lists (the same objects: edits go to the file)."""

    def __init__(self, nodes: list, edges: list) -> None:
        self.nodes = nodes
        self.edges = edges

    @classmethod
    def of(cls, graph: dict) -> Graph:
        return cls(graph["nodes"], graph["edges"])

    # ------------------------------------------------------------------ lookups
    def node(self, node_id: str) -> dict | None:
        return next((n for n in self.nodes if n.get("id") == node_id), None)

    def ids(self) -> set[str]:
        return {str(n.get("id")) for n in self.nodes}

    def out_edges(self, node_id: str, handle: str | None = None) -> list[dict]:
        return [e for e in self.edges if e.get("source") == node_id
                and (handle is None or (e.get("sourceHandle") or "source") == handle)]

    def in_edges(self, node_id: str) -> list[dict]:
        return [e for e in self.edges if e.get("target") == node_id]

    def children(self, container_id: str) -> list[dict]:
        return [n for n in self.nodes if parent_of(n) == container_id]

    def top_level(self) -> list[dict]:
        return [n for n in self.nodes if not parent_of(n)]

    def start(self) -> dict | None:
        return next((n for n in self.top_level() if node_type(n) == "start"), None)

    def find(self, ref: str) -> dict:
        """A node by id, else by title (exactly one); KeyError with the choices otherwise."""
        by_id = self.node(ref)
        if by_id is not None:
            return by_id
        matches = [n for n in self.nodes if title(n) == ref]
        if len(matches) == 1:
            return matches[0]
        choices = ", ".join(f"{n.get('id')} ({title(n)!r})" for n in self.nodes if node_type(n) not in START_TYPES)
        if matches:
            raise KeyError(f"{len(matches)} nodes are titled {ref!r}: name one by id ({choices})")
        raise KeyError(f"no node with id or title {ref!r}; nodes: {choices}")

    def descendants(self, node_id: str) -> set[str]:
        """Every node reachable from node_id along edges (within its level), node_id excluded."""
        seen: set[str] = set()
        todo = [e["target"] for e in self.out_edges(node_id)]
        while todo:
            nid = todo.pop()
            if nid in seen or nid == node_id:
                continue
            seen.add(nid)
            todo.extend(e["target"] for e in self.out_edges(nid))
            todo.extend(str(c["id"]) for c in self.children(nid))  # a loop's body runs inside it
        return seen

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        todo = [e["source"] for e in self.in_edges(node_id)]
        while todo:
            nid = todo.pop()
            if nid in seen:
                continue
            seen.add(nid)
            todo.extend(e["source"] for e in self.in_edges(nid))
        return seen

    def topological(self, ids: set[str] | None = None) -> list[str]:
        """Top-level node ids from the start in dependency order (Kahn's), restricted to `ids`."""
        level = [str(n["id"]) for n in self.top_level()]
        wanted = set(level) if ids is None else ids & set(level)
        indegree = {nid: 0 for nid in wanted}
        for e in self.edges:
            if e.get("source") in wanted and e.get("target") in wanted:
                indegree[e["target"]] += 1
        ready = [nid for nid in level if nid in wanted and indegree[nid] == 0]
        order: list[str] = []
        while ready:
            nid = ready.pop(0)
            order.append(nid)
            for e in self.out_edges(nid):
                target = e.get("target")
                if target in indegree:
                    indegree[target] -= 1
                    if indegree[target] == 0:
                        ready.append(target)
        return order

    # ------------------------------------------------------------------ handles
    def source_handles(self, node: dict) -> set[str]:
        """The handles an edge may leave this node by."""
        data = node.get("data") or {}
        kind = node_type(node)
        if kind == "if-else":
            cases = data.get("cases")
            handles = {str(c.get("case_id")) for c in cases or []} if cases is not None else {"true"}
            handles.add("false")
        elif kind == "human-input":
            handles = {str(a.get("id")) for a in data.get("user_actions") or []} | {"__timeout"}
        elif kind == "question-classifier":
            handles = {str(c.get("id")) for c in data.get("classes") or []}
        elif kind in TERMINAL_TYPES:
            handles = set()
        else:
            handles = {"source"}
        if data.get("error_strategy") == FAIL_BRANCH:
            handles.add(FAIL_BRANCH)
        return handles


def references(value: Any) -> Iterator[tuple[str, str]]:
    """(node id, variable) pairs a node's data reads: `{{#a.b#}}` in text, and selector lists."""
    if isinstance(value, str):
        for match in TEMPLATE_REF.finditer(value):
            yield match.group(1), match.group(2).split(".")[1]
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in ("value_selector", "variable_selector", "selector") and _is_selector(item):
                yield str(item[0]), str(item[1])
            elif key == "value" and value.get("input_type") == "variable" and _is_selector(item):
                yield str(item[0]), str(item[1])  # a Variable Assigner item reading a variable
            else:
                yield from references(item)
    elif isinstance(value, list):
        if all(_is_selector(v) for v in value) and value:  # an aggregator's list of selectors
            for sel in value:
                yield str(sel[0]), str(sel[1])
            return
        for item in value:
            yield from references(item)


def _is_selector(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value)


def validate(graph: Graph) -> list[Problem]:
    """Everything wrong with the graph, empty when Dify can run it as far as we can tell."""
    problems: list[Problem] = []
    by_id: dict[str, dict] = {}
    for node in graph.nodes:
        nid = str(node.get("id"))
        if nid in by_id:
            problems.append(Problem(nid, "two nodes have this id"))
        by_id[nid] = node
        if not NODE_ID.match(nid):
            problems.append(Problem(nid, "node id must be 1..50 letters, digits or _ (templates cannot name it)"))
    problems += _check_edges(graph, by_id)
    problems += _check_containers(graph, by_id)
    problems += _check_references(graph, by_id)
    starts = [n for n in graph.top_level() if node_type(n) == "start"]
    triggers = [n for n in graph.top_level() if node_type(n).startswith("trigger-")]
    if starts and triggers:
        problems.append(Problem(str(starts[0].get("id")),
                                "a Start node and trigger nodes cannot coexist (Dify refuses the import)"))
    if len(starts) > 1:
        problems.append(Problem(str(starts[1].get("id")), "more than one Start node"))
    return problems


def _check_edges(graph: Graph, by_id: dict[str, dict]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for edge in graph.edges:
        eid = str(edge.get("id"))
        if eid in seen:
            problems.append(Problem(eid, "two edges have this id"))
        seen.add(eid)
        source, target = by_id.get(str(edge.get("source"))), by_id.get(str(edge.get("target")))
        if source is None:
            problems.append(Problem(eid, f"edge starts at missing node {edge.get('source')!r}"))
        if target is None:
            problems.append(Problem(eid, f"edge ends at missing node {edge.get('target')!r}"))
        if source is None or target is None:
            continue
        handle = str(edge.get("sourceHandle") or "source")
        allowed = graph.source_handles(source)
        if handle not in allowed:
            problems.append(Problem(eid, f"source handle {handle!r} is not one of {title(source)!r} "
                                         f"({node_type(source)}): {sorted(allowed) or 'none'}"))
        if parent_of(source) != parent_of(target):
            problems.append(Problem(eid, "edge crosses a loop/iteration boundary "
                                         f"({parent_of(source) or 'top level'} -> {parent_of(target) or 'top level'})"))
        parent = parent_of(source)
        if parent and parent_of(source) == parent_of(target):
            container = by_id.get(parent)
            kind = node_type(container) if container else ""
            if kind in CONTAINER_TYPES:
                _, flag, key = CONTAINER_TYPES[kind]
                data = edge.get("data") or {}
                if data.get(flag) is not True or data.get(key) != parent:
                    problems.append(Problem(eid, f"edge inside {parent!r} needs data.{flag}: true "
                                                 f"and data.{key}: {parent}"))
    return problems


def _check_containers(graph: Graph, by_id: dict[str, dict]) -> list[Problem]:
    problems: list[Problem] = []
    for node in graph.nodes:
        nid, parent = str(node.get("id")), parent_of(node)
        if parent is not None:
            container = by_id.get(parent)
            if container is None or node_type(container) not in CONTAINER_TYPES:
                problems.append(Problem(nid, f"parent {parent!r} is not a loop or iteration node"))
                continue
            start_type, flag, key = CONTAINER_TYPES[node_type(container)]
            data = node.get("data") or {}
            if node.get("parentId") != parent:
                problems.append(Problem(nid, f"child of {parent!r} needs parentId: {parent}"))
            if data.get(flag) is not True or (node_type(node) != start_type and data.get(key) != parent):
                problems.append(Problem(nid, f"child of {parent!r} needs data.{flag}: true and data.{key}: {parent}"))
        kind = node_type(node)
        if kind in CONTAINER_TYPES:
            start_type = CONTAINER_TYPES[kind][0]
            start_id = (node.get("data") or {}).get("start_node_id") or f"{nid}start"
            start = by_id.get(str(start_id))
            if start is None or node_type(start) != start_type or parent_of(start) != nid:
                problems.append(Problem(nid, f"{kind} needs its start child {start_id!r} "
                                             f"({start_type}, parentId {nid})"))
            elif start.get("type") != f"custom-{start_type}":
                problems.append(Problem(str(start_id), f"a {start_type} child has top-level type custom-{start_type}"))
    return problems


def _check_references(graph: Graph, by_id: dict[str, dict]) -> list[Problem]:
    """A `{{#x.y#}}` or selector naming a node that does not exist renders as bare text in Dify."""
    problems: list[Problem] = []
    for node in graph.nodes:
        for ref_node, var in references(node.get("data") or {}):
            if ref_node in POOL_ROOTS or ref_node in by_id or ref_node.startswith("$"):
                continue
            problems.append(Problem(str(node.get("id")), f"reads {ref_node}.{var} but there is no node {ref_node!r}"))
    return problems
