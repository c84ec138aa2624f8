"""Dify form checkpoints (native Human Input) in the notifier: the card offers the form's own actions,
a click submits the chosen one, and the form token — a secret — is in no card, payload or link."""
from __future__ import annotations

import json
import time
import uuid

from services.notifier.channels.cards import pack_value
from shared.models import CheckpointRequested
from shared.store import checkpoints as cp_store
from shared.topology import CHECKPOINT_REQUESTED
from tests.fakes import slack as fake
from tests.unit.notifier_support import world
from tests.unit.test_notifier_callbacks import post_slack

FORM_TOKEN = "hIdvldjxc23xTU6LqFv6aE"
FORM = {"form_id": "f-1", "node_title": "Review", "form_content": "## Review the draft\n\n{{#$output.edited#}}",
        "inputs": [{"type": "paragraph", "output_variable_name": "edited"}],
        "actions": [{"id": "approve", "title": "Approve", "button_style": "primary"},
                    {"id": "publish_now", "title": "Publish now", "button_style": "accent"},
                    {"id": "reject", "title": "Reject", "button_style": "ghost"}],
        "resolved_default_values": {"edited": "The draft text"}, "expiration_time": time.time() + 3600}


async def open_form(w) -> dict:
    req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id="review", kind="dify-form",
                              form=FORM, form_token=FORM_TOKEN, timeout_s=3600, max_rounds=1, message="Review")
    await w.broker.publish(w.names.commands, CHECKPOINT_REQUESTED, req.to_bytes(), message_id=req.id)
    await w.broker.drain()
    with w.db.read() as conn:
        cp = cp_store.latest(conn, "demo", req.workflow_run_id, "review")
    assert cp is not None
    return cp


async def test_a_form_card_offers_the_forms_actions_and_a_click_submits_the_chosen_one(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await open_form(w)
        (card,) = w.slack.posted
        buttons = next(b for b in card["blocks"] if b["type"] == "actions")["elements"]
        assert [(b["text"]["text"], b["value"]) for b in buttons] == [
            ("Approve", pack_value(cp["id"], "approve", "approve")),
            ("Publish now", pack_value(cp["id"], "approve", "publish_now")),
            ("Reject", pack_value(cp["id"], "abort", "reject")),
            ("Edit output…", pack_value(cp["id"], "edit"))]
        assert "The draft text" in json.dumps(card)  # the form's values, as Dify resolved them
        payload = fake.block_actions(pack_value(cp["id"], "approve", "publish_now"), "hitl_1_approve")
        assert (await post_slack(w, payload)).status_code == 200
        row = w.checkpoint(cp["id"])
        assert (row["status"], row["decided_by"], row["decision_channel"]) == ("resolved", "alice", "slack")
        assert row["output"] == {"action": "publish_now", "inputs": {"edited": "The draft text"}}


async def test_the_form_token_is_in_no_card_payload_or_link(sqlite_url):
    async with world(sqlite_url) as w:
        await open_form(w)
        seen = json.dumps(w.slack.posted) + json.dumps(w.receiver.accepted)
        assert w.receiver.accepted and FORM_TOKEN not in seen
        for action in w.receiver.accepted[0]["actions"]:
            page = action["url"].rsplit("/", 1)[1]
            assert FORM_TOKEN not in page
