"""`hitl instrument --step`: pause after every node of the main path, like a debugger's step.

Each step is a held checkpoint (`"mode": "hold"`, one round) whose `node_output` is what the run
has computed so far:

    {"<node_id>": {"<var>": <value>, …}, …}

one entry per node before the pause and the node itself, in run order (Start's inputs first). Text
values are inserted as strings, numbers/objects as JSON. A node on a branch the run did not take
has no values: Dify renders its references as bare `node.var` text. approve / edit go on, abort ends
at that step's "Stopped after …" End, anything else or a failed call at one "Step failed" End. An edit is
not applied (a step only looks).
"""
from __future__ import annotations

import json

from . import recipe as r
from .document import Document, DslError
from .graph import BRANCH_TYPES, FAIL_BRANCH, TERMINAL_TYPES, Graph, node_type, title
from .instrument import Change, Options, check_input, finish
from .layout import COLUMN, ROW, Ids, add, make_room, move_edge, position, require_top_level
from .outputs import all_outputs


def step_candidates(graph: Graph) -> list[str]:
    """The main path: top-level nodes reachable from Start, in run order, that produce an output and
    hand over along a plain `source` edge (Start, End and branching nodes are skipped)."""
    start = graph.start()
    if start is None:
        raise DslError("the app has no Start node: nothing to step through")
    reachable = graph.descendants(str(start["id"])) | {str(start["id"])}
    order = graph.topological(reachable)
    return [nid for nid in order if _steppable(graph, graph.node(nid))]


def _steppable(graph: Graph, node: dict | None) -> bool:
    if node is None:
        return False
    kind = node_type(node)
    if kind == "start" or kind in TERMINAL_TYPES or kind in BRANCH_TYPES:
        return False
    return bool(graph.out_edges(str(node["id"]), "source")) and bool(all_outputs(node))


def node_output_template(graph: Graph, order: list[str], node_id: str) -> str:
    """The `node_output` object for a pause after node_id: every earlier node's outputs and its own."""
    before = graph.ancestors(node_id) | {node_id}
    parts = []
    for nid in order:
        node = graph.node(nid)
        if nid not in before or node is None:
            continue
        outputs = all_outputs(node)
        if outputs:
            inner = ", ".join(f"{json.dumps(v.name)}: {v.template(nid)}" for v in outputs)
            parts.append(f"{json.dumps(nid)}: {{{inner}}}")
    return "{" + ", ".join(parts) + "}"


def step(doc: Document, nodes: list[str] | None, opts: Options) -> list[Change]:
    graph = Graph.of(doc.graph)
    check_input(doc, graph)
    order_all = graph.topological()  # computed once: later steps must not see earlier checkpoints
    try:
        chosen = [str(graph.find(ref)["id"]) for ref in nodes] if nodes else step_candidates(graph)
    except KeyError as exc:
        raise DslError(str(exc.args[0])) from None
    if not chosen:
        raise DslError("no node to step after: the main path has no node with an output")
    templates = {nid: node_output_template(graph, order_all, nid) for nid in chosen}
    ids, s = Ids(graph), opts.settings
    failed = ids.make("hitl_step_fail")
    changes: list[Change] = []
    checkpoints: dict[str, str] = {}
    lowest = max(position(n)[1] for n in graph.top_level())
    for nid in chosen:
        node = graph.node(nid)
        assert node is not None
        try:
            require_top_level(node, "node")
        except ValueError as exc:
            raise DslError(str(exc)) from None
        successors = graph.out_edges(nid, "source")
        if not successors or not _steppable(graph, node):
            raise DslError(f"{nid!r} ({node_type(node)}) cannot be stepped after: it needs an output and a "
                           "plain successor")
        label = title(node)
        cp, go, stop = ids.make(f"hitl_step_{nid}"), ids.make(f"hitl_stepgo_{nid}"), ids.make(f"hitl_stepstop_{nid}")
        checkpoints[nid] = cp
        x, y = position(node)
        make_room(graph, x, 2 * COLUMN)
        body = r.body_template(r.checkpoint_fields(nid, templates[nid], s, round_="1", max_rounds=1,
                                                   message=s.message or f"Step: {label} finished", mode="hold"))
        add(graph, r.http_checkpoint(cp, f"Step: {label}", body, s, r.Place(x + COLUMN, y)),
            r.decision_router(go, f"Go on after {label}?", [cp, "body"], r.Place(x + 2 * COLUMN, y)),
            r.end_node(stop, f"Stopped after {label}", [("decision", [cp, "body"])], r.Place(x + 2 * COLUMN, y + ROW)))
        for e in successors:
            move_edge(e, source=go, handle="approved")
        add(graph, r.edge(nid, "source", cp), r.edge(cp, "source", go), r.edge(cp, FAIL_BRANCH, failed),
            r.edge(go, "aborted", stop), r.edge(go, "false", failed))
        changes.append(Change(nid, label, "(all outputs so far)", [cp, go, stop], 0))
    # One End for every failed step: the outputs of the steps that did not run are null.
    outputs = [(f"{nid}_{var}", [cp, var]) for nid, cp in checkpoints.items() for var in ("error_message", "body")]
    first_x = min(position(n)[0] for n in graph.top_level())
    add(graph, r.end_node(failed, "Step failed", outputs, r.Place(first_x + COLUMN, lowest + 3 * ROW)))
    changes[0].added.append(failed)
    finish(doc, graph, opts, uses_http=True)
    return changes
