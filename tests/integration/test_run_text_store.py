"""Dify's own run events may carry a NUL (a node's error quoting a model's output): the poller stores
them on both stores — NUL replaced in text columns, kept in JSON ones — instead of the event being
dead-lettered by PostgreSQL's "text fields cannot contain NUL" (issue 13)."""
from __future__ import annotations

import uuid

import pytest

from services.poller.recorder import Recorder
from shared.models import RunEvent
from shared.store import Database
from shared.store import runs as store
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def test_a_run_event_with_a_nul_in_its_text_is_recorded(database_url):
    db = Database(database_url)
    db.migrate()
    recorder = Recorder(db, make_settings(database_url))
    run_id = str(uuid.uuid4())
    try:
        for name, data in (("workflow_started", {"workflow_id": "wf\x00", "inputs": {"q": "a\x00b"}}),
                           ("node_finished", {"id": "e1", "node_id": "llm", "node_type": "llm", "title": "LL\x00M",
                                              "status": "failed", "error": "model said a\x00b",
                                              "outputs": {"text": "a\x00b"}}),
                           ("workflow_finished", {"status": "failed", "error": "node llm: a\x00b"})):
            recorder.on_event(RunEvent(app="demo", workflow_run_id=run_id, source="gateway",
                                       event={"event": name, "workflow_run_id": run_id, "data": data}))
        with db.read() as conn:
            run = store.get(conn, "demo", run_id)
            [node] = store.nodes_of(conn, "demo", run_id)
        assert run is not None and (run["status"], run["error"], run["workflow_id"]) == (
            "failed", "node llm: a\ufffdb", "wf\ufffd")
        assert (node["title"], node["error"]) == ("LL\ufffdM", "model said a\ufffdb")
        assert node["outputs"] == {"text": "a\x00b"}  # JSON keeps it
    finally:
        db.dispose()
