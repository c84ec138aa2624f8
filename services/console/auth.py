"""Sign-in: reviewers from the configuration, a signed session cookie, a CSRF token per session.

The cookie is `<payload>.<hmac>` (HMAC-SHA256 with HITL_CONSOLE_SECRET): the reviewer's name, the
session's CSRF token, an expiry, and a fingerprint of the reviewer's credentials, so that changing a
password or token (or removing the reviewer) ends their sessions. HttpOnly, SameSite=Lax.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from services.console.config import ConsoleSettings
from shared.passwords import hash_password, verify_password
from shared.settings import ReviewerConfig, Settings

COOKIE = "hitl_console"
LOGIN_COOKIE = "hitl_console_login"  # the sign-in form's CSRF nonce (there is no session yet)
PUBLIC = ("/login", "/static/", "/healthz", "/readyz", "/metrics", "/favicon.ico")
_DUMMY_HASH = hash_password("not a password", iterations=200_000, salt="0" * 32)


@dataclass(frozen=True)
class Session:
    reviewer: ReviewerConfig
    csrf: str
    expires: float

    @property
    def name(self) -> str:
        return self.reviewer.name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, settings: Settings, console: ConsoleSettings) -> None:
        self.settings = settings
        self.console = console
        self.key = console.secret.encode()
        self.failures: dict[str, deque[float]] = {}

    # ------------------------------------------------------------------ signing
    def _sign(self, purpose: str, payload: dict) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        mac = hmac.new(self.key, f"{purpose}|{body}".encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def _unsign(self, purpose: str, value: str | None) -> dict | None:
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        expected = _b64(hmac.new(self.key, f"{purpose}|{body}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            data = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(data, dict) or float(data.get("e", 0)) < time.time():
            return None
        return data

    @staticmethod
    def fingerprint(reviewer: ReviewerConfig) -> str:
        return hashlib.sha256(f"{reviewer.token}\0{reviewer.password_hash or ''}".encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ sessions
    def issue(self, reviewer: ReviewerConfig) -> str:
        expires = time.time() + self.console.session_hours * 3600
        return self._sign("session", {"n": reviewer.name, "c": secrets.token_urlsafe(24), "e": expires,
                                      "f": self.fingerprint(reviewer)})

    def read(self, request: Request) -> Session | None:
        data = self._unsign("session", request.cookies.get(COOKIE))
        if data is None:
            return None
        reviewer = self.settings.reviewer(str(data.get("n")))
        if reviewer is None or not hmac.compare_digest(str(data.get("f")), self.fingerprint(reviewer)):
            return None
        return Session(reviewer, str(data["c"]), float(data["e"]))

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                            secure=self.console.secure_cookie, path="/")

    def start(self, response: Response, reviewer: ReviewerConfig) -> None:
        self.set_cookie(response, COOKIE, self.issue(reviewer), int(self.console.session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/")

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")

    # ------------------------------------------------------------------ sign-in form
    def login_nonce(self) -> tuple[str, str]:
        """(cookie value, form value): a double-submit token against login CSRF."""
        nonce = secrets.token_urlsafe(18)
        return self._sign("login", {"c": nonce, "e": time.time() + 3600}), nonce

    def login_nonce_ok(self, request: Request, supplied: str | None) -> bool:
        data = self._unsign("login", request.cookies.get(LOGIN_COOKIE))
        return bool(data and supplied and hmac.compare_digest(str(data["c"]), supplied))

    def check_password(self, name: str, password: str) -> ReviewerConfig | None:
        """The reviewer when the password is theirs (their password hash, or their API token); slow on
        purpose (PBKDF2), and as slow for an unknown name. Call it off the event loop."""
        reviewer = self.settings.reviewer(name)
        if reviewer is None or not password:
            verify_password(password or "x", _DUMMY_HASH)
            return None
        by_hash = verify_password(password, reviewer.password_hash or _DUMMY_HASH) and bool(reviewer.password_hash)
        by_token = hmac.compare_digest(password.encode(), reviewer.token.encode())
        return reviewer if by_hash or by_token else None

    def throttled(self, name: str) -> bool:
        recent = self.failures.get(name.lower())
        now = time.monotonic()
        while recent and recent[0] < now - 60:
            recent.popleft()
        return bool(recent) and len(recent) >= self.console.login_attempts

    def failed(self, name: str) -> None:
        if len(self.failures) > 10_000:  # bounded memory whatever names are tried
            self.failures.clear()
        self.failures.setdefault(name.lower(), deque()).append(time.monotonic())


def csrf_ok(session: Session, supplied: str | None) -> bool:
    return bool(supplied) and hmac.compare_digest(session.csrf.encode(), supplied.encode())


def wants_json(request: Request) -> bool:
    path = request.url.path
    return (path.startswith(("/events", "/api/")) or "application/json" in request.headers.get("accept", "")
            or request.headers.get("content-type", "").startswith("application/json"))


def safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no //host): never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class AuthMiddleware:
    """Every path except sign-in, static files and the ops endpoints needs a session: pages redirect
    to /login, the API and the event stream answer 401 JSON. The session lands in request.state."""

    def __init__(self, app, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        path = request.url.path
        session = self.sessions.read(request)
        scope.setdefault("state", {})["session"] = session
        if session is None and not path.startswith(PUBLIC):
            if wants_json(request) or request.method != "GET":
                response: Response = JSONResponse(
                    {"error": {"code": "unauthorized", "message": "sign in first"}}, status_code=401)
            else:
                query = f"?{request.url.query}" if request.url.query else ""
                response = RedirectResponse(f"/login?next={quote(path + query, safe='')}", status_code=303)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
