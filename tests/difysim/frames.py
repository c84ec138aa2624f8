"""Where a node runs: top level (no frame) or one round of a Loop / one item of an Iteration."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .variables import VariablePool


@dataclass(frozen=True)
class Frame:
    container_id: str
    kind: Literal["loop", "iteration"]
    index: int  # 0-based round or item
    pool: VariablePool  # a parallel Iteration gives each item its own copy
    parent: Frame | None = None

    def nearest(self, kind: str) -> Frame | None:
        frame: Frame | None = self
        while frame is not None and frame.kind != kind:
            frame = frame.parent
        return frame

    @property
    def loop_id(self) -> str | None:
        frame = self.nearest("loop")
        return frame.container_id if frame else None

    @property
    def iteration_id(self) -> str | None:
        frame = self.nearest("iteration")
        return frame.container_id if frame else None

    def metadata(self) -> dict:
        """execution_metadata of a child's node_finished: loop_id/loop_index (fixture 07), iteration_id/_index."""
        outer = self.parent.metadata() if self.parent else {}
        return {**outer, f"{self.kind}_id": self.container_id, f"{self.kind}_index": self.index}
