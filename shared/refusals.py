"""Why a decision was refused: one enum, with the HTTP status each answers (README "Errors")."""
from __future__ import annotations

from enum import StrEnum


class Refusal(StrEnum):
    not_found = "not_found"  # no such checkpoint — or not one the actor may see (never say which)
    already_resolved = "already_resolved"
    ambiguous = "ambiguous"  # (run, node) names open checkpoints of several apps: name the checkpoint id
    feedback_required = "feedback_required"
    max_rounds_reached = "max_rounds_reached"
    output_required = "output_required"
    not_assignee = "not_assignee"
    self_approval = "self_approval"
    already_voted = "already_voted"  # one vote per reviewer in a quorum
    quorum_edit = "quorum_edit"  # an edit cannot be voted on: revise instead
    not_claimable = "not_claimable"  # claim/release/reassign that does not fit
    unknown_action = "unknown_action"  # a Dify form: no such user action
    action_required = "action_required"
    unknown_input = "unknown_input"
    missing_inputs = "missing_inputs"
    no_editable_input = "no_editable_input"
    unsupported_input = "unsupported_input"
    invalid_input = "invalid_input"
    expired = "expired"  # a parked decision whose checkpoint never opened

    @property
    def status(self) -> int:
        return _STATUS.get(self, 422)


_STATUS = {Refusal.not_found: 404, Refusal.already_resolved: 409, Refusal.ambiguous: 409, Refusal.expired: 410,
           Refusal.already_voted: 409}


def status_of(code: str | None) -> int:
    """The HTTP status for a refusal code as it travels in a Reply (a string)."""
    if code is None:
        return 422
    try:
        return Refusal(code).status
    except ValueError:
        return 422
