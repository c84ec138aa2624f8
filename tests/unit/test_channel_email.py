"""Email adapter against a real local SMTP server (aiosmtpd; tests/fakes/smtp.py: AUTH per
RFC 4954, STARTTLS per RFC 3207, RFC 5321 reply codes)."""
from __future__ import annotations

import asyncio
import time

import pytest

from services.notifier.channels.base import CallbackRefused, CallbackRequest, ChannelError, Target
from services.notifier.channels.cards import card_from_checkpoint
from services.notifier.channels.email import EmailChannel
from services.notifier.links import LinkSigner
from tests.fakes.smtp import PASSWORD, USERNAME, LocalSMTP
from tests.fakes.support import assert_no_secrets, capture_logs, checkpoint, resolved

# The fake server requires AUTH without TLS on purpose in most tests (loopback only).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
LINK_SECRET = "link-secret-for-email-tests-0123456789"
SIGNER = LinkSigner(LINK_SECRET, "https://hitl.example.com")
TARGET = Target("email", "alice@example.com", "user")


def card(cp=None):
    return card_from_checkpoint(cp or checkpoint(), link_policy=EmailChannel.link_policy,
                                make_link=lambda c, a, f: SIGNER.make_link(c, "alice", a, time.time() + 3600, f))


def channel(smtp: LocalSMTP, **over) -> EmailChannel:
    settings = {"host": "127.0.0.1", "port": smtp.port, "from_address": "hitl@example.com", "security": "none",
                "username": USERNAME, "password": PASSWORD, "timeout_s": 2.0, **over}
    return EmailChannel(settings, None, "https://hitl.example.com")


def test_send_delivers_html_and_text_with_signed_links():
    cp = checkpoint()
    with LocalSMTP() as smtp:
        ref = asyncio.run(channel(smtp).send(TARGET, card(cp)))
    (got,) = smtp.messages
    msg = got.message
    assert got.recipients == ["alice@example.com"] and msg["Subject"] == "[Review] Review needed: draft_reply"
    assert msg["Message-ID"] == ref.ref["message_id"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Please check the draft <reply> & tone" in text
    assert "Please check the draft &lt;reply&gt; &amp; tone" in html and "<script" not in html
    links = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("  ") and "/decide/" in line]
    claims = [SIGNER.verify(u.rsplit("/", 1)[1]) for u in links]
    assert [c.action for c in claims] == ["approve", "revise", "edit", "abort"]
    assert all(u in html for u in links) and "http" not in html.replace("https://hitl.example.com", "")


def test_update_replies_in_the_same_thread_with_the_outcome_and_no_links():
    cp = checkpoint()

    async def scenario(ch):
        ref = await ch.send(TARGET, card(cp))
        await ch.update(ref, card_from_checkpoint(resolved(cp, "edit", "alice", "email")))
        return ref

    with LocalSMTP() as smtp:
        ref = asyncio.run(scenario(channel(smtp)))
    reply = smtp.messages[1].message
    assert reply["In-Reply-To"] == ref.ref["message_id"] and reply["Subject"].startswith("Re: [Review]")
    text = reply.get_body(("plain",)).get_content()
    assert "Edited by alice via email at" in text and "/decide/" not in text


def test_starttls_with_auth_works_against_a_tls_only_server():
    with LocalSMTP(starttls=True) as smtp:
        asyncio.run(channel(smtp, security="starttls", ca_file=smtp.ca_file).send(TARGET, card()))
        with pytest.raises(ChannelError):  # the server requires STARTTLS before anything else
            asyncio.run(channel(smtp, security="none").send(TARGET, card()))
    assert len(smtp.messages) == 1


def test_bad_password_is_permanent_and_never_repeated():
    with LocalSMTP() as smtp, capture_logs() as logs:
        with pytest.raises(ChannelError) as err:
            asyncio.run(channel(smtp, password="wrong-pass-Zz9").send(TARGET, card()))
    assert (err.value.code, err.value.permanent) == ("auth_failed", True)
    assert_no_secrets(["wrong-pass-Zz9", PASSWORD], err.value, logs)


def test_refused_recipient_permanent_on_5xx_retryable_on_4xx():
    with LocalSMTP() as smtp:
        smtp.handler.refuse_rcpt = {"alice@example.com": "550 5.1.1 No such user",
                                    "bob@example.com": "451 4.3.0 Try again later"}
        with pytest.raises(ChannelError) as gone:
            asyncio.run(channel(smtp).send(TARGET, card()))
        with pytest.raises(ChannelError) as later:
            asyncio.run(channel(smtp).send(Target("email", "bob@example.com"), card()))
    assert (gone.value.code, gone.value.permanent) == ("recipient_refused", True)
    assert later.value.permanent is False


def test_unreachable_and_hanging_servers_are_retryable():
    with LocalSMTP() as smtp:
        port = smtp.port
        smtp.handler.hang_s = 5
        started = time.monotonic()
        with pytest.raises(ChannelError) as hung:
            asyncio.run(channel(smtp, timeout_s=0.5).send(TARGET, card()))
        assert time.monotonic() - started < 4
    with pytest.raises(ChannelError) as down:
        asyncio.run(EmailChannel({"host": "127.0.0.1", "port": port, "from_address": "h@example.com",
                                  "security": "none", "timeout_s": 1}, None, "https://h").send(TARGET, card()))
    assert (hung.value.code, hung.value.permanent) == ("timeout", False)
    assert down.value.permanent is False


def test_email_has_no_callbacks_and_refuses_half_configured_auth():
    with LocalSMTP() as smtp:
        with pytest.raises(CallbackRefused) as err:
            channel(smtp).parse_callback(CallbackRequest("POST", "/", {}, {}, b""))
        with pytest.raises(ValueError) as bad:
            channel(smtp, password=None)
    assert err.value.code == "no_callbacks" and PASSWORD not in str(bad.value)


def test_the_password_appears_in_no_message_or_log():
    with LocalSMTP() as smtp, capture_logs() as logs:
        ref = asyncio.run(channel(smtp).send(TARGET, card()))
    raw = smtp.messages[0].message.as_string()
    assert_no_secrets([PASSWORD, LINK_SECRET], raw, ref, logs, repr(channel(smtp)))
