"""A Dify DSL file (an app export) loaded for editing and written back.

ruamel.yaml's round-trip mode keeps what we do not touch byte for byte: key order, quoting,
anchors, comments, line folding and unknown fields (the tests load and dump every recorded export of
fixture 17 and compare the text). Dify writes its exports with PyYAML (`yaml.dump`, keys sorted,
width 80, `null` for None); ruamel's defaults already fold at 80 columns, and None is written as
`null` here so that a value we copy keeps the spelling Dify uses.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

# DSL versions real Dify 1.14.1 imported at once (fixture 17: "completed" or "completed-with-warnings").
# Newer ones (0.6.1, 0.7.0, 1.0.0) are held "pending" for a confirmation: their node shapes are unknown.
KNOWN_VERSIONS = ("0.1.0", "0.5.0", "0.6.0")
CURRENT_VERSION = "0.6.0"
WORKFLOW_MODES = ("workflow", "advanced-chat")


class DslError(Exception):
    """The file is not a DSL we can edit; the message says why and what would fix it."""


def _yaml() -> YAML:
    y = YAML()  # round-trip
    y.preserve_quotes = True
    y.representer.add_representer(type(None), lambda r, _d: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


@dataclass
class Document:
    """The parsed file. `data` is ruamel's mapping: edit it in place and `dump()` writes it back."""

    data: CommentedMap

    @property
    def version(self) -> str:
        return str(self.data.get("version"))

    @property
    def mode(self) -> str:
        return str((self.data.get("app") or {}).get("mode"))

    @property
    def workflow(self) -> CommentedMap:
        return self.data["workflow"]

    @property
    def graph(self) -> CommentedMap:
        return self.workflow["graph"]

    @property
    def nodes(self) -> CommentedSeq:
        return self.graph["nodes"]

    @property
    def edges(self) -> CommentedSeq:
        return self.graph["edges"]

    def plain_graph(self) -> dict[str, Any]:
        """The graph as plain JSON-able data (what the simulator's /_sim/apps takes)."""
        return to_plain(self.graph)

    def environment_variables(self) -> CommentedSeq:
        wf = self.workflow
        if wf.get("environment_variables") is None:
            wf["environment_variables"] = CommentedSeq()
        return wf["environment_variables"]

    def set_secret(self, name: str, value: str, description: str, new_id: str) -> bool:
        """Create (or update) a secret environment variable; True when it was created.

        Dify's export blanks a secret's value (fixture 17: include_secret=false) while it keeps an HTTP
        node's bearer key in clear text, which is why the checkpoint token lives here."""
        variables = self.environment_variables()
        for var in variables:
            if var.get("name") == name:
                var["value_type"] = "secret"
                if value:
                    var["value"] = value
                return False
        # No `selector`: Dify's import derives ["env", name] from the name (factories/variable_factory.py).
        variables.append(to_yaml({"description": description, "id": new_id, "name": name, "value": value,
                                  "value_type": "secret"}))
        return True

    def dump(self) -> str:
        out = io.StringIO()
        _yaml().dump(self.data, out)
        return out.getvalue()


def load(text: str) -> Document:
    """Parse a DSL export; refuse what Dify would refuse, and versions whose shapes we do not know."""
    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise DslError(f"not valid YAML: {exc}") from None
    if not isinstance(data, CommentedMap):  # the round-trip loader's mapping: every mapping it reads is one
        raise DslError("the file must be a mapping (a Dify app export), not a list or a scalar")
    check_version(data.get("version"))
    app = data.get("app")
    if not isinstance(app, dict):
        raise DslError("no `app:` section: this is not a Dify app export")
    if app.get("mode") not in WORKFLOW_MODES:
        raise DslError(f"app mode {app.get('mode')!r} has no workflow graph "
                       f"(expected one of {', '.join(WORKFLOW_MODES)})")
    workflow = data.get("workflow")
    if not isinstance(workflow, dict) or not isinstance(workflow.get("graph"), dict):
        raise DslError("no `workflow.graph` section: export the app again from Dify")
    graph = workflow["graph"]
    for key in ("nodes", "edges"):
        if graph.get(key) is None:
            graph[key] = CommentedSeq()
        if not isinstance(graph[key], list):
            raise DslError(f"workflow.graph.{key} must be a list")
    return Document(data)


def check_version(version: Any) -> None:
    known = ", ".join(KNOWN_VERSIONS)
    if version is None:
        raise DslError(f"the file has no `version:`; Dify would read it as 0.1.0. Add the version the export "
                       f"was made with (known: {known})")
    if not isinstance(version, str):
        # Dify refuses it too: "Invalid version type, expected str, got <class 'float'>" (fixture 17).
        kind = next((t.__name__ for t in (bool, int, float, list, dict) if isinstance(version, t)), "value")
        raise DslError(f"version {version!r} is a {kind}, not a string: quote it "
                       f"(version: '{version}'); known versions: {known}")
    if version not in KNOWN_VERSIONS:
        raise DslError(f"DSL version {version} is not one we know (known: {known}; Dify 1.14.1 writes "
                       f"{CURRENT_VERSION}). Export the app from a Dify that writes a known version.")


def load_file(path: str) -> Document:
    try:
        with open(path, encoding="utf-8") as fh:
            return load(fh.read())
    except OSError as exc:
        raise DslError(f"cannot read {path}: {exc.strerror}") from None


def to_yaml(value: Any) -> Any:
    """Plain data -> ruamel containers, keys sorted as Dify's export sorts them."""
    if isinstance(value, dict):
        m = CommentedMap()
        for key in sorted(value):
            m[key] = to_yaml(value[key])
        return m
    if isinstance(value, (list, tuple)):
        return CommentedSeq(to_yaml(v) for v in value)
    return value


def to_plain(value: Any) -> Any:
    """ruamel containers (and scalar subclasses such as quoted strings) -> plain Python data."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value
