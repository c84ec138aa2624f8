"""Clicks and decision links on the notifier's HTTP server (in memory, the decider beside it): a click
is a decision by the mapped reviewer through the decision plane; refusals are recorded and decide
nothing — bad signature, stale timestamp, a replayed callback, an unknown chat user, a non-assignee,
a link used twice, an expired or forged link."""
from __future__ import annotations

import re
import time

import httpx
import pytest

from services.notifier.channels.cards import pack_value
from services.notifier.links import LinkSigner
from services.notifier.web import create_app
from shared.store import checkpoints as cp_store
from tests.fakes import slack as fake
from tests.unit.notifier_support import LINK_SECRET, PUBLIC_URL, world


def client(w) -> httpx.AsyncClient:
    app = create_app(w.channels, w.decisions, LinkSigner(LINK_SECRET, PUBLIC_URL), body_limit=65536,
                     ready=lambda: {"broker": True, "store": True})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)


async def post_slack(w, payload: dict, **kw) -> httpx.Response:
    request = fake.interaction(payload, **kw)
    async with client(w) as http:
        response = await http.post("/callbacks/slack", content=request.body, headers=dict(request.headers))
    await w.broker.drain()
    return response


def click(cp_id: str, action: str = "approve", user: str = "U0ALICE", action_ts: str = "1700000001.000001") -> dict:
    return fake.block_actions(pack_value(cp_id, action), f"hitl_0_{action}", user=user, action_ts=action_ts)


def decisions_in_history(w, cp_id: str) -> list[dict]:
    with w.db.read() as conn:
        return [h for h in cp_store.history_of(conn, cp_id) if h["kind"] == "decision"]


async def test_a_signed_click_is_a_decision_by_the_mapped_reviewer_and_the_card_then_shows_it(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice"])
        response = await post_slack(w, click(cp["id"]))
        assert response.status_code == 200
        row = w.checkpoint(cp["id"])
        assert (row["status"], row["action"], row["decided_by"], row["decision_channel"]) == (
            "resolved", "approve", "alice", "slack")
        (history,) = decisions_in_history(w, cp["id"])
        assert history["idempotency_key"] == "slack:action:1700000001.000001:U0ALICE"
        (update,) = [c.json for c in w.slack.calls("/api/chat.update")]
        assert "Approved by alice via slack" in update["blocks"][-1]["elements"][0]["text"]
        assert [c["outcome"] for c in w.callbacks(cp["id"])] == ["decided"]


async def test_a_retried_callback_or_a_double_click_decides_once_and_is_recorded_as_replayed(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice"])
        for _ in range(3):
            assert (await post_slack(w, click(cp["id"]))).status_code == 200
        assert len(decisions_in_history(w, cp["id"])) == 1
        assert [c["outcome"] for c in w.callbacks(cp["id"])] == ["decided", "replayed", "replayed"]
        assert w.slack.ephemerals == []


@pytest.mark.parametrize("how,code", [("secret", "bad_signature"), ("stale", "stale_timestamp")])
async def test_a_forged_or_stale_callback_is_refused_recorded_and_decides_nothing(sqlite_url, how, code):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice"])
        kw = {"secret": "not-the-signing-secret"} if how == "secret" else {"timestamp": time.time() - 301}
        response = await post_slack(w, click(cp["id"]), **kw)
        assert response.status_code == 401 and response.json()["error"]["code"] == code
        assert fake.SIGNING_SECRET not in response.text
        assert w.checkpoint(cp["id"])["status"] == "open"
        assert [(c["outcome"], c["code"]) for c in w.callbacks()] == [("refused", code)]


async def test_a_chat_user_mapped_to_no_reviewer_is_told_and_nothing_is_decided(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open()
        assert (await post_slack(w, click(cp["id"], user="U0STRANGER"))).status_code == 200
        assert w.checkpoint(cp["id"])["status"] == "open"
        (told,) = w.slack.ephemerals
        assert told["user"] == "U0STRANGER" and "not linked to a dify-hitl reviewer" in told["text"]
        assert '"slack": "U0STRANGER"' in told["text"]
        assert [(c["outcome"], c["code"]) for c in w.callbacks(cp["id"])] == [("refused", "unknown_user")]


async def test_a_non_assignee_click_is_refused_by_the_decider_and_the_reply_says_why(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open(assignees=["alice"])
        await post_slack(w, click(cp["id"], user="U0BOB"))
        assert w.checkpoint(cp["id"])["status"] == "open"
        (told,) = w.slack.ephemerals
        assert told["user"] == "U0BOB" and "bob is not among the assignees" in told["text"]
        assert [(c["outcome"], c["code"]) for c in w.callbacks(cp["id"])] == [("rejected", "not_assignee")]
        (attempt,) = decisions_in_history(w, cp["id"])
        assert (attempt["outcome"], attempt["actor"], attempt["channel"]) == ("rejected", "bob", "slack")


async def test_a_reviewer_outside_the_app_decides_nothing(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open()
        await post_slack(w, click(cp["id"], user="U0DAVE"))  # dave is granted no app
        assert w.checkpoint(cp["id"])["status"] == "open"
        assert [(c["outcome"], c["code"]) for c in w.callbacks(cp["id"])] == [("rejected", "not_found")]


async def test_a_click_on_a_decided_checkpoint_says_who_decided_first(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open()
        await post_slack(w, click(cp["id"], "abort", user="U0BOB", action_ts="1.1"))
        await post_slack(w, click(cp["id"], user="U0ALICE", action_ts="2.2"))
        (told,) = w.slack.ephemerals
        assert told["user"] == "U0ALICE" and "Already decided: Aborted by bob via slack at" in told["text"]


async def test_revise_opens_a_modal_and_its_text_goes_back_as_the_feedback(sqlite_url):
    async with world(sqlite_url) as w:
        cp = await w.open()
        trigger = w.slack.issue_trigger()
        payload = fake.block_actions(pack_value(cp["id"], "revise"), "hitl_1_revise", trigger_id=trigger)
        assert (await post_slack(w, payload)).status_code == 200
        (view,) = w.slack.views
        await post_slack(w, fake.view_submission(view, "mention the new API"))
        row = w.checkpoint(cp["id"])
        assert (row["action"], row["feedback"], row["decided_by"]) == ("revise", "mention the new API", "alice")


async def test_an_unknown_channel_and_an_oversized_body_get_clear_errors(sqlite_url):
    async with world(sqlite_url) as w, client(w) as http:
        missing = await http.post("/callbacks/teams", content=b"{}")
        huge = await http.post("/callbacks/slack", content=b"x" * 70000)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        assert (huge.status_code, huge.json()["error"]["code"]) == (413, "body_too_large")


# ---------------------------------------------------------------------- decision links
def links_of(w) -> dict[str, str]:
    return {a["action"]: a["url"] for a in w.receiver.accepted[0]["actions"]}


async def test_opening_a_link_decides_nothing_and_only_its_form_post_decides_once(sqlite_url):
    async with world(sqlite_url) as w, client(w) as http:
        cp = await w.open()
        url = links_of(w)["approve"]
        for _ in range(2):  # a mail scanner, a link preview
            page = await http.get(url)
            assert page.status_code == 200 and "Confirm your decision" in page.text and "a draft" in page.text
        assert w.checkpoint(cp["id"])["status"] == "open"
        token = url.rsplit("/", 1)[1]
        form = {"token": token}
        first = await http.post(url, data=form)
        await w.broker.drain()
        assert first.status_code == 200 and "Decision recorded" in first.text
        row = w.checkpoint(cp["id"])
        assert (row["status"], row["decided_by"], row["decision_channel"]) == ("resolved", "alice", "webhook")
        again = await http.post(url, data=form)
        assert again.status_code == 409 and "already used" in again.text
        assert [(c["outcome"], c["code"]) for c in w.callbacks(cp["id"])] == [
            ("decided", None), ("refused", "link_used")]
        assert len(decisions_in_history(w, cp["id"])) == 1


async def test_a_revise_link_needs_its_text_and_sends_it_as_feedback(sqlite_url):
    async with world(sqlite_url) as w, client(w) as http:
        cp = await w.open()
        url = links_of(w)["revise"]
        token = url.rsplit("/", 1)[1]
        empty = await http.post(url, data={"token": token, "text": " "})
        assert empty.status_code == 400 and w.checkpoint(cp["id"])["status"] == "open"
        done = await http.post(url, data={"token": token, "text": "shorter"})
        await w.broker.drain()
        assert done.status_code == 200 and w.checkpoint(cp["id"])["feedback"] == "shorter"


async def test_a_link_to_a_decided_checkpoint_says_it_is_closed(sqlite_url):
    async with world(sqlite_url) as w, client(w) as http:
        cp = await w.open()
        approve, abort = links_of(w)["approve"], links_of(w)["abort"]
        await http.post(abort, data={"token": abort.rsplit("/", 1)[1]})
        late = await http.post(approve, data={"token": approve.rsplit("/", 1)[1]})
        assert late.status_code == 409 and "Aborted by alice via webhook" in late.text
        assert w.checkpoint(cp["id"])["action"] == "abort"


@pytest.mark.parametrize("kind,status,code", [("expired", 410, "link_expired"), ("forged", 403, "link_bad_signature")])
async def test_an_expired_or_forged_link_is_refused_and_recorded(sqlite_url, kind, status, code):
    async with world(sqlite_url) as w, client(w) as http:
        cp = await w.open()
        signer = LinkSigner(LINK_SECRET if kind == "expired" else "another-secret-0123456789abcdefghij", PUBLIC_URL)
        url = signer.make_link(cp["id"], "alice", "approve", time.time() - (5 if kind == "expired" else -600))
        response = await http.post(url, data={"token": url.rsplit("/", 1)[1]})
        assert response.status_code == status
        assert w.checkpoint(cp["id"])["status"] == "open"
        assert [(c["outcome"], c["code"]) for c in w.callbacks()] == [("refused", code)]


async def test_a_form_from_another_page_cannot_decide(sqlite_url):
    async with world(sqlite_url) as w, client(w) as http:
        cp = await w.open()
        url = links_of(w)["approve"]
        response = await http.post(url, data={"token": "someone-elses-token"})
        assert response.status_code == 403 and w.checkpoint(cp["id"])["status"] == "open"


async def test_links_carry_no_secret_and_no_form_token(sqlite_url):
    async with world(sqlite_url) as w:
        await w.open()
        text = str(w.receiver.accepted[0])
        for secret in (LINK_SECRET, fake.BOT_TOKEN, fake.SIGNING_SECRET):
            assert secret not in text
        token = links_of(w)["approve"].rsplit("/", 1)[1]
        assert re.fullmatch(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", token)
