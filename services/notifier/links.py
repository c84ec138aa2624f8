"""Signed decision links and the confirmation page they open.

A link token binds checkpoint id + reviewer + action (+ a Dify form action) to an expiry and a nonce,
signed with HMAC-SHA256. Opening the link (GET) only shows what would be decided: mail scanners and
link-preview bots fetch links, so only the page's POST decides. The token is the credential: the
form posts it back, and a cross-site page without the token cannot decide. Single use is the
caller's: `on_decide` records the claim's nonce and answers "already used" the second time.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

TEXT_ACTIONS = ("revise", "edit")
MAX_FORM_BYTES = 256 * 1024
LinkErrorCode = Literal["malformed", "bad_signature", "expired"]


class LinkError(Exception):
    def __init__(self, code: LinkErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class LinkClaim:
    checkpoint_id: str
    reviewer: str
    action: str
    expires_at: float
    nonce: str  # record it: a nonce seen before means the link was used
    form_action: str | None = None
    channel: str | None = None  # the channel that carried the link (email, dingtalk, …): the decision's channel

    @property
    def needs_text(self) -> bool:
        return self.action in TEXT_ACTIONS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Makes and verifies link tokens with one secret (at least 32 bytes of it)."""

    def __init__(self, secret: str | bytes, base_url: str, path: str = "/decide") -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 32:
            raise ValueError("the link secret must be at least 32 bytes")
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.path = path

    def __repr__(self) -> str:
        return f"<LinkSigner {self.base_url}{self.path}>"

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, b"hitl-link-v1." + payload.encode(), hashlib.sha256).digest())

    def token(self, checkpoint_id: str, reviewer: str, action: str, expires_at: float,
              form_action: str | None = None, nonce: str | None = None, channel: str | None = None) -> str:
        claims: dict[str, Any] = {"c": checkpoint_id, "r": reviewer, "a": action, "e": int(expires_at),
                                  "n": nonce or secrets.token_urlsafe(12)}
        if form_action:
            claims["f"] = form_action
        if channel:
            claims["ch"] = channel
        payload = _b64(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{payload}.{self._mac(payload)}"

    def make_link(self, checkpoint_id: str, reviewer: str, action: str, expires_at: float,
                  form_action: str | None = None, channel: str | None = None) -> str:
        token = self.token(checkpoint_id, reviewer, action, expires_at, form_action, channel=channel)
        return f"{self.base_url}{self.path}/{token}"

    def verify(self, token: str, now: float | None = None) -> LinkClaim:
        payload, dot, mac = token.partition(".")
        if not dot or not payload or not mac:
            raise LinkError("malformed", "This link is incomplete. Copy the whole link from the message.")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise LinkError("bad_signature", "This link is not valid: it was changed or not made by us.")
        try:
            claims = json.loads(_unb64(payload))
            claim = LinkClaim(str(claims["c"]), str(claims["r"]), str(claims["a"]), float(claims["e"]),
                              str(claims["n"]), claims.get("f"), claims.get("ch"))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise LinkError("malformed", "This link could not be read.") from None
        if (time.time() if now is None else now) > claim.expires_at:
            raise LinkError("expired", "This link has expired. Open the checkpoint in the console, or ask "
                                       "for a new message.")
        return claim


# ---------------------------------------------------------------------- the confirmation page
@dataclass(frozen=True)
class DecideOutcome:
    """What `on_decide` says happened. `status`: decided | used | closed | refused."""

    status: Literal["decided", "used", "closed", "refused"]
    message: str = ""


Verify = Callable[[str], LinkClaim]  # token -> claim, raising LinkError (usually signer.verify)
OnDecide = Callable[[LinkClaim, str | None], Awaitable[DecideOutcome]]
Describe = Callable[[LinkClaim], Awaitable[dict[str, str] | None]]  # extra lines to show (title, output)
OnRefused = Callable[[LinkError], Awaitable[None]]  # a POST with a link that does not verify (to record it)

ACTION_WORDS = {"approve": "approve", "revise": "send back for revision", "edit": "replace the output of",
                "abort": "abort"}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#222}}
textarea{{width:100%;min-height:10rem;font:14px monospace}}button{{font-size:1rem;padding:.5rem 1.2rem}}
.note{{color:#555}}pre{{background:#f4f4f4;padding:.6rem;overflow:auto;max-height:20rem}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",  # the token is in the URL: never hand it to another site
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}
STATUS_FOR_ERROR = {"malformed": 400, "bad_signature": 403, "expired": 410}


def page(title: str, body_html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body_html), status, headers=SECURITY_HEADERS)


def _what(claim: LinkClaim) -> str:
    verb = ACTION_WORDS.get(claim.action, "choose")
    choice = f" with “{html.escape(claim.form_action)}”" if claim.form_action else ""
    return (f"You, <b>{html.escape(claim.reviewer)}</b>, are about to <b>{html.escape(verb)}</b> "
            f"checkpoint <code>{html.escape(claim.checkpoint_id)}</code>{choice}.")


def _form(token: str, claim: LinkClaim, error: str = "", text: str = "") -> str:
    label = {"revise": "Feedback for the next round", "edit": "The new output"}.get(claim.action, "")
    area = (f'<p><label for="text">{label}</label><br><textarea id="text" name="text" required>'
            f"{html.escape(text)}</textarea></p>") if claim.needs_text else ""
    warn = f'<p role="alert"><b>{html.escape(error)}</b></p>' if error else ""
    return (f'<form method="post">{warn}<input type="hidden" name="token" value="{html.escape(token)}">'
            f'{area}<p><button type="submit">Confirm: {html.escape(claim.action)}</button></p></form>'
            '<p class="note">Nothing is decided until you press the button.</p>')


def links_app(verify: Verify, on_decide: OnDecide, describe: Describe | None = None,
              path: str = "/decide", on_refused: OnRefused | None = None) -> Starlette:
    """The confirmation page as a Starlette app: GET `{path}/{token}` shows, POST decides once.
    `on_refused` hears of every POST whose link is malformed, forged or expired (GETs are not
    reported: scanners and previews fetch links, and fetching decides nothing)."""

    async def show(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            claim = verify(token)
        except LinkError as exc:
            return page("Link not usable", f"<p>{html.escape(exc.message)}</p>", STATUS_FOR_ERROR[exc.code])
        extra = await describe(claim) if describe else None
        details = "".join(f"<h2>{html.escape(k)}</h2><pre>{html.escape(v)}</pre>" for k, v in (extra or {}).items())
        return page("Confirm your decision", f"<p>{_what(claim)}</p>{details}{_form(token, claim)}")

    async def decide(request: Request) -> Response:
        token = request.path_params["token"]
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return page("Not accepted", "<p>Use the form on this page to decide.</p>", 415)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_FORM_BYTES:
                return page("Too long", "<p>The text is too long for this page.</p>", 413)
        form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace"), keep_blank_values=True).items()}
        if not hmac.compare_digest(form.get("token", ""), token):
            return page("Not accepted", "<p>This form does not belong to this link. Open the link again.</p>", 403)
        try:
            claim = verify(token)
        except LinkError as exc:
            if on_refused is not None:
                await on_refused(exc)
            return page("Link not usable", f"<p>{html.escape(exc.message)}</p>", STATUS_FOR_ERROR[exc.code])
        text = form.get("text") if claim.needs_text else None
        if claim.needs_text and not (text or "").strip():
            what = "feedback" if claim.action == "revise" else "the new output"
            return page("Confirm your decision", f"<p>{_what(claim)}</p>"
                        + _form(token, claim, f"Please write {what} first."), 400)
        outcome = await on_decide(claim, text)
        if outcome.status == "decided":
            return page("Decision recorded", f"<p>Thank you. Your decision ({html.escape(claim.action)}) "
                                             "was recorded. You can close this page.</p>")
        if outcome.status == "used":
            return page("Link already used", "<p>This link was already used, so it cannot decide again.</p>", 409)
        if outcome.status == "closed":
            return page("Already decided", "<p>This checkpoint is no longer open: "
                                           f"{html.escape(outcome.message or 'it was already decided')}.</p>", 409)
        return page("Not accepted", f"<p>{html.escape(outcome.message or 'The decision was refused.')}</p>", 422)

    return Starlette(routes=[Route(f"{path}/{{token}}", show, methods=["GET"]),
                             Route(f"{path}/{{token}}", decide, methods=["POST"])])
