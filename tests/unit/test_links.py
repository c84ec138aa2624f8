"""Signed decision links and the confirmation page (services/notifier/links.py)."""
from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from services.notifier.links import DecideOutcome, LinkClaim, LinkError, LinkSigner, links_app

SECRET = "link-secret-0123456789-abcdefghijklmnop"
NOW = 1_700_000_000.0


def signer() -> LinkSigner:
    return LinkSigner(SECRET, "https://hitl.example.com/")


def test_valid_link_verifies_to_its_claims():
    link = signer().make_link("cp-1", "alice", "revise", NOW + 600)
    assert link.startswith("https://hitl.example.com/decide/")
    claim = signer().verify(link.rsplit("/", 1)[1], now=NOW)
    assert (claim.checkpoint_id, claim.reviewer, claim.action, claim.form_action) == ("cp-1", "alice", "revise", None)
    assert claim.needs_text and claim.nonce


def test_form_action_is_carried_and_nonces_differ():
    s = signer()
    one, two = (s.verify(s.token("cp-1", "bob", "approve", NOW + 60, form_action="approve_v2"), now=NOW)
                for _ in range(2))
    assert one.form_action == "approve_v2"
    assert one.nonce != two.nonce


def test_expired_link_is_refused():
    token = signer().token("cp-1", "alice", "approve", NOW - 1)
    with pytest.raises(LinkError) as err:
        signer().verify(token, now=NOW)
    assert err.value.code == "expired"


@pytest.mark.parametrize("tamper", ["payload", "mac", "secret"])
def test_tampered_link_is_refused_as_bad_signature(tamper):
    s = signer()
    token = s.token("cp-1", "alice", "approve", NOW + 600)
    payload, mac = token.split(".")
    if tamper == "payload":  # the same claims but abort instead of approve
        other = s.token("cp-1", "alice", "abort", NOW + 600).split(".")[0]
        token = f"{other}.{mac}"
    elif tamper == "mac":
        token = f"{payload}.{mac[:-2]}AA"
    else:
        token = LinkSigner("another-secret-0123456789-abcdefghijk", "https://x").token("cp-1", "alice", "approve",
                                                                                      NOW + 600)
    with pytest.raises(LinkError) as err:
        s.verify(token, now=NOW)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize("token", ["", "abc", "abc.", ".abc"])
def test_malformed_token_is_refused(token):
    with pytest.raises(LinkError) as err:
        signer().verify(token, now=NOW)
    assert err.value.code == "malformed"


def test_short_secret_is_rejected_and_never_shown():
    with pytest.raises(ValueError) as err:
        LinkSigner("short", "https://x")
    assert "short" not in str(err.value)
    assert SECRET not in repr(signer())


class FakeCore:
    """Plays the notifier core: records nonces (single use) and the decisions it would publish."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.decisions: list[tuple[LinkClaim, str | None]] = []

    async def on_decide(self, claim: LinkClaim, text: str | None) -> DecideOutcome:
        if claim.nonce in self.used:
            return DecideOutcome("used")
        self.used.add(claim.nonce)
        self.decisions.append((claim, text))
        return DecideOutcome("decided")


def client(core: FakeCore, now: float | None = None) -> TestClient:
    s = signer()
    return TestClient(links_app(lambda t: s.verify(t, now=now or time.time()), core.on_decide))


def test_get_shows_the_decision_and_never_decides():
    core = FakeCore()
    token = signer().token("cp-9", "alice", "approve", time.time() + 600)
    for _ in range(3):  # a mail scanner, a preview bot, the person
        answer = client(core).get(f"/decide/{token}")
        assert answer.status_code == 200
        assert "cp-9" in answer.text and "alice" in answer.text and 'method="post"' in answer.text
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert client(core).head(f"/decide/{token}").status_code == 200
    assert core.decisions == []


def test_post_decides_once_and_the_second_post_says_used():
    core = FakeCore()
    token = signer().token("cp-9", "alice", "approve", time.time() + 600)
    first = client(core).post(f"/decide/{token}", data={"token": token})
    assert first.status_code == 200 and "recorded" in first.text
    again = client(core).post(f"/decide/{token}", data={"token": token})
    assert again.status_code == 409 and "already used" in again.text
    assert [(c.checkpoint_id, c.action, t) for c, t in core.decisions] == [("cp-9", "approve", None)]


def test_revise_page_has_a_textarea_and_refuses_empty_feedback():
    core = FakeCore()
    token = signer().token("cp-9", "alice", "revise", time.time() + 600)
    assert "<textarea" in client(core).get(f"/decide/{token}").text
    empty = client(core).post(f"/decide/{token}", data={"token": token, "text": "  "})
    assert empty.status_code == 400 and "write feedback" in empty.text
    done = client(core).post(f"/decide/{token}", data={"token": token, "text": "shorter, please"})
    assert done.status_code == 200
    assert core.decisions[0][1] == "shorter, please"


def test_post_without_the_token_in_the_form_is_refused():
    core = FakeCore()
    token = signer().token("cp-9", "alice", "abort", time.time() + 600)
    assert client(core).post(f"/decide/{token}", data={"text": "x"}).status_code == 403
    assert client(core).post(f"/decide/{token}", json={"token": token}).status_code == 415
    assert core.decisions == []


@pytest.mark.parametrize("case,status,words", [("expired", 410, "expired"), ("tampered", 403, "not valid"),
                                               ("malformed", 400, "incomplete")])
def test_unusable_links_are_answered_in_plain_words(case, status, words):
    core = FakeCore()
    s = signer()
    token = {"expired": s.token("cp-9", "alice", "approve", time.time() - 5),
             "tampered": s.token("cp-9", "alice", "approve", time.time() + 600)[:-3] + "abc",
             "malformed": "nodot"}[case]
    for answer in (client(core).get(f"/decide/{token}"), client(core).post(f"/decide/{token}", data={"token": token})):
        assert answer.status_code == status and words in answer.text
    assert core.decisions == []


def test_link_for_one_action_cannot_decide_another():
    core = FakeCore()
    s = signer()
    approve = s.token("cp-9", "alice", "approve", time.time() + 600)
    payload_abort = s.token("cp-9", "alice", "abort", time.time() + 600).split(".")[0]
    forged = f"{payload_abort}.{approve.split('.')[1]}"
    assert client(core).post(f"/decide/{forged}", data={"token": forged}).status_code == 403
    assert core.decisions == []


def test_closed_checkpoint_is_explained():
    async def closed(claim, text):
        return DecideOutcome("closed", "bob approved it at 12:03 UTC")

    s = signer()
    token = s.token("cp-9", "alice", "approve", time.time() + 600)
    answer = TestClient(links_app(s.verify, closed)).post(f"/decide/{token}", data={"token": token})
    assert answer.status_code == 409 and "bob approved it" in answer.text
