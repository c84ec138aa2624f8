"""What every node executor gets and returns."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..config import SimConfig
from ..variables import VariablePool

if TYPE_CHECKING:
    from ..forms import FormRegistry
    from ..runs import Run


@dataclass
class NodeContext:
    node: dict
    pool: VariablePool
    run: Run
    http: httpx.AsyncClient
    config: SimConfig
    loop_id: str | None = None
    attempt: int = 0  # 0 for the first try, n for the n-th retry
    trace_id: str = field(default_factory=lambda: secrets.token_hex(16))  # W3C trace id, one per node run
    execution_id: str = ""  # of this node run's node_started; a resumed node announces itself again with it
    forms: FormRegistry | None = None  # where the human-input node opens its form
    resumed: tuple[int, float] | None = None  # (created_at, monotonic) of a paused node's resumption
    iteration_id: str | None = None  # the Iteration this node runs in, like loop_id

    @property
    def in_container(self) -> bool:
        """Inside a Loop or Iteration: its runs do not count in total_steps (fixture 07)."""
        return self.loop_id is not None or self.iteration_id is not None

    @property
    def data(self) -> dict:
        return self.node.get("data") or {}

    @property
    def node_id(self) -> str:
        return self.node["id"]

    def fails_on_error_status(self) -> bool:
        """HTTP node: a non-2xx answer is a failure only when retry or an error strategy is set (DIFY.md)."""
        retry = self.data.get("retry_config") or {}
        return bool(retry.get("retry_enabled")) or bool(self.data.get("error_strategy"))


@dataclass
class NodeResult:
    status: str = "succeeded"  # or "failed"
    inputs: Any = field(default_factory=dict)
    process_data: Any = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    # sourceHandles whose edges are taken on success (if-else: the case id or "false").
    handles: tuple[str, ...] = ("source",)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def failure(error: str, error_type: str, **kwargs: Any) -> NodeResult:
    return NodeResult(status="failed", error=error, error_type=error_type, **kwargs)
