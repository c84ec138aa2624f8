"""Decision policies: who must agree and what happens in time. An app's `policy` in HITL_APPS sets
the defaults; a checkpoint call's body overrides them field by field; the result is snapshotted on
the checkpoint when it opens (`Policy.snapshot`), so a later change of settings never changes an
open checkpoint.

- approval: any (one approve resolves) | all | majority | m_of_n (`m`), over the electorate — the
  assignees with groups expanded to their members at open (or, without assignees, the reviewers
  granted the app). One vote per reviewer. `reject_wins` (default): one revise or abort resolves at
  once; otherwise rejects only resolve when the quorum can no longer be reached.
- no_self_approval: the reviewer mapped to the Dify end user who started the run (`end_users` of a
  reviewer) may not approve or edit.
- remind_every_s, warn_before_s, escalate: durable timers (checkpoint.reminder,
  checkpoint.deadline_near, checkpoint.escalated; an escalation step adds assignees or applies
  approve / abort / default as a decision by `policy`, reason `escalation`).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ApprovalMode = Literal["any", "all", "majority", "m_of_n"]


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: ApprovalMode = "any"
    m: int | None = Field(default=None, ge=1, le=100)
    reject_wins: bool = True

    @model_validator(mode="after")
    def _m_goes_with_m_of_n(self) -> Approval:
        if self.mode == "m_of_n" and self.m is None:
            raise ValueError("m_of_n needs m (how many approvals)")
        if self.mode != "m_of_n" and self.m is not None:
            raise ValueError(f"m is for mode m_of_n, not {self.mode}")
        return self

    def required(self, electorate: int) -> int:
        """Approvals needed out of `electorate` voters (at least one)."""
        n = max(electorate, 1)
        if self.mode == "all":
            return n
        if self.mode == "majority":
            return n // 2 + 1
        if self.mode == "m_of_n":
            return min(self.m or 1, n)
        return 1


class EscalationStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_s: float = Field(gt=0, le=30 * 24 * 3600)
    add_assignees: list[str] = Field(default_factory=list, max_length=50)
    apply: Literal["approve", "abort", "default"] | None = None

    @model_validator(mode="after")
    def _does_something(self) -> EscalationStep:
        if not self.add_assignees and self.apply is None:
            raise ValueError("an escalation step adds assignees or applies a decision")
        return self


class Policy(BaseModel):
    """The policy fields, all optional: an app's defaults or a checkpoint call's overrides."""

    model_config = ConfigDict(extra="forbid")

    approval: Approval | None = None
    no_self_approval: bool | None = None
    remind_every_s: float | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    warn_before_s: float | None = Field(default=None, gt=0, le=30 * 24 * 3600)
    escalate: list[EscalationStep] | None = Field(default=None, max_length=10)

    def over(self, defaults: Policy | None) -> Policy:
        """These fields where set, the defaults' elsewhere."""
        base = defaults.model_dump(exclude_none=True) if defaults else {}
        return Policy.model_validate({**base, **self.model_dump(exclude_none=True)})

    def longest_wait_s(self) -> float:
        return max((s.after_s for s in self.escalate or []), default=0.0)


def snapshot(policy: Policy, *, assignees: list[str], electorate: list[str], delegated: dict[str, str],
             app: str) -> dict[str, Any]:
    """What is stored on the checkpoint at open: the effective policy, resolved."""
    approval = policy.approval or Approval()
    return {"app": app, "approval": approval.model_dump(), "required": approval.required(len(electorate)),
            "assignees": assignees, "electorate": electorate, "delegated": delegated,
            "no_self_approval": bool(policy.no_self_approval), "remind_every_s": policy.remind_every_s,
            "warn_before_s": policy.warn_before_s,
            "escalate": [s.model_dump(exclude_none=True) for s in policy.escalate or []]}
