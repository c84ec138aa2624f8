"""Settings are validated at start with messages that name the setting."""
from __future__ import annotations

import json

import pytest

from shared.settings import SettingsError, load_settings


def test_environment_values_are_read_and_json_lists_parsed(monkeypatch):
    monkeypatch.setenv("HITL_APPS", json.dumps([{"name": "a", "checkpoint_token": "token-aaaa"}]))
    monkeypatch.setenv("HITL_DATABASE_URL", "postgres://u@h/db")
    s = load_settings()
    assert s.app_for_token("token-aaaa").name == "a" and s.app_for_token("nope-nope") is None
    assert s.database_url == "postgresql+psycopg://u@h/db"


def test_a_bad_value_stops_the_process_with_the_setting_named(monkeypatch):
    monkeypatch.setenv("HITL_RABBITMQ_URL", "http://wrong")
    with pytest.raises(SettingsError, match="HITL_RABBITMQ_URL"):
        load_settings()


def test_contradictions_are_refused(monkeypatch):
    monkeypatch.setenv("HITL_HOLD_DEFAULT_S", "100")
    monkeypatch.setenv("HITL_HOLD_MAX_S", "50")
    with pytest.raises(SettingsError, match="hold_default_s"):
        load_settings()


def test_a_token_shared_by_an_app_and_a_reviewer_is_refused(monkeypatch):
    monkeypatch.setenv("HITL_APPS", json.dumps([{"name": "a", "checkpoint_token": "same-token"}]))
    monkeypatch.setenv("HITL_REVIEWERS", json.dumps([{"name": "r", "token": "same-token"}]))
    with pytest.raises(SettingsError, match="token"):
        load_settings()


def test_a_yaml_config_file_is_read_and_the_environment_wins(monkeypatch, tmp_path):
    f = tmp_path / "hitl.yaml"
    f.write_text("hold_default_s: 20\nreviewers:\n  - {name: alice, token: alice-token-1}\n")
    monkeypatch.setenv("HITL_CONFIG_FILE", str(f))
    monkeypatch.setenv("HITL_HOLD_DEFAULT_S", "30")
    s = load_settings()
    assert s.hold_default_s == 30 and s.reviewer("alice").token == "alice-token-1"


def test_a_missing_config_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("HITL_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(SettingsError, match="nope.yaml"):
        load_settings()
