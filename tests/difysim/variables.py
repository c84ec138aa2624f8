"""The variable pool of one run: node outputs, `sys.*` values and loop variables, addressed by selector."""
from __future__ import annotations

import copy
from typing import Any

MISSING = object()  # distinguishes "no such variable" from a variable holding None


class VariablePool:
    def __init__(self, system: dict[str, Any] | None = None) -> None:
        # {"sys": {...}, "<node id>": {...outputs}, "<loop id>": {...loop variables}}
        self._scopes: dict[str, dict[str, Any]] = {"sys": dict(system or {})}

    def get(self, selector: list[str] | tuple[str, ...], default: Any = MISSING) -> Any:
        """Value at [node_id, name, *path]; nested dict keys / list indexes are followed."""
        if not selector or len(selector) < 2:
            return default
        scope = self._scopes.get(selector[0])
        if scope is None or selector[1] not in scope:
            return default
        value = scope[selector[1]]
        for part in selector[2:]:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and str(part).isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return default
        return value

    def has(self, selector: list[str]) -> bool:
        return self.get(selector) is not MISSING

    def set(self, selector: list[str], value: Any) -> None:
        self._scopes.setdefault(selector[0], {})[selector[1]] = value

    def set_outputs(self, node_id: str, outputs: dict[str, Any]) -> None:
        """A node's outputs replace its previous ones (a node inside a loop runs once per round)."""
        self._scopes[node_id] = dict(outputs)

    def scope(self, node_id: str) -> dict[str, Any]:
        return self._scopes.get(node_id, {})

    def fork(self) -> VariablePool:
        """A copy for one item of a parallel Iteration: it sees everything so far, writes only its own."""
        forked = VariablePool()
        forked._scopes = {name: dict(values) for name, values in self._scopes.items()}
        return forked

    def snapshot(self, node_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._scopes.get(node_id, {}))
