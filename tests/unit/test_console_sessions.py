"""Console sessions live in the store: sign-out revokes them on every replica, a reviewer's removal or
credential change ends them, an expired row is no session; the sign-in throttle is keyed by client
address and name with bounded memory; a store that does not answer is a 503, never a 500."""
from __future__ import annotations

import time

from sqlalchemy import select, update

from services.console.app import create_app
from services.console.auth import COOKIE, LoginThrottle
from services.console.config import ConsoleSettings
from shared.passwords import hash_password
from shared.settings import ReviewerConfig
from shared.store import Database
from shared.store.errors import StoreUnavailable
from shared.store.tables import console_sessions
from tests.conftest import make_settings, memory_broker
from tests.unit.console_support import PASSWORD, SECRET, TestClient, add_checkpoint, console_app, sign_in


def alice(password: str = PASSWORD) -> ReviewerConfig:
    """alice with this password (the same hash for the same password: replicas share one configuration)."""
    return ReviewerConfig(name="alice", token="rv-alice-token", apps=["demo"],
                          password_hash=hash_password(password, iterations=1000, salt="a1" * 16))


BOB = ReviewerConfig(name="bob", token="rv-bob-token", apps=["demo"])


def replica(db: Database, url: str, reviewers=None, **console):
    """One console process on the shared store (as several replicas behind one address are)."""
    settings = make_settings(url, reviewers=reviewers if reviewers is not None else [alice(), BOB])
    return console_app(settings, db, **{"login_attempts": 3, **console})


def rows(db: Database) -> list[dict]:
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(console_sessions))]


def signed_in(app, name="alice", password=PASSWORD) -> TestClient:
    client = TestClient(app)
    assert sign_in(client, name, password).status_code == 303
    return client


def csrf(client: TestClient) -> str:
    import re
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text).group(1)


def test_a_sign_in_is_a_row_whose_token_the_store_keeps_only_hashed(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    client = signed_in(replica(db, sqlite_url))
    token = client.cookies[COOKIE]
    [row] = rows(db)
    assert row["reviewer"] == "alice" and row["method"] == "password" and row["revoked_at"] is None
    assert token not in str(row) and len(row["id"]) == 64
    assert client.get("/api/session").json()["name"] == "alice"


def test_sign_out_on_one_replica_ends_the_session_on_the_other(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    first, second = replica(db, sqlite_url), replica(db, sqlite_url)
    client = signed_in(first)
    token = client.cookies[COOKIE]
    other = TestClient(second)
    other.cookies.set(COOKIE, token)
    assert other.get("/api/session").status_code == 200  # the same session on the other replica
    out = other.post("/logout", data={"csrf": csrf(other)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
    replayed = TestClient(first)
    replayed.cookies.set(COOKIE, token)  # the cookie, kept by someone after sign-out
    assert replayed.get("/api/session").status_code == 401
    assert replayed.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert rows(db)[0]["revoked_reason"] == "sign_out"


def test_a_changed_password_or_a_removed_reviewer_ends_their_sessions(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    before = replica(db, sqlite_url)
    alice_client, bob_client = signed_in(before), signed_in(before, "bob", "rv-bob-token")
    after = replica(db, sqlite_url, reviewers=[alice("a new password")])  # bob removed, alice's password changed
    for client in (alice_client, bob_client):
        token = client.cookies[COOKIE]
        moved = TestClient(after)
        moved.cookies.set(COOKIE, token)
        assert moved.get("/api/session").status_code == 401
    reasons = {r["reviewer"]: r["revoked_reason"] for r in rows(db)}
    assert reasons == {"alice": "credentials_changed", "bob": "removed"}


def test_the_start_up_sweep_revokes_what_the_configuration_no_longer_allows(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    before = replica(db, sqlite_url)
    signed_in(before)
    signed_in(before, "bob", "rv-bob-token")
    after = replica(db, sqlite_url, reviewers=[alice()])
    assert after.state.sessions.sweep() == 1
    assert {r["reviewer"]: r["revoked_reason"] for r in rows(db)} == {"alice": None, "bob": "removed"}


def test_an_expired_session_row_is_no_session(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    client = signed_in(replica(db, sqlite_url))
    with db.write() as conn:
        conn.execute(update(console_sessions).values(expires_at=time.time() - 1))
    answer = client.get("/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert COOKIE not in client.cookies  # the dead cookie is dropped too


def test_a_right_password_during_the_cool_down_is_still_refused_for_that_address_and_name(sqlite_url):
    db = Database(sqlite_url)
    db.migrate()
    app = replica(db, sqlite_url, trusted_proxy_hops=1)
    attacker = TestClient(app, headers={"X-Forwarded-For": "203.0.113.9"})
    for _ in range(3):
        assert sign_in(attacker, password="guess").status_code == 401
    refused = sign_in(attacker)
    assert refused.status_code == 429 and "wait" in refused.text
    # alice, from her own address, is not locked out by the guessing from elsewhere
    assert sign_in(TestClient(app, headers={"X-Forwarded-For": "198.51.100.7"})).status_code == 303
    # and the same address may still sign in as someone else
    assert sign_in(attacker, "bob", "rv-bob-token").status_code == 303


def test_the_cool_down_ends_a_minute_after_the_failures():
    throttle = LoginThrottle(limit=3, max_keys=100)
    key = LoginThrottle.key("10.0.0.1", "Alice ")
    assert key == ("10.0.0.1", "alice")
    for t in (0.0, 1.0, 2.0):
        throttle.failed(key, now=t)
    assert throttle.blocked(key, now=3.0) == 57.0  # until the first failure is a minute old
    assert throttle.blocked(key, now=60.5) == 0.0  # the first failure left the window


def test_trying_many_other_names_neither_grows_memory_nor_frees_a_pair_that_is_waiting():
    throttle = LoginThrottle(limit=3, max_keys=100)
    alice_key = LoginThrottle.key("10.0.0.1", "alice")
    for t in (0.0, 0.1, 0.2):
        throttle.failed(alice_key, now=t)
    for i in range(10_000):
        throttle.failed(LoginThrottle.key("10.0.0.1", f"user{i}"), now=1.0 + i / 1e6)
    assert len(throttle.failures) <= 100
    assert throttle.blocked(alice_key, now=2.0) > 0  # still waiting: not cleared, not evicted
    recent = LoginThrottle.key("10.0.0.1", "user9999")
    assert recent in throttle.failures  # the newest are kept, the oldest quiet ones went first


def test_pages_answer_503_while_the_store_does_not_answer(sqlite_url, monkeypatch):
    db = Database(sqlite_url)
    db.migrate()
    app = replica(db, sqlite_url)
    cid = add_checkpoint(db)
    client = signed_in(app)
    session = app.state.sessions.lookup(client.cookies[COOKIE])
    monkeypatch.setattr(app.state.sessions, "lookup", lambda token: session)  # the session read still works

    def down():
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(db, "read", down)
    for path in ("/", "/?status=decided", f"/checkpoints/{cid}", "/runs", "/runs/r1"):
        answer = client.get(path)
        assert answer.status_code == 503, path
        assert answer.headers["retry-after"] == "5" and "store does not answer" in answer.text
    assert client.get("/", headers={"Accept": "application/json"}).json()["error"]["code"] == "store_unavailable"


def test_a_store_that_is_unreachable_from_the_start_is_a_503_not_a_sign_out(sqlite_url):
    unreachable = Database("postgresql://postgres@127.0.0.1:9/nothing_here")
    settings = make_settings(sqlite_url, reviewers=[alice()])
    app = create_app(settings, ConsoleSettings(secret=SECRET), unreachable, memory_broker(settings),
                     start_broker=False)
    client = TestClient(app)
    assert client.get("/login").status_code == 200  # the sign-in page needs no store
    client.cookies.set(COOKIE, "a-token-from-before-the-outage")
    answer = client.get("/", follow_redirects=False)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "store_unavailable"


def test_an_identity_provider_session_keeps_its_groups_and_ends_when_only_reviewers_may_sign_in(sqlite_url):
    from services.console.auth import oidc_reviewer

    db = Database(sqlite_url)
    db.migrate()
    open_app = replica(db, sqlite_url)
    token = open_app.state.sessions.issue(oidc_reviewer("zoe", ["legal"], None), method="oidc")
    session = open_app.state.sessions.lookup(token)
    assert session is not None and session.reviewer.groups == ["legal"] and not session.configured
    strict = replica(db, sqlite_url, oidc_only_reviewers=True)
    assert strict.state.sessions.lookup(token) is None
    assert [r["revoked_reason"] for r in rows(db)] == ["removed"]
    # a configured reviewer who signed in with the provider is ended by their removal
    alice_token = open_app.state.sessions.issue(oidc_reviewer("alice", ["legal"], alice()), method="oidc")
    assert replica(db, sqlite_url, reviewers=[BOB]).state.sessions.lookup(alice_token) is None
