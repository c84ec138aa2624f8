"""The notifier's tables (migration 0006) and store functions, on SQLite and PostgreSQL: a message
planned once, claimed by one sender at a time, a card sent while its checkpoint closed still updated,
a platform action id and a link nonce taken once."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from shared.store import Database
from shared.store import notifications as store
from shared.store.notifications import Recipient
from shared.store.tables import metadata

ALICE = Recipient("slack", "U0ALICE", "user", "alice")
GROUP = Recipient("email", "team@x.io", "group", "bob")
NOTIFIER_TABLES = ("notifications", "notification_callbacks", "notification_link_nonces")


@pytest.fixture
def db(database_url):
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


def test_the_migration_creates_the_tables_exactly_as_declared(db):
    mine = MetaData()
    for name in NOTIFIER_TABLES:
        metadata.tables[name].to_metadata(mine)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), mine)
    ours = [d for d in diff if any(t in repr(d) for t in NOTIFIER_TABLES) and d[0] != "remove_table"]
    assert ours == []
    assert db.current_revision() == db.head_revision()


def test_a_card_is_planned_once_per_checkpoint_recipient_and_event(db):
    with db.write() as conn:
        first = store.plan_cards(conn, "cp1", "demo", "opened", [ALICE, GROUP], 1.0, event_at=0.5)
        again = store.plan_cards(conn, "cp1", "demo", "opened", [ALICE, GROUP], 2.0)
        reminder = store.plan_cards(conn, "cp1", "demo", "reminder:e1", [ALICE], 3.0)
    assert len(first) == 2 and {r["id"] for r in again} == {r["id"] for r in first}  # still pending: planned again
    assert len(reminder) == 1
    with db.write() as conn:
        store.mark_sent(conn, first[0]["id"], {"channel": "D1", "ts": "1.1"}, "D1/1.1", 4.0)
        assert [r["id"] for r in store.plan_cards(conn, "cp1", "demo", "opened", [ALICE, GROUP], 5.0)] == [
            first[1]["id"]]  # the sent one is not planned again
        assert len(store.cards_of(conn, "cp1")) == 3


def test_one_sender_at_a_time_and_a_dead_senders_lease_runs_out(db):
    with db.write() as conn:
        (row,) = store.plan_cards(conn, "cp1", "demo", "opened", [ALICE], 1.0)
        claimed = store.claim(conn, row["id"], now=10.0, lease_s=30, owner="job-1")
        assert claimed != "busy" and claimed != "done" and claimed["attempts"] == 1
        assert store.claim(conn, row["id"], now=20.0, lease_s=30, owner="job-2") == "busy"  # a duplicate job waits
        again = store.claim(conn, row["id"], now=21.0, lease_s=30, owner="job-1")  # job-1 back after a store outage
        assert again not in ("busy", "done") and again["attempts"] == 2
        retaken = store.claim(conn, row["id"], now=52.0, lease_s=30, owner="job-2")  # job-1's sender died
        assert retaken not in ("busy", "done") and retaken["attempts"] == 3 and retaken["lease_owner"] == "job-2"
        store.release(conn, row["id"], "platform_error: 503", 53.0)
        assert store.get(conn, row["id"])["status"] == "pending"
        store.claim(conn, row["id"], now=54.0, lease_s=30, owner="job-3")
        store.mark_sent(conn, row["id"], {"ts": "1"}, None, 55.0)
        assert store.claim(conn, row["id"], now=100.0, lease_s=30, owner="job-3") == "done"
        assert store.claim(conn, "no-such-row", now=100.0, lease_s=30, owner="job-4") == "done"


def test_a_card_sent_while_its_checkpoint_closed_learns_it_from_its_own_row(db):
    with db.write() as conn:
        (row,) = store.plan_cards(conn, "cp1", "demo", "opened", [ALICE], 1.0)
        store.claim(conn, row["id"], 2.0, 30, "job-1")
        closing = store.close(conn, "cp1", 3.0)  # the close event: the card is still `sending`
        assert [c["status"] for c in closing] == ["sending"] and store.plan_updates(conn, closing, 3.0) == []
        sent = store.mark_sent(conn, row["id"], {"channel": "D1", "ts": "1.1"}, "D1/1.1", 4.0)
        assert sent is not None and sent["closed"] is True  # so the sender plans the update itself
        (update,) = store.plan_updates(conn, [sent], 4.0)
        assert (update["kind"], update["parent_id"], update["event"]) == ("update", row["id"], "closed:opened")


def test_cards_edited_in_place_get_one_update_each_others_one_outcome_per_recipient(db):
    with db.write() as conn:
        cards = store.plan_cards(conn, "cp1", "demo", "opened", [ALICE, GROUP], 1.0)
        cards += store.plan_cards(conn, "cp1", "demo", "reminder:e1", [ALICE, GROUP], 2.0)
        for i, c in enumerate(cards):
            store.mark_sent(conn, c["id"], {"n": i}, None, 10.0 + i)
        closed = store.close(conn, "cp1", 20.0)
        updates = store.plan_updates(conn, closed, 20.0)
        assert sorted((u["channel"], u["event"]) for u in updates) == [
            ("email", "closed"), ("slack", "closed:opened"), ("slack", "closed:reminder:e1")]
        email = next(u for u in updates if u["channel"] == "email")
        assert email["parent_id"] == next(c["id"] for c in cards if c["channel"] == "email" and c["event"] == "opened")
        replanned = store.plan_updates(conn, store.close(conn, "cp1", 21.0), 21.0)  # a redelivered close
        assert sorted(u["id"] for u in replanned) == sorted(u["id"] for u in updates)
        assert len(store.cards_of(conn, "cp1")) == 7


def test_a_platform_action_id_is_taken_once_and_a_link_nonce_spent_once(db):
    with db.write() as conn:
        row, fresh = store.take_callback(conn, "slack", "slack:action:1.1:U1", 1.0, reviewer="alice")
        again, fresh_again = store.take_callback(conn, "slack", "slack:action:1.1:U1", 2.0, reviewer="alice")
        other, _ = store.take_callback(conn, "feishu", "slack:action:1.1:U1", 2.0)
        assert fresh and not fresh_again and again["id"] == row["id"] and other["id"] != row["id"]
        store.record_callback(conn, "slack", "refused", 3.0, code="bad_signature")
        store.record_callback(conn, "slack", "refused", 3.0, code="bad_signature")  # no key: both kept
        assert [c["outcome"] for c in store.callbacks_of(conn, channel="slack")] == ["accepted", "refused", "refused"]
        assert store.use_nonce(conn, "n1", "cp1", "alice", "approve", 4.0) is True
        assert store.use_nonce(conn, "n1", "cp1", "alice", "approve", 5.0) is False


def test_a_click_finds_its_card_by_the_platform_message_id(db):
    with db.write() as conn:
        (row,) = store.plan_cards(conn, "cp1", "demo", "opened", [Recipient("feishu", "oc_1", "group")], 1.0)
        store.mark_sent(conn, row["id"], {"message_id": "om_1"}, "om_1", 2.0)
        store.keep_update_token(conn, row["id"], "c-token", 3.0)
        found = store.by_message(conn, "feishu", "om_1")
        assert found is not None and found["checkpoint_id"] == "cp1" and found["update_token"] == "c-token"
        assert store.by_message(conn, "slack", "om_1") is None
