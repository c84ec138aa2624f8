"""Small Dify graphs (DSL shapes, as in ../shared/dify-fixtures) for the run-monitoring tests."""
from __future__ import annotations


def _node(node_id: str, data: dict) -> dict:
    return {"id": node_id, "type": "custom", "position": {"x": 0, "y": 0}, "data": data}


def _edge(source: str, target: str) -> dict:
    return {"id": f"{source}-{target}", "type": "custom", "source": source, "sourceHandle": "source",
            "target": target, "targetHandle": "target", "data": {}}


def start() -> dict:
    return _node("start", {"title": "Start", "type": "start", "variables": [
        {"variable": "topic", "label": "topic", "type": "text-input", "required": True, "max_length": 256,
         "options": []}]})


def end(selector: list[str]) -> dict:
    return _node("end", {"title": "End", "type": "end",
                         "outputs": [{"variable": "result", "value_selector": selector, "value_type": "string"}]})


def template_graph() -> dict:
    """start → template (writes a line about the topic) → end: finishes at once."""
    write = _node("write", {"title": "Write", "type": "template-transform", "template": "About {{ topic }}.",
                            "variables": [{"variable": "topic", "value_selector": ["start", "topic"]}]})
    return {"nodes": [start(), write, end(["write", "output"])],
            "edges": [_edge("start", "write"), _edge("write", "end")], "viewport": {"x": 0, "y": 0, "zoom": 1}}


def slow_graph(url: str) -> dict:
    """start → HTTP GET url (a slow local server) → end: runs stay `running` for as long as it waits."""
    wait = _node("wait", {"title": "Wait", "type": "http-request", "method": "get", "url": url,
                          "authorization": {"type": "no-auth", "config": None}, "headers": "", "params": "",
                          "body": {"type": "none", "data": []}, "timeout": {"connect": 10, "read": 120, "write": 10},
                          "retry_config": {"retry_enabled": False, "max_retries": 0, "retry_interval": 100},
                          "variables": []})
    return {"nodes": [start(), wait, end(["wait", "body"])],
            "edges": [_edge("start", "wait"), _edge("wait", "end")], "viewport": {"x": 0, "y": 0, "zoom": 1}}


def continuation_graph() -> dict:
    """The app a decided detached checkpoint starts: it receives the decision as inputs."""
    names = ("checkpoint_id", "action", "output", "feedback", "workflow_run_id", "node_id")
    variables = [{"variable": n, "label": n, "type": "paragraph", "required": n in ("checkpoint_id", "action"),
                  "max_length": 100000, "options": []} for n in names]
    say = _node("say", {"title": "Continue", "type": "template-transform",
                        "template": "Continuing {{ workflow_run_id }} after {{ action }}: {{ output }}",
                        "variables": [{"variable": n, "value_selector": ["start", n]} for n in names]})
    first = _node("start", {"title": "Start", "type": "start", "variables": variables})
    return {"nodes": [first, say, end(["say", "output"])], "edges": [_edge("start", "say"), _edge("say", "end")],
            "viewport": {"x": 0, "y": 0, "zoom": 1}}
