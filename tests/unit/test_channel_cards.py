"""From a checkpoint event to a platform-neutral card (services/notifier/channels/cards.py)."""
from __future__ import annotations

import pytest

from services.notifier.channels.base import ButtonStyle, CardState, LinkPolicy
from services.notifier.channels.cards import card_from_checkpoint, outcome_line, pack_value, unpack_value
from tests.fakes.support import OPENED_AT, checkpoint, resolved


def test_open_http_checkpoint_gets_the_four_decisions_and_its_fields():
    card = card_from_checkpoint(checkpoint(), console_url="https://console.example.com/cp/1")
    assert [(b.action, b.needs_text, b.url) for b in card.buttons] == [
        ("approve", False, None), ("revise", True, None), ("edit", True, None), ("abort", False, None),
        ("open", False, "https://console.example.com/cp/1")]
    assert {f.label: f.value for f in card.fields} == {
        "App": "support-bot", "Node": "draft_reply", "Round": "2", "Deadline": "2023-11-14 23:13 UTC",
        "Assignees": "alice, bob"}
    assert card.preview.startswith('{\n  "reply": "Dear customer') and card.state is CardState.open


def test_link_policy_decides_which_buttons_are_links():
    made = []

    def make_link(cid, action, form_action):
        made.append(action)
        return f"https://h/decide/{action}"

    text_only = card_from_checkpoint(checkpoint(), link_policy=LinkPolicy.text, make_link=make_link)
    assert [b.action for b in text_only.buttons if b.is_link] == ["revise", "edit"]
    everything = card_from_checkpoint(checkpoint(), link_policy=LinkPolicy.all, make_link=make_link)
    assert all(b.is_link for b in everything.buttons)
    assert made == ["revise", "edit", "approve", "revise", "edit", "abort"]
    with pytest.raises(ValueError):
        card_from_checkpoint(checkpoint(), link_policy=LinkPolicy.all)


def test_dify_form_checkpoint_offers_its_own_actions_and_edit_for_a_paragraph():
    form = {"form_content": "Check {{#$output.text#}}",
            "inputs": [{"type": "paragraph", "output_variable_name": "text"}],
            "actions": [{"id": "approve", "title": "Looks good", "button_style": "primary"},
                        {"id": "reject", "title": "Reject"}]}
    card = card_from_checkpoint(checkpoint(kind="dify-form", form=form, message=None))
    assert card.message == "Check {{#$output.text#}}"
    got = [(b.action, b.label, b.style, unpack_value(b.value)[2]) for b in card.buttons]
    assert got == [("approve", "Looks good", ButtonStyle.primary, "approve"),
                   ("abort", "Reject", ButtonStyle.danger, "reject"),
                   ("edit", "Edit output…", ButtonStyle.default, None)]


def test_resolved_checkpoint_has_no_buttons_and_says_who_decided_how():
    card = card_from_checkpoint(resolved(checkpoint(), "revise", "bob", "feishu"))
    assert card.buttons == () and card.state is CardState.revised
    assert card.outcome == "Sent back for revision by bob via feishu at 2023-11-14 22:16 UTC"


@pytest.mark.parametrize("status,action,line", [
    ("expired", "abort", "Timed out (abort applied) at 2023-11-14 22:16 UTC"),
    ("cancelled", None, "Cancelled at 2023-11-14 22:16 UTC"),
])
def test_system_endings_have_their_own_lines(status, action, line):
    state, text = outcome_line({"status": status, "action": action, "decided_by": "system",
                                "resolved_at": OPENED_AT + 180})
    assert text == line and state.value == status


def test_button_values_round_trip_and_foreign_values_are_rejected():
    assert unpack_value(pack_value("cp-1", "approve", "ok_v2")) == ("cp-1", "approve", "ok_v2")
    assert unpack_value(pack_value("cp-1", "abort")) == ("cp-1", "abort", None)
    for foreign in ("", "cp-1", "a|b|c|d", "|approve"):
        with pytest.raises(ValueError):
            unpack_value(foreign)
