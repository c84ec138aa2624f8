"""Sign-in with OpenID Connect: authorization code flow with PKCE (S256), against any provider that
publishes a discovery document (Okta, Azure AD / Entra ID, Keycloak, Feishu, DingTalk, …).

/login/oidc sends the browser to the provider with a fresh state, nonce and code challenge (kept in a
signed, short-lived cookie); /login/oidc/callback exchanges the code, checks the ID token (signature
by the provider's JWKS, issuer, audience = our client id, expiry, nonce) and maps its claims to a
reviewer name and groups (HITL_CONSOLE_OIDC_*). Sign-out revokes the session here and, when the
provider has an end_session_endpoint, ends it there too (RP-initiated logout).
"""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import httpx
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.console.auth import Sessions, client_address, oidc_reviewer, safe_next
from services.console.config import ConsoleSettings
from services.console.signin import login_page
from shared.logs import get_logger
from shared.settings import ReviewerConfig

log = get_logger(__name__)
STATE_COOKIE = "hitl_console_oidc"
STATE_TTL_S = 600
CACHE_S = 3600
CLOCK_LEEWAY_S = 60
NAME_RULE = re.compile(r"^[^:\s]{1,64}$")  # the reviewer-name rule of shared/settings.py


class OidcRefused(Exception):
    """A sign-in that must not succeed; `message` is what the sign-in page says."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class OidcClient:
    def __init__(self, console: ConsoleSettings) -> None:
        self.console = console
        self.issuer = (console.oidc_issuer or "").rstrip("/")
        self._meta: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._lock = asyncio.Lock()

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.console.oidc_timeout_s, follow_redirects=False)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http() as http:
                answer = await http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcRefused(f"The identity provider does not answer ({type(exc).__name__}).", 502) from None
        if answer.status_code != 200:
            raise OidcRefused(f"The identity provider answered {answer.status_code} for {url}.", 502)
        try:
            data = answer.json()
        except ValueError:
            raise OidcRefused(f"The identity provider's {url} is not JSON.", 502) from None
        if not isinstance(data, dict):
            raise OidcRefused(f"The identity provider's {url} is not a JSON object.", 502)
        return data

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (cached for an hour); its issuer must be the configured one."""
        async with self._lock:
            if self._meta and time.monotonic() - self._meta[0] < CACHE_S:
                return self._meta[1]
            meta = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            if str(meta.get("issuer", "")).rstrip("/") != self.issuer:
                raise OidcRefused("The identity provider's discovery document names another issuer.", 502)
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(key), str):
                    raise OidcRefused(f"The identity provider's discovery document has no {key}.", 502)
            self._meta = (time.monotonic(), meta)
            return meta

    async def keys(self, refresh: bool = False) -> KeySet:
        meta = await self.metadata()
        if self._keys and not refresh and time.monotonic() - self._keys[0] < CACHE_S:
            return self._keys[1]
        if self._keys and refresh and time.monotonic() - self._keys[0] < 30:
            return self._keys[1]  # a token naming an unknown key does not make us fetch every time
        try:
            keys = KeySet.import_key_set(await self._get_json(meta["jwks_uri"]))  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcRefused(f"The identity provider's keys cannot be read ({exc}).", 502) from None
        self._keys = (time.monotonic(), keys)
        return keys

    # ------------------------------------------------------------------ the flow
    def redirect_uri(self, request: Request) -> str:
        return self.console.oidc_redirect_url or str(request.url_for("oidc_callback"))

    async def authorization_url(self, request: Request, sessions: Sessions, next_: str) -> tuple[str, str]:
        """(where to send the browser, the state cookie's value)."""
        meta = await self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        url = add_params_to_uri(meta["authorization_endpoint"], [
            ("response_type", "code"), ("client_id", self.console.oidc_client_id or ""),
            ("redirect_uri", self.redirect_uri(request)), ("scope", self.console.oidc_scopes), ("state", state),
            ("nonce", nonce), ("code_challenge", create_s256_code_challenge(verifier)),
            ("code_challenge_method", "S256")])
        cookie = sessions.sign("oidc", {"s": state, "n": nonce, "v": verifier, "next": safe_next(next_)}, STATE_TTL_S)
        return url, cookie

    async def exchange(self, request: Request, code: str, verifier: str) -> dict[str, Any]:
        meta = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri(request),
                "code_verifier": verifier}
        auth = None
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if self.console.oidc_client_secret and "client_secret_basic" in methods:
            auth = httpx.BasicAuth(self.console.oidc_client_id or "", self.console.oidc_client_secret)
        else:
            form["client_id"] = self.console.oidc_client_id or ""
            if self.console.oidc_client_secret:
                form["client_secret"] = self.console.oidc_client_secret
        try:
            async with self._http() as http:
                answer = await http.post(meta["token_endpoint"], data=form, auth=auth or httpx.USE_CLIENT_DEFAULT,
                                         headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcRefused(f"The identity provider does not answer ({type(exc).__name__}).", 502) from None
        try:
            tokens = answer.json()
        except ValueError:
            tokens = {}
        if answer.status_code != 200 or not isinstance(tokens, dict) or not tokens.get("id_token"):
            error = tokens.get("error") if isinstance(tokens, dict) else None
            raise OidcRefused(f"The identity provider refused the sign-in ({error or answer.status_code}).")
        return tokens

    async def id_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature, issuer, audience, times and nonce are right."""
        try:
            token = jwt.decode(id_token, await self.keys())
        except (JoseError, ValueError) as exc:
            if "kid" not in str(exc).lower() and "key" not in str(exc).lower():
                raise OidcRefused(f"The ID token is not valid ({exc}).") from None
            try:
                token = jwt.decode(id_token, await self.keys(refresh=True))
            except (JoseError, ValueError) as again:
                raise OidcRefused(f"The ID token is not valid ({again}).") from None
        return check_claims(dict(token.claims), self.issuer, self.console.oidc_client_id or "", nonce)

    async def userinfo(self, access_token: str | None) -> dict[str, Any]:
        meta = await self.metadata()
        if not access_token or not isinstance(meta.get("userinfo_endpoint"), str):
            return {}
        try:
            async with self._http() as http:
                answer = await http.get(meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"})
            data = answer.json() if answer.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    async def logout_url(self, id_token: str | None, after: str) -> str | None:
        try:
            meta = await self.metadata()
        except OidcRefused:
            return None
        end = meta.get("end_session_endpoint")
        if not isinstance(end, str):
            return None
        params = [("client_id", self.console.oidc_client_id or ""), ("post_logout_redirect_uri", after)]
        if id_token:
            params.insert(0, ("id_token_hint", id_token))
        return add_params_to_uri(end, params)


def check_claims(claims: dict[str, Any], issuer: str, client_id: str, nonce: str,
                 now: float | None = None) -> dict[str, Any]:
    """OpenID Connect Core 3.1.3.7: the token is from our issuer, for us, current, and for this sign-in."""
    now = time.time() if now is None else now
    if str(claims.get("iss", "")).rstrip("/") != issuer.rstrip("/"):
        raise OidcRefused("The ID token is from another issuer.")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise OidcRefused("The ID token is for another application (wrong audience).")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcRefused("The ID token was issued to another party (azp).")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, (int, float)) or exp + CLOCK_LEEWAY_S < now:
        raise OidcRefused("The ID token has expired; sign in again.")
    if not isinstance(iat, (int, float)) or iat - CLOCK_LEEWAY_S > now:
        raise OidcRefused("The ID token is dated in the future (check the clocks).")
    if not nonce or claims.get("nonce") != nonce:
        raise OidcRefused("The ID token is not for this sign-in (nonce).")
    return claims


def map_claims(claims: dict[str, Any], console: ConsoleSettings) -> tuple[str, list[str]]:
    """(reviewer name, groups) from the claims, as configured."""
    name = claims.get(console.oidc_name_claim)
    if not isinstance(name, str) or not NAME_RULE.match(name):
        raise OidcRefused(f"Your account has no usable {console.oidc_name_claim!r} claim (a name without spaces "
                          "or colons), so it cannot be a reviewer here.", 403)
    raw = claims.get(console.oidc_groups_claim) or []
    found = [raw] if isinstance(raw, str) else [g for g in raw if isinstance(g, str)] if isinstance(raw, list) else []
    mapping = console.oidc_groups_map
    groups = [mapping[g] for g in found if g in mapping] if mapping else found
    return name, [g for g in dict.fromkeys(groups) if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", g)]


async def start(request: Request) -> Response:
    state = request.app.state
    try:
        url, cookie = await state.oidc.authorization_url(request, state.sessions, request.query_params.get("next", "/"))
    except OidcRefused as exc:
        return login_page(request, error=exc.message, status=exc.status)
    response = RedirectResponse(url, status_code=303)
    state.sessions.set_cookie(response, STATE_COOKIE, cookie, STATE_TTL_S)
    return response


async def callback(request: Request) -> Response:
    state, q = request.app.state, request.query_params
    sessions: Sessions = state.sessions
    saved = sessions.unsign("oidc", request.cookies.get(STATE_COOKIE))
    try:
        if q.get("error"):
            raise OidcRefused(f"The identity provider did not sign you in: {q.get('error_description') or q['error']}.")
        if not saved or not q.get("state") or not secrets.compare_digest(str(saved["s"]), q["state"]):
            raise OidcRefused("The sign-in took too long or did not start here; please try again.", 400)
        if not q.get("code"):
            raise OidcRefused("The identity provider sent no authorization code.", 400)
        tokens = await state.oidc.exchange(request, q["code"], str(saved["v"]))
        claims = await state.oidc.id_claims(tokens["id_token"], str(saved["n"]))
        console: ConsoleSettings = state.console
        if console.oidc_name_claim not in claims or console.oidc_groups_claim not in claims:
            info = await state.oidc.userinfo(tokens.get("access_token"))
            if info.get("sub") == claims.get("sub"):
                claims = {**info, **claims}
        name, groups = map_claims(claims, console)
        configured = state.settings.reviewer(name)
        if configured is None and console.oidc_only_reviewers:
            raise OidcRefused(f"{name} is not a reviewer here (HITL_REVIEWERS).", 403)
        reviewer: ReviewerConfig = oidc_reviewer(name, groups, configured)
        token = await asyncio.to_thread(sessions.issue, reviewer, method="oidc",
                                        address=client_address(request, console.trusted_proxy_hops),
                                        id_token=tokens["id_token"])
    except OidcRefused as exc:
        log.info("console.oidc_refused", reason=exc.message[:200])
        response = login_page(request, error=exc.message, status=exc.status)
        response.delete_cookie(STATE_COOKIE, path="/")
        return response
    log.info("console.login", reviewer=name, method="oidc", groups=groups)
    response = RedirectResponse(safe_next(str(saved.get("next") or "/")), status_code=303)
    sessions.start(response, token)
    response.delete_cookie(STATE_COOKIE, path="/")
    return response
