"""Votes of one quorum arriving at once (threads, like several decider replicas on PostgreSQL):
every vote counted once, exactly one resolution, and the hash chain has no fork."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.decider.logic import Decider
from shared.access import ALL
from shared.models import CheckpointRequested, DecisionSubmitted
from shared.policy import Approval, Policy
from shared.settings import ReviewerConfig
from shared.store import Database, audit, votes
from shared.store import checkpoints as store
from tests.conftest import make_settings

pytestmark = pytest.mark.integration
VOTERS = [f"r{i}" for i in range(8)]


@pytest.mark.parametrize("rounds", [6])
def test_concurrent_votes_count_once_and_resolve_once(database_url, rounds):
    db = Database(database_url)
    db.migrate()
    settings = make_settings(database_url, reviewers=[ReviewerConfig(name=n, token=f"rv-{n}-token-0001",
                                                                     apps=["demo"]) for n in VOTERS])
    decider = Decider(db, settings)
    try:
        for _ in range(rounds):
            req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id="draft",
                                      node_output="x", timeout_s=300, max_rounds=3, round=1, assignees=VOTERS,
                                      policy=Policy(approval=Approval(mode="m_of_n", m=5)))
            cp = decider.on_request(req, "q", "c").checkpoint
            decisions = [DecisionSubmitted(checkpoint_id=cp["id"], action="approve", actor=v) for v in VOTERS]
            with ThreadPoolExecutor(len(VOTERS)) as pool:
                outcomes = list(pool.map(lambda d: decider.on_decision(d, ALL), decisions))
            kinds = sorted(o.kind for o in outcomes)
            assert kinds.count("applied") == 1 and kinds.count("voted") == 4, kinds
            assert kinds.count("rejected") == 3 and {o.code for o in outcomes if o.kind == "rejected"} == {
                "already_resolved"}
            with db.read() as conn:
                cast = votes.of(conn, cp["id"])
                row = store.get(conn, cp["id"])
                applied = [h for h in store.history_of(conn, cp["id"]) if h["outcome"] == "applied"]
            assert len(cast) == 5 and len({v["voter"] for v in cast}) == 5
            assert row["status"] == "resolved" and len(row["tally"]["approved"]) == 5 and len(applied) == 1
        with db.read() as conn:
            broken, counts = audit.verify(conn)
        assert broken is None and counts["checkpoints"] == rounds
    finally:
        db.dispose()
