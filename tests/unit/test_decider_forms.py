"""How a decision maps onto a captured Dify form (fixture 09's form), checked before anything is sent."""
from __future__ import annotations

import pytest

from services.decider.forms import submission
from shared.models import DecisionSubmitted, EventType, FormReport

FORM = {"inputs": [{"type": "paragraph", "output_variable_name": "edited"}],
        "actions": [{"id": "approve", "title": "Approve"}, {"id": "revise", "title": "Request revision"},
                    {"id": "abort", "title": "Abort"}],
        "resolved_default_values": {"edited": "Press release"}, "expiration_time": 4102444800}


def decide(action, **extra):
    return submission({"form": FORM}, DecisionSubmitted(checkpoint_id="c", action=action, actor="a", **extra))


def test_the_four_actions_map_to_the_forms_actions_with_defaults_filled_in():
    assert decide("approve") == ("approve", {"edited": "Press release"})
    assert decide("revise", form_inputs={"edited": "more"}) == ("revise", {"edited": "more"})
    assert decide("abort") == ("abort", {"edited": "Press release"})


def test_edit_puts_the_text_in_the_paragraph_input_and_approves():
    assert decide("edit", output="New text", has_output=True) == ("approve", {"edited": "New text"})


@pytest.mark.parametrize("extra,code", [
    (dict(form_action="publish_now"), "unknown_action"),
    (dict(form_inputs={"edited": ""}), "missing_inputs"),
    (dict(form_inputs={"title": "x"}), "unknown_input"),
])
def test_decisions_that_do_not_fit_the_form_are_refused(extra, code):
    action, refusal = decide("approve", **extra)
    assert action is None and refusal[0] == code


def test_a_form_without_a_matching_action_asks_for_one():
    form = {**FORM, "actions": [{"id": "ship", "title": "Ship"}]}
    action, refusal = submission({"form": form}, DecisionSubmitted(checkpoint_id="c", action="approve", actor="a"))
    assert action is None and refusal[0] == "action_required"


def report(outcome, **extra):
    return FormReport(app="demo", workflow_run_id="r", outcome=outcome, **extra)


def _transition(cp, r):
    import time

    from services.decider.forms import _transition as transition

    return transition(cp, r, time.time())


def test_delivery_states_follow_what_the_run_does():
    decided = {"status": "resolved", "delivery": "pending", "action": "approve", "form": FORM}
    assert _transition(decided, report("delivered"))[1] == {"delivery": "delivered"}
    delivered = {**decided, "delivery": "delivered"}
    assert _transition(delivered, report("run_resumed", run_status="running"))[1] == {"delivery": "resumed"}
    assert _transition(delivered, report("run_resumed", run_status="stopped"))[1] == {"delivery": "resumed_as_stopped"}
    assert _transition({**decided, "delivery": "resumed"}, report("run_resumed")) is None  # at-least-once reports


def test_an_open_form_whose_run_moves_on_was_submitted_in_dify_or_expired_there():
    open_form = {"status": "open", "delivery": None, "action": None, "form": FORM}
    kind, values = _transition(open_form, report("run_resumed", run_status="running"))
    assert (kind, values["decided_by"]) == (EventType.resolved, "dify")
    expired = {**open_form, "form": {**FORM, "expiration_time": 1}}
    kind, values = _transition(expired, report("run_resumed", run_status="running"))
    assert (kind, values["status"]) == (EventType.expired, "expired")
