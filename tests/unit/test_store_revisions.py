"""shared/store/revisions.py: the newest revision read from the migration files themselves, the same
answer Alembic gives, and "not known" (None) for anything it does not plainly understand."""
from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from shared.store.db import MIGRATIONS
from shared.store.revisions import declared_head


def write(folder: Path, name: str, revision: str, down: str | None, quote: str = '"') -> None:
    down_text = "None" if down is None else f"{quote}{down}{quote}"
    (folder / f"{name}.py").write_text(f'"""{name}"""\nrevision = {quote}{revision}{quote}\n'
                                       f"down_revision = {down_text}\n", encoding="utf-8")


def test_the_project_s_own_migrations_have_the_head_alembic_names():
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert declared_head(MIGRATIONS / "versions") == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_chain_s_head_is_the_revision_nothing_builds_on(tmp_path):
    write(tmp_path, "a", "0001", None)
    write(tmp_path, "b", "0002", "0001", quote="'")
    write(tmp_path, "c", "0003", "0002")
    assert declared_head(tmp_path) == "0003"


def test_two_heads_are_not_known(tmp_path):
    write(tmp_path, "a", "0001", None)
    write(tmp_path, "b", "0002", "0001")
    write(tmp_path, "c", "0003", "0001")
    assert declared_head(tmp_path) is None


def test_a_merge_or_a_computed_revision_is_not_known(tmp_path):
    write(tmp_path, "a", "0001", None)
    (tmp_path / "b.py").write_text('revision = "0002"\ndown_revision = ("0001", "0000")\n', encoding="utf-8")
    assert declared_head(tmp_path) is None  # the tuple is not read as a parent: 0001 and 0002 both heads
    (tmp_path / "b.py").write_text('revision = make_id()\ndown_revision = "0001"\n', encoding="utf-8")
    assert declared_head(tmp_path) is None


def test_no_migration_files_is_not_known(tmp_path):
    assert declared_head(tmp_path) is None
