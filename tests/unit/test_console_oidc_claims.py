"""The ID token checks and the claim mapping of OIDC sign-in, on their own (the flow itself is tested
against a real provider in tests/e2e/test_console_oidc.py)."""
from __future__ import annotations

import time

import pytest

from services.console.config import ConsoleSettings
from services.console.oidc import OidcRefused, check_claims, map_claims

ISS, CLIENT, NONCE = "http://127.0.0.1:9000", "hitl-console", "n-123"


def claims(**change):
    now = time.time()
    return {"iss": ISS, "aud": CLIENT, "exp": now + 300, "iat": now, "nonce": NONCE, "sub": "u1", **change}


def test_a_token_for_us_from_our_issuer_for_this_sign_in_passes():
    assert check_claims(claims(), ISS, CLIENT, NONCE)["sub"] == "u1"
    assert check_claims(claims(aud=[CLIENT, "other"], azp=CLIENT), ISS, CLIENT, NONCE)


@pytest.mark.parametrize("change,why", [
    ({"aud": "another-app"}, "wrong audience"), ({"aud": ["another-app", "x"]}, "wrong audience"),
    ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"), ({"iss": "http://evil"}, "another issuer"),
    ({"exp": time.time() - 3600}, "expired"), ({"nonce": "replayed"}, "nonce"), ({"iat": time.time() + 3600}, "future"),
])
def test_a_token_that_is_not_for_this_sign_in_is_refused(change, why):
    with pytest.raises(OidcRefused) as refused:
        check_claims(claims(**change), ISS, CLIENT, NONCE)
    assert why in refused.value.message


def test_claims_map_to_a_name_and_groups_as_configured():
    console = ConsoleSettings(secret="x" * 16, oidc_issuer=ISS, oidc_client_id=CLIENT)
    assert map_claims({"preferred_username": "alice", "groups": ["legal", "bad group", 3]}, console) == \
        ("alice", ["legal"])
    mapped = ConsoleSettings(secret="x" * 16, oidc_issuer=ISS, oidc_client_id=CLIENT, oidc_name_claim="email",
                             oidc_groups_claim="roles", oidc_groups_map={"hitl-legal": "legal"})
    assert map_claims({"email": "a@x.org", "roles": ["hitl-legal", "unmapped"]}, mapped) == ("a@x.org", ["legal"])
    with pytest.raises(OidcRefused):
        map_claims({"preferred_username": "has space"}, console)
    with pytest.raises(ValueError):
        ConsoleSettings(secret="x" * 16, oidc_issuer=ISS)  # an issuer without a client id
