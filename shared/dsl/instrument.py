"""`hitl instrument`: put a human review after chosen nodes of an exported Dify app.

Three shapes, all built from the README recipe (recipe.py):
- plain: node → checkpoint (HTTP) → IF/ELSE on the answer → "reviewed output" call → the node's
  successors; abort → an End (or --on-abort NODE); anything else, and the checkpoint's fail
  branch → one "review failed" End.
- --revise: a Loop around the node, the checkpoint, the "reviewed output" call and a Variable
  Assigner, so a revise re-runs the node with the feedback; after the loop the same IF/ELSE.
- --human-input: Dify's own Human Input node instead of the HTTP checkpoint.
Downstream references to the node's output move to the reviewed output: the "reviewed output"
call's body (plain), the loop variable `output` (--revise), the form's paragraph input `edited`
(--human-input).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import recipe as r
from .document import Document, DslError
from .graph import BRANCH_TYPES, FAIL_BRANCH, TERMINAL_TYPES, Graph, node_type, title, validate
from .layout import COLUMN, ROW, Ids, add, make_room, move_edge, position, require_top_level
from .outputs import Var, main_output
from .rewire import add_feedback_input, rewire

LOOP_SIZE = (1340, 330)  # the revise loop's box: five children in a row, a failure row below


@dataclass
class Options:
    settings: r.RecipeSettings
    token: str = ""  # written into the secret environment variable; empty: set it in Dify
    output_var: str | None = None
    on_abort: str | None = None
    revise: bool = False
    human_input: bool = False


@dataclass
class Change:
    """What instrumenting one node did (printed by the CLI)."""

    node: str
    title: str
    output: str
    added: list[str]
    rewired: int
    notes: list[str] = field(default_factory=list)


def check_input(doc: Document, graph: Graph) -> None:
    if doc.mode != "workflow":
        raise DslError(f"app mode {doc.mode!r}: only workflow apps can be instrumented (a chatflow answers "
                       "with Answer nodes, not End nodes)")
    problems = validate(graph)
    if problems:
        raise DslError("the app already has problems; fix them first:\n  " + "\n  ".join(map(str, problems)))


def finish(doc: Document, graph: Graph, opts: Options, uses_http: bool) -> None:
    if uses_http:
        doc.set_secret(opts.settings.token_var, opts.token, "dify-hitl checkpoint token (HITL_APPS checkpoint_token)",
                       r.stable_uuid("env", opts.settings.token_var))
    problems = validate(graph)
    if problems:  # a bug of ours, never a file to write
        raise DslError("the instrumented graph does not validate:\n  " + "\n  ".join(map(str, problems)))


def instrument(doc: Document, after: list[str], opts: Options) -> list[Change]:
    graph = Graph.of(doc.graph)
    check_input(doc, graph)
    if opts.human_input and opts.revise:
        raise DslError("--human-input with --revise needs a Human Input node inside a Loop, which Dify supports "
                       "from 1.16 only (DIFY.md); use --revise with the HTTP checkpoint, or --human-input alone")
    try:
        targets = list(dict.fromkeys(str(graph.find(ref)["id"]) for ref in after))
        abort = str(graph.find(opts.on_abort)["id"]) if opts.on_abort else None
    except KeyError as exc:
        raise DslError(str(exc.args[0])) from None
    if abort in targets:
        raise DslError(f"--on-abort {opts.on_abort!r} is also a reviewed node")
    ids, changes = Ids(graph), []
    for node_id in targets:
        node = graph.node(node_id)
        assert node is not None
        try:
            changes.append(_one(graph, ids, node, abort, opts))
        except ValueError as exc:
            raise DslError(str(exc)) from None
    finish(doc, graph, opts, uses_http=not opts.human_input)
    return changes


def _one(graph: Graph, ids: Ids, node: dict, abort: str | None, opts: Options) -> Change:
    require_top_level(node, "node")
    kind = node_type(node)
    if kind in TERMINAL_TYPES or kind in BRANCH_TYPES or kind == "start":
        raise ValueError(f"{node['id']!r} is a {kind} node: review the output of a node that produces one")
    var = main_output(node, opts.output_var)
    successors = graph.out_edges(str(node["id"]), "source")
    if not successors:
        raise ValueError(f"{node['id']!r} has no successor: nothing would continue after an approval")
    downstream = graph.descendants(str(node["id"]))
    if opts.human_input:
        return _human_input(graph, ids, node, var, successors, downstream, abort, opts)
    if opts.revise:
        return _revise(graph, ids, node, var, successors, downstream, abort, opts)
    return _plain(graph, ids, node, var, successors, downstream, abort, opts)


def _rewire(graph: Graph, downstream: set[str], old: tuple[str, str], new: tuple[str, str]) -> int:
    # Every node after the reviewed one, an --on-abort node among them: on the abort path neither the old
    # nor the new variable holds the approved output, so nothing is lost there.
    nodes = (graph.node(nid) for nid in downstream)
    return sum(rewire(node["data"], old, new) for node in nodes if node is not None)


def _notes(var: Var) -> list[str]:
    if var.json:
        return [f"{var.name} is not text: downstream reads it as the text of the reviewed output"]
    return []


def _plain(graph: Graph, ids: Ids, node: dict, var: Var, successors: list[dict], downstream: set[str],
           abort: str | None, opts: Options) -> Change:
    nid, label, s = str(node["id"]), title(node), opts.settings
    cp, route, out = ids.make(f"hitl_cp_{nid}"), ids.make(f"hitl_route_{nid}"), ids.make(f"hitl_out_{nid}")
    fail = ids.make(f"hitl_fail_{nid}")
    x, y = position(node)
    make_room(graph, x, 3 * COLUMN)
    body = r.body_template(r.checkpoint_fields(nid, var.template(nid), s, round_="1", max_rounds=1,
                                               message=s.message or f"Review {label}"))
    added = [cp, route, out, fail]
    add(graph,
        r.http_checkpoint(cp, f"Review: {label}", body, s, r.Place(x + COLUMN, y)),
        r.decision_router(route, f"Decision on {label}", [cp, "body"], r.Place(x + 2 * COLUMN, y)),
        r.http_checkpoint(out, f"Reviewed output: {label}", r.body_template(r.recall_fields(nid, s, round_="1")), s,
                          r.Place(x + 3 * COLUMN, y)),
        r.end_node(fail, f"Review failed: {label}", [("error", [cp, "error_message"]), ("decision", [cp, "body"])],
                   r.Place(x + 2 * COLUMN, y + 2 * ROW)))
    if abort is None:
        abort = ids.make(f"hitl_abort_{nid}")
        added.append(abort)
        add(graph, r.end_node(abort, f"Aborted: {label}", [("decision", [cp, "body"])],
                              r.Place(x + 3 * COLUMN, y + ROW)))
    for e in successors:
        move_edge(e, source=out)
    add(graph, r.edge(nid, "source", cp), r.edge(cp, "source", route), r.edge(cp, FAIL_BRANCH, fail),
        r.edge(route, "approved", out), r.edge(route, "aborted", abort), r.edge(route, "false", fail),
        r.edge(out, FAIL_BRANCH, fail))
    rewired = _rewire(graph, downstream, (nid, var.name), (out, "body"))
    return Change(nid, label, var.name, added, rewired, _notes(var))


def _revise(graph: Graph, ids: Ids, node: dict, var: Var, successors: list[dict], downstream: set[str],
            abort: str | None, opts: Options) -> Change:
    nid, label, s = str(node["id"]), title(node), opts.settings
    if graph.out_edges(nid, FAIL_BRANCH):
        raise ValueError(f"{nid!r} has a fail branch, which cannot leave the revise loop; remove it or review "
                         "without --revise")
    loop = ids.make(f"hitl_loop_{nid}", room=len("start"))
    ids.taken.add(f"{loop}start")
    cp, out = ids.make(f"hitl_cp_{nid}"), ids.make(f"hitl_out_{nid}")
    remember, failed = ids.make(f"hitl_remember_{nid}"), ids.make(f"hitl_failed_{nid}")
    route, fail = ids.make(f"hitl_route_{nid}"), ids.make(f"hitl_fail_{nid}")
    x, y = position(node)
    width = LOOP_SIZE[0] + 60
    make_room(graph, x, width)
    decision = [loop, "decision"]
    breaks = [r.condition(f"{loop}_{a}", decision, "start with", r.action_prefix(a))
              for a in ("approve", "edit", "abort")]
    breaks.append(r.condition(f"{loop}_failed", decision, "start with", r.action_prefix("failed")))
    add(graph, r.loop_node(loop, f"Review loop: {label}", count=s.max_rounds, logical_operator="or", breaks=breaks,
                           variables=[("decision", "string", "none"), ("round", "number", 1),
                                      ("feedback", "string", ""), ("output", "string", "")],
                           place=r.Place(x, y), size=LOOP_SIZE),
        r.loop_start(loop))
    # The reviewed node moves into the loop (its position becomes relative to the loop's box).
    node["parentId"], node["zIndex"] = loop, 1002
    node["position"]["x"], node["position"]["y"] = 128, 68
    node.pop("positionAbsolute", None)  # the editor recomputes it; a stale one would misplace the node
    node["data"]["isInIteration"], node["data"]["isInLoop"], node["data"]["loop_id"] = False, True, loop
    add_feedback_input(node, loop)
    round_ref = "{{#" + loop + ".round#}}"
    body = r.body_template(r.checkpoint_fields(nid, var.template(nid), s, round_=round_ref, max_rounds=s.max_rounds,
                                               message=s.message or f"Review {label}"))
    inner = r.Place  # children's positions are relative to the loop's box
    add(graph,
        r.http_checkpoint(cp, f"Review: {label}", body, s, inner(428, 68, loop)),
        r.http_checkpoint(out, f"Reviewed output: {label}", r.body_template(r.recall_fields(nid, s, round_=round_ref)),
                          s, inner(728, 68, loop)),
        r.assigner(remember, "Remember decision", [
            r.assign(decision, [cp, "body"]), r.assign([loop, "feedback"], [out, "body"]),
            r.assign([loop, "output"], [out, "body"]), r.assign([loop, "round"], 1, variable=False, operation="+=")],
            inner(1028, 68, loop)),
        r.assigner(failed, "Remember failure", [r.assign(decision, r.FAILED, variable=False)], inner(728, 208, loop)),
        r.decision_router(route, f"Decision on {label}", decision, r.Place(x + width, y)),
        r.end_node(fail, f"Review failed: {label}", [("decision", decision)],
                   r.Place(x + width, y + LOOP_SIZE[1] + ROW)))
    added = [loop, f"{loop}start", cp, out, remember, failed, route, fail]
    if abort is None:
        abort = ids.make(f"hitl_abort_{nid}")
        added.append(abort)
        add(graph, r.end_node(abort, f"Aborted: {label}", [("decision", decision)],
                              r.Place(x + width + COLUMN, y + LOOP_SIZE[1])))
    for e in graph.in_edges(nid):
        move_edge(e, target=loop)
    for e in successors:
        move_edge(e, source=route, handle="approved")
    add(graph, r.edge(f"{loop}start", "source", nid, loop), r.edge(nid, "source", cp, loop),
        r.edge(cp, "source", out, loop), r.edge(out, "source", remember, loop),
        r.edge(cp, FAIL_BRANCH, failed, loop), r.edge(out, FAIL_BRANCH, failed, loop),
        r.edge(loop, "source", route), r.edge(route, "aborted", abort), r.edge(route, "false", fail))
    rewired = _rewire(graph, downstream, (nid, var.name), (loop, "output"))
    return Change(nid, label, var.name, added, rewired,
                  _notes(var) + [f"up to {s.max_rounds} rounds; the node reads the feedback from {loop}.feedback"])


def _human_input(graph: Graph, ids: Ids, node: dict, var: Var, successors: list[dict], downstream: set[str],
                 abort: str | None, opts: Options) -> Change:
    nid, label = str(node["id"]), title(node)
    form, revise, fail = ids.make(f"hitl_form_{nid}"), ids.make(f"hitl_revise_{nid}"), ids.make(f"hitl_fail_{nid}")
    x, y = position(node)
    make_room(graph, x, COLUMN)
    hours = max(1, math.ceil(opts.settings.timeout_s / 3600))
    add(graph,
        r.human_input(form, f"Review: {label}", nid, var.name, hours, r.Place(x + COLUMN, y)),
        r.end_node(revise, f"Revision requested: {label}", [("feedback", [form, "edited"])],
                   r.Place(x + 2 * COLUMN, y + 2 * ROW)),
        r.end_node(fail, f"Review timed out: {label}", [("action", [form, "__action_id"])],
                   r.Place(x + 2 * COLUMN, y + 3 * ROW)))
    added = [form, revise, fail]
    if abort is None:
        abort = ids.make(f"hitl_abort_{nid}")
        added.append(abort)
        add(graph, r.end_node(abort, f"Aborted: {label}", [("action", [form, "__action_id"])],
                              r.Place(x + 2 * COLUMN, y + ROW)))
    for e in successors:
        move_edge(e, source=form, handle="approve")
    add(graph, r.edge(nid, "source", form), r.edge(form, "abort", abort), r.edge(form, "revise", revise),
        r.edge(form, "__timeout", fail))
    rewired = _rewire(graph, downstream, (nid, var.name), (form, "edited"))
    return Change(nid, label, var.name, added, rewired,
                  _notes(var) + ["runs must start through ingest's gateway or `hitl run` for the form to reach "
                                 "the inbox (README, Dify's own Human Input node)"])
