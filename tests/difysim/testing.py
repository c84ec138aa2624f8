"""Helpers for tests that drive the simulator in-process (httpx ASGI transport, no network)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

from .app import create_app
from .config import SimConfig


@contextlib.asynccontextmanager
async def in_process(config: SimConfig | None = None,
                     node_http: httpx.AsyncClient | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A client bound to a fresh simulator. `node_http` replaces the client HTTP nodes use
    (e.g. one with an httpx.MockTransport)."""
    app = create_app(config)
    state = app.state.sim
    await state.startup()
    if node_http is not None:
        await state.http.aclose()
        state.http = node_http
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://difysim") as client:
            client.sim = state  # type: ignore[attr-defined]
            yield client
    finally:
        await state.shutdown()


async def until(condition: Callable[[], bool], step_s: float = 0.01) -> None:
    """Return once `condition()` holds, looking again every `step_s` (the test's timeout bounds the wait)."""
    while not condition():  # noqa: ASYNC110 - the simulator's run state has no event to await
        await asyncio.sleep(step_s)


async def register(client: httpx.AsyncClient, graph: dict, name: str = "app") -> dict[str, str]:
    """Publish a graph; returns the Authorization header for its key."""
    answer = await client.post("/_sim/apps", json={"name": name, "graph": graph})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['api_key']}"}


def node(node_id: str, data: dict, **extra) -> dict:
    return {"id": node_id, "type": "custom", "data": {"title": node_id, "desc": "", **data}, **extra}


def edge(source: str, target: str, handle: str = "source") -> dict:
    return {"id": f"{source}-{handle}-{target}", "type": "custom", "source": source, "sourceHandle": handle,
            "target": target, "targetHandle": "target", "data": {}}


def topic_start(max_length: int = 256) -> dict:
    return node("start", {"type": "start", "variables": [
        {"variable": "topic", "label": "topic", "type": "text-input", "required": True,
         "max_length": max_length, "options": []}]})


def echo_graph() -> dict:
    """Start(topic) -> End(topic): a run that finishes at once."""
    end = node("end", {"type": "end", "outputs": [{"variable": "topic", "value_selector": ["start", "topic"]}]})
    return {"nodes": [topic_start(), end], "edges": [edge("start", "end")], "viewport": {"x": 0, "y": 0, "zoom": 1}}


def http_graph(url: str, **http_data) -> dict:
    """Start(topic) -> HTTP POST url -> End(body, status_code)."""
    http = node("checkpoint", {"type": "http-request", "method": "post", "url": url,
                               "authorization": {"type": "no-auth", "config": None}, "headers": "", "params": "",
                               "body": {"type": "json", "data": [{"key": "", "type": "text",
                                                                  "value": "{\"topic\": \"{{#start.topic#}}\"}"}]},
                               "timeout": {"connect": 10, "read": 60, "write": 20},
                               "retry_config": {"retry_enabled": False, "max_retries": 0, "retry_interval": 100},
                               **http_data})
    end = node("end", {"type": "end", "outputs": [{"variable": "body", "value_selector": ["checkpoint", "body"]},
                                                  {"variable": "status_code",
                                                   "value_selector": ["checkpoint", "status_code"]}]})
    return {"nodes": [topic_start(), http, end], "edges": [edge("start", "checkpoint"), edge("checkpoint", "end")],
            "viewport": {"x": 0, "y": 0, "zoom": 1}}


REVIEW_OUTPUTS = ("edited", "__action_id", "__action_value", "__rendered_content")


def review_graph(timeout: float = 1, timeout_unit: str = "hour", webapp: bool = True,
                 timeout_branch: bool = False) -> dict:
    """Fixture 08's graph: Start(topic) -> human-input `review` (paragraph `edited` defaulting to the
    topic; actions approve/revise/abort) -> end_<action>, plus end_timeout on `__timeout` if asked."""
    review = node("review", {
        "title": "Review", "type": "human-input",
        "form_content": "## Review the draft\n\nTopic: **{{#start.topic#}}**\n\nEdit the text below if needed:"
                        "\n\n{{#$output.edited#}}",
        "inputs": [{"type": "paragraph", "output_variable_name": "edited",
                    "default": {"type": "variable", "selector": ["start", "topic"], "value": ""}}],
        "user_actions": [{"id": "approve", "title": "Approve", "button_style": "primary"},
                         {"id": "revise", "title": "Request revision", "button_style": "default"},
                         {"id": "abort", "title": "Abort", "button_style": "ghost"}],
        "delivery_methods": [{"id": "d1", "enabled": True, "type": "webapp" if webapp else "email", "config": {}}],
        "timeout": timeout, "timeout_unit": timeout_unit})
    branches = ["approve", "revise", "abort"] + (["__timeout"] if timeout_branch else [])
    ends = [node(f"end_{b.strip('_')}", {"type": "end", "outputs": [
        {"variable": name.strip("_"), "value_selector": ["review", name]} for name in REVIEW_OUTPUTS]})
        for b in branches]
    return {"nodes": [topic_start(), review, *ends],
            "edges": [edge("start", "review")] + [edge("review", f"end_{b.strip('_')}", handle=b) for b in branches],
            "viewport": {"x": 0, "y": 0, "zoom": 1}}
