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


# ---------------------------------------------------------------- Dify 1.15+ inputs (select, file, file-list)
NEWER = {"inputs": [{"type": "paragraph", "output_variable_name": "note"},
                    {"type": "select", "output_variable_name": "channel", "options": ["blog", "newsletter"]},
                    {"type": "file", "output_variable_name": "cover", "allowed_file_upload_methods":
                        ["remote_url", "local_file"]},
                    {"type": "file-list", "output_variable_name": "attachments", "max_length": 2}],
         "actions": [{"id": "approve", "title": "Approve"}, {"id": "abort", "title": "Abort"}],
         "resolved_default_values": {"note": "ok"}}
REMOTE = {"transfer_method": "remote_url", "url": "https://example.com/cover.png"}
LOCAL = {"transfer_method": "local_file", "upload_file_id": "up-1", "type": "document"}


def decide_newer(action="approve", form=NEWER, **extra):
    return submission({"form": form}, DecisionSubmitted(checkpoint_id="c", action=action, actor="a", **extra))


def test_select_and_file_inputs_are_submitted_as_dify_takes_them():
    action, inputs = decide_newer(form_inputs={"channel": "blog", "cover": REMOTE, "attachments": [LOCAL, REMOTE]})
    assert action == "approve"
    assert inputs == {"note": "ok", "channel": "blog", "cover": REMOTE, "attachments": [LOCAL, REMOTE]}


@pytest.mark.parametrize("given,words", [
    ({"channel": "tv"}, "not one of its options"),
    ({"cover": "https://example.com/x.png"}, "takes a file"),
    ({"cover": {"transfer_method": "ftp", "url": "ftp://x"}}, "transfer_method"),
    ({"cover": {"transfer_method": "remote_url", "url": "file:///etc/passwd"}}, "http(s) url"),
    ({"cover": {"transfer_method": "local_file"}}, "upload_file_id"),
    ({"attachments": [REMOTE, REMOTE, REMOTE]}, "at most 2 files"),
    ({"attachments": REMOTE}, "JSON list of files"),
    ({"note": {"a": 1}}, "takes text"),
])
def test_values_that_do_not_fit_their_input_type_are_refused_with_the_reason(given, words):
    complete = {"channel": "blog", "cover": REMOTE, "attachments": [REMOTE], **given}
    action, refusal = decide_newer(form_inputs=complete)
    assert action is None and refusal[0] == "invalid_input" and words in refusal[1]


def test_required_select_and_files_without_a_value_are_missing_inputs():
    action, refusal = decide_newer(form_inputs={"channel": "blog"})
    assert action is None and refusal == ("missing_inputs", "inputs without a value: ['cover', 'attachments']")


def test_an_upload_method_the_input_does_not_allow_is_refused():
    form = {**NEWER, "inputs": [{"type": "file", "output_variable_name": "cover",
                                 "allowed_file_upload_methods": ["local_file"]}]}
    action, refusal = decide_newer(form=form, form_inputs={"cover": REMOTE})
    assert action is None and "local_file" in refusal[1]


def test_a_constant_option_source_is_read_as_the_options():
    form = {**NEWER, "inputs": [{"type": "select", "output_variable_name": "tone",
                                 "option_source": {"type": "constant", "value": ["calm", "bold"]}}]}
    assert decide_newer(form=form, form_inputs={"tone": "bold"}) == ("approve", {"tone": "bold"})


def test_an_input_type_we_do_not_know_is_refused_as_unsupported_and_never_crashes():
    form = {**NEWER, "inputs": [{"type": "signature", "output_variable_name": "sig"},
                                {"type": "paragraph", "output_variable_name": "note"}]}
    for action in ("approve", "edit", "abort"):
        extra = {"output": "x", "has_output": True} if action == "edit" else {}
        got, refusal = decide_newer(action, form=form, **extra)
        assert got is None and refusal[0] == "unsupported_input" and "sig (signature)" in refusal[1]


def test_edit_goes_to_the_paragraph_even_when_the_form_has_selects_and_files():
    action, inputs = decide_newer("edit", output="Better", has_output=True,
                                  form_inputs={"channel": "newsletter", "cover": REMOTE, "attachments": [REMOTE]})
    assert action == "approve" and inputs["note"] == "Better" and inputs["channel"] == "newsletter"


def test_text_inputs_take_numbers_as_their_text():
    assert decide("approve", form_inputs={"edited": 42}) == ("approve", {"edited": "42"})
