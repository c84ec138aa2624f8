"""Database.migrate() on both stores: a new database is migrated by Alembic; one already at the head
is answered from the alembic_version table without Alembic; one behind it goes to Alembic."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.store import Database
from shared.store.revisions import stored_revision

pytestmark = pytest.mark.integration


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


def test_a_new_database_has_no_stored_revision_and_is_migrated_to_the_head(db):
    with db.read() as conn:
        assert stored_revision(conn) is None  # no alembic_version table yet
    head = db.head_revision()
    assert db.migrate() == head
    with db.read() as conn:
        assert stored_revision(conn) == head
    assert db.current_revision() == head


def test_a_database_at_the_head_is_not_handed_to_alembic(db, monkeypatch):
    head = db.migrate()

    def no_alembic():
        raise AssertionError("Alembic was asked although the database is at the head")

    monkeypatch.setattr(db, "_alembic_config", no_alembic)
    assert db.migrate() == head


def test_a_database_behind_the_head_is_handed_to_alembic(db, monkeypatch):
    db.migrate()
    with db.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": "0007"})
    with db.read() as conn:
        assert stored_revision(conn) == "0007"
    asked = []

    def alembic_asked():
        asked.append(True)
        raise LookupError("stop here: the test only needs to see Alembic asked")

    monkeypatch.setattr(db, "_alembic_config", alembic_asked)
    with pytest.raises(LookupError):
        db.migrate()
    assert asked == [True]
