"""Loading and writing Dify DSL files: untouched files come back byte for byte; what Dify refuses
(or imports only after a confirmation) is refused with a message that says what to do."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.dsl import document
from shared.dsl.document import KNOWN_VERSIONS, DslError

FIXTURE_17 = Path(__file__).resolve().parents[3] / "shared" / "dify-fixtures" / "17-dsl-export-import"
EXPORTS = ["writer-llm.export.yml", "router.export.yml", "loop-human.export.yml"]
LOADABLE = sorted(p.name for p in FIXTURE_17.glob("*.yml")
                  if p.name not in ("import-bad-invalid-yaml.yml", "import-bad-yaml-is-a-list.yml",
                                    "import-bad-missing-app.yml", "import-bad-missing-workflow.yml",
                                    "import-bad-version-not-pep440.yml", "import-bad-version-unquoted-number.yml",
                                    "import-bad-bad-app-mode.yml"))
OWN = Path(__file__).resolve().parents[1] / "fixtures" / "dsl"


def text(name: str) -> str:
    return (FIXTURE_17 / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", LOADABLE)
def test_load_and_dump_without_changes_gives_the_same_text(name):
    assert document.load(text(name)).dump() == text(name)


def test_our_template_writer_fixture_round_trips_too():
    source = (OWN / "writer-template.yml").read_text(encoding="utf-8")
    assert document.load(source).dump() == source


def test_comments_and_unknown_fields_survive_an_edit():
    source = text("writer-llm.export.yml").replace("kind: app\n", "kind: app  # exported for review\n")
    source = source.replace("  rag_pipeline_variables: []\n", "  rag_pipeline_variables: []\n  x_custom: {keep: me}\n")
    doc = document.load(source)
    doc.nodes[0]["data"]["title"] = "Begin"
    out = doc.dump()
    assert "kind: app  # exported for review\n" in out and "  x_custom: {keep: me}\n" in out
    assert out == source.replace("title: Start", "title: Begin")


@pytest.mark.parametrize("version", ["0.6.1", "0.7.0", "1.0.0"])
def test_a_version_newer_than_dify_writes_is_refused_naming_the_known_ones(version):
    with pytest.raises(DslError) as err:
        document.load(text("writer-llm.export.yml").replace("version: 0.6.0", f"version: {version}"))
    message = str(err.value)
    assert version in message and all(v in message for v in KNOWN_VERSIONS)


def test_a_version_that_is_not_a_string_is_refused_like_dify_refuses_it():
    with pytest.raises(DslError, match="is a float, not a string: quote it"):
        document.load(text("import-bad-version-unquoted-number.yml"))


def test_a_version_that_is_no_version_is_refused():
    with pytest.raises(DslError, match="DSL version banana is not one we know"):
        document.load(text("import-bad-version-not-pep440.yml"))


def test_a_missing_version_is_refused_with_the_known_ones():
    source = text("writer-llm.export.yml").replace("version: 0.6.0\n", "")
    with pytest.raises(DslError, match="no `version:`.*0.1.0, 0.5.0, 0.6.0"):
        document.load(source)


@pytest.mark.parametrize("name, match", [
    ("import-bad-yaml-is-a-list.yml", "must be a mapping"),
    ("import-bad-invalid-yaml.yml", "not valid YAML"),
    ("import-bad-missing-app.yml", "no `app:` section"),
    ("import-bad-missing-workflow.yml", "no `workflow.graph` section"),
    ("import-bad-bad-app-mode.yml", "app mode 'pipeline-x' has no workflow graph"),
])
def test_files_dify_refuses_are_refused(name, match):
    with pytest.raises(DslError, match=match):
        document.load(text(name))


def test_a_secret_environment_variable_is_added_once_and_updated_after():
    doc = document.load(text("writer-llm.export.yml"))
    assert doc.set_secret("HITL_CHECKPOINT_TOKEN", "", "token", "id-1") is True
    assert doc.set_secret("HITL_CHECKPOINT_TOKEN", "cp-123", "token", "id-2") is False
    assert document.to_plain(doc.environment_variables()) == [
        {"description": "token", "id": "id-1", "name": "HITL_CHECKPOINT_TOKEN", "value": "cp-123",
         "value_type": "secret"}]
    assert "value_type: secret" in doc.dump()
