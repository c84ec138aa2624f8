"""Reading a Dify app DSL (YAML) the way the console import does (fixture 17), written against the recordings.

What is checked, in this order, each failure a message recorded on Dify 1.14.1:
YAML syntax and that it is a mapping; `version` (missing -> "0.1.0", missing `kind` -> "app"; a
non-string or non-PEP 440 version fails); the `app` section; then, when the app is created, its
`mode`, the `workflow` section of a workflow/advanced-chat app, every Human Input node's data, and
that a Start node and trigger nodes do not coexist. Nothing else is validated: the graph is stored
exactly as given, even an edge to a missing node.
Version rule (current DSL version 0.6.0): newer -> pending (needs a confirmation), an older major ->
pending, an older minor -> completed-with-warnings, otherwise completed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import pydantic_message
from .versions import DifyVersion

CURRENT_DSL_VERSION = "0.6.0"
COMPLETED, WITH_WARNINGS, PENDING, FAILED = "completed", "completed-with-warnings", "pending", "failed"
APP_MODES = ("completion", "workflow", "chat", "advanced-chat", "agent-chat", "channel", "rag-pipeline")
WORKFLOW_MODES = ("workflow", "advanced-chat")
# A simplified PEP 440: release numbers, then optional pre/post/dev parts.
PEP440 = re.compile(r"^\s*v?(\d+(?:\.\d+)*)((?:a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?\s*$", re.IGNORECASE)


class DslError(ValueError):
    """An import that fails: its message is the Import answer's `error`."""


@dataclass
class AppDsl:
    data: dict
    version: str
    status: str  # COMPLETED, WITH_WARNINGS or PENDING

    @property
    def app(self) -> dict:
        return self.data.get("app") or {}

    @property
    def workflow(self) -> dict:
        return self.data.get("workflow") or {}

    @property
    def graph(self) -> dict:
        return self.workflow.get("graph") or {}


def release_of(version: str) -> tuple[int, int, int]:
    match = PEP440.match(version)
    if match is None:
        raise DslError(f"Invalid version: {version!r}")
    numbers = [int(n) for n in match.group(1).split(".")] + [0, 0]
    return numbers[0], numbers[1], numbers[2]


def compatibility(imported: str) -> str:
    current, given = release_of(CURRENT_DSL_VERSION), release_of(imported)
    if given > current or given[0] < current[0]:
        return PENDING
    if given[1] < current[1]:
        return WITH_WARNINGS
    return COMPLETED


def read_dsl(text: str) -> AppDsl:
    """Parse and check everything up to the `app` section (what Dify checks before a pending import)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DslError(f"Invalid YAML format: {exc}") from None
    if not isinstance(data, dict):
        raise DslError("Invalid YAML format: content must be a mapping")
    if not data.get("version"):
        data["version"] = "0.1.0"
    if data.get("kind") != "app":
        data["kind"] = "app"
    version = data["version"]
    if not isinstance(version, str):
        raise DslError(f"Invalid version type, expected str, got {type(version)}")
    status = compatibility(version)
    if not data.get("app"):
        raise DslError("Missing app data in YAML content")
    return AppDsl(data, version, status)


def check_app(dsl: AppDsl, dify: DifyVersion) -> None:
    """What Dify checks when it creates or overwrites the app."""
    mode = dsl.app.get("mode")
    if mode not in APP_MODES:
        raise DslError(f"{mode!r} is not a valid AppMode")
    if mode not in WORKFLOW_MODES:
        return
    if not dsl.data.get("workflow"):
        raise DslError("Missing workflow data for workflow/advanced chat app")
    nodes = [n for n in dsl.graph.get("nodes") or [] if isinstance(n, dict)]
    model = human_input_model(dify.form_input_types)
    for node in nodes:
        data = node.get("data") or {}
        if data.get("type") == "human-input":
            try:
                model.model_validate(data)
            except ValidationError as exc:
                raise DslError(f"Invalid HumanInput node data: {pydantic_message(exc)}") from None
    types = {(n.get("data") or {}).get("type") for n in nodes}
    if "start" in types and any(str(t).startswith("trigger-") for t in types):
        raise DslError("Start node and trigger nodes cannot coexist in the same workflow")


@cache
def human_input_model(input_types: tuple[str, ...]) -> type[BaseModel]:
    """A model named like Dify's, so that its validation messages read the same (fixture 17)."""
    allowed: Any = Literal[input_types]  # type: ignore[valid-type]

    class FormInput(BaseModel):
        model_config = ConfigDict(extra="allow")
        type: allowed
        output_variable_name: str

    class UserAction(BaseModel):
        model_config = ConfigDict(extra="allow")
        id: str
        title: str = ""

    class HumanInputNodeData(BaseModel):
        model_config = ConfigDict(extra="allow")
        form_content: str = ""
        inputs: list[FormInput] = []
        user_actions: list[UserAction] = []
        timeout: int = 36
        timeout_unit: Literal["hour", "day"] = "hour"
        delivery_methods: list[dict] = []

    return HumanInputNodeData
