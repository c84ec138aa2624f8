"""Email over SMTP (aiosmtplib): an HTML + plain-text message whose decision buttons are signed
links to the confirmation page; the outcome follows as a reply in the same thread (mail cannot be
edited once sent).

Docs followed: RFC 5321 (SMTP; 4xx = try again, 5xx = permanent), RFC 3207 (STARTTLS), RFC 8314
(implicit TLS on 465), RFC 4954 (AUTH), RFC 2046 multipart/alternative, RFC 5322 Message-ID /
In-Reply-To / References for threading; aiosmtplib's `send()` API (hostname, port, username,
password, use_tls, start_tls, timeout, cert_bundle).
"""
from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from services.notifier.channels.base import (
    ButtonStyle,
    CallbackRefused,
    CallbackRequest,
    CallbackResult,
    Card,
    Channel,
    ChannelError,
    Click,
    LinkPolicy,
    MessageRef,
    Target,
    log,
    truncate,
)

PREVIEW_LIMIT = 20_000
COLORS = {ButtonStyle.primary: "#1a7f37", ButtonStyle.danger: "#cf222e", ButtonStyle.default: "#57606a"}


def render_text(card: Card) -> str:
    lines = [card.title, "=" * len(card.title), ""]
    if card.message:
        lines += [card.message, ""]
    lines += [f"{f.label}: {f.value}" for f in card.fields]
    if card.preview:
        lines += ["", "Output:", truncate(card.preview, PREVIEW_LIMIT)]
    if card.resolved:
        lines += ["", card.outcome or card.state.value]
    else:
        lines += ["", "Decide (each link opens a confirmation page; nothing is decided until you confirm):"]
        lines += [f"  {b.label}: {b.url}" for b in card.buttons if b.url]
    return "\n".join(lines) + "\n"


def render_html(card: Card) -> str:
    esc = html.escape
    rows = "".join(f"<tr><td style='padding:2px 12px 2px 0;color:#57606a'>{esc(f.label)}</td>"
                   f"<td>{esc(f.value)}</td></tr>" for f in card.fields)
    parts = [f"<h2 style='margin:0 0 8px'>{esc(card.title)}</h2>"]
    if card.message:
        parts.append(f"<p>{esc(card.message)}</p>")
    parts.append(f"<table style='border-collapse:collapse;font-size:14px'>{rows}</table>")
    if card.preview:
        parts.append("<pre style='background:#f6f8fa;padding:8px;white-space:pre-wrap'>"
                     f"{esc(truncate(card.preview, PREVIEW_LIMIT))}</pre>")
    if card.resolved:
        parts.append(f"<p><b>{esc(card.outcome or card.state.value)}</b></p>")
    else:
        parts.append("<p>" + " ".join(
            f"<a href='{esc(b.url, quote=True)}' style='display:inline-block;margin:4px 8px 4px 0;padding:8px 16px;"
            f"border-radius:6px;color:#fff;background:{COLORS[b.style]};text-decoration:none'>{esc(b.label)}</a>"
            for b in card.buttons if b.url) + "</p>")
        parts.append("<p style='color:#57606a;font-size:12px'>Each button opens a confirmation page; nothing is "
                     "decided until you confirm there.</p>")
    return ("<!doctype html><html><body style='font-family:system-ui,sans-serif;color:#1f2328'>"
            + "".join(parts) + "</body></html>")


class EmailChannel(Channel):
    name = "email"
    link_policy = LinkPolicy.all
    required_settings = ("host", "port", "from_address")
    optional_settings = ("username", "password", "security", "timeout_s", "ca_file", "subject_prefix")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.settings.get("security", "starttls") not in ("starttls", "ssl", "none"):
            raise ValueError("email channel: security must be starttls, ssl or none")
        if bool(self.settings.get("username")) != bool(self.settings.get("password")):
            raise ValueError("email channel: username and password go together")

    def _message(self, to: str, subject: str, card: Card) -> EmailMessage:
        msg = EmailMessage()
        domain = str(self.settings["from_address"]).rpartition("@")[2] or "localhost"
        msg["From"] = str(self.settings["from_address"])
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid("hitl", domain=domain)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: autoresponders stay quiet
        msg.set_content(render_text(card))
        msg.add_alternative(render_html(card), subtype="html")
        return msg

    async def _deliver(self, msg: EmailMessage) -> None:
        security = self.settings.get("security", "starttls")
        try:
            await aiosmtplib.send(
                msg, hostname=str(self.settings["host"]), port=int(self.settings["port"]),
                username=self.settings.get("username") or None, password=self.settings.get("password") or None,
                use_tls=security == "ssl", start_tls=security == "starttls", timeout=self.timeout.read,
                cert_bundle=self.settings.get("ca_file") or None)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise ChannelError(self.name, "recipient_refused", f"the server refused the recipient ({codes})",
                               permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ChannelError(self.name, "auth_failed", f"the server refused the login ({exc.code})",
                               permanent=True) from None
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPConnectTimeoutError):
            raise ChannelError(self.name, "timeout", "the mail server did not answer in time") from None
        except aiosmtplib.SMTPResponseException as exc:  # 4xx: try again later; 5xx: it will not work
            raise ChannelError(self.name, f"smtp_{exc.code}", f"the mail server answered {exc.code}",
                               permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("channel.call_failed", channel=self.name, reason=type(exc).__name__)
            raise ChannelError(self.name, "unreachable",
                               f"could not talk to the mail server ({type(exc).__name__})") from None

    async def send(self, target: Target, card: Card) -> MessageRef:
        if not card.resolved and card.buttons and not any(b.url for b in card.buttons):
            raise ValueError("an email card needs link buttons (card_from_checkpoint with LinkPolicy.all)")
        prefix = str(self.settings.get("subject_prefix") or "[Review]")
        subject = f"{prefix} {card.title}"
        msg = self._message(target.address, subject, card)
        await self._deliver(msg)
        log.info("channel.sent", channel=self.name, checkpoint_id=card.checkpoint_id)
        return MessageRef(self.name, target, {"message_id": msg["Message-ID"], "subject": subject})

    async def update(self, ref: MessageRef, card: Card, click: Click | None = None) -> MessageRef:
        msg = self._message(ref.target.address, f"Re: {ref.ref.get('subject') or card.title}", card)
        msg["In-Reply-To"] = ref.ref["message_id"]
        msg["References"] = ref.ref["message_id"]
        await self._deliver(msg)
        return ref

    def parse_callback(self, request: CallbackRequest, now: float | None = None) -> CallbackResult:
        raise CallbackRefused("no_callbacks", "email decisions arrive through the signed links", 404)
