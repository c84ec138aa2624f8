"""A decision that finds no checkpoint, racing the request that opens it (two decider threads, like
two replicas or one decider's handler threads on PostgreSQL): the decision is applied, never left
parked for a checkpoint that is already open (issue 13: a frozen decider, thawed, handled 200
requests and their node-confirmations at once and parked some of them for ever).

The interleaving is forced: the decision's transaction has just seen "no checkpoint" when the
request's transaction opens the checkpoint, looks for parked decisions (none yet) and commits."""
from __future__ import annotations

import threading
import uuid

import pytest

from services.decider.logic import Decider
from shared.access import ALL
from shared.models import CheckpointRequested, DecisionSubmitted
from shared.store import Database, parked
from shared.store import checkpoints as store
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


class Paused(Decider):
    """Stops a decision's first look for its checkpoint until `go` is set (at most `wait_s`)."""

    def __init__(self, *args, wait_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.looked = threading.Event()
        self.go = threading.Event()
        self.wait_s = wait_s
        self.looks = 0

    def _target(self, conn, dec, scope):
        found = super()._target(conn, dec, scope)
        self.looks += 1
        if self.looks == 1:
            self.looked.set()
            self.go.wait(self.wait_s)
        return found


def test_a_decision_racing_the_request_that_opens_its_checkpoint_is_applied(database_url):
    db = Database(database_url)
    db.migrate()
    # SQLite serialises write transactions (BEGIN IMMEDIATE): the request then simply waits for the
    # decision, so the pause there is short and the forced interleaving cannot happen.
    decider = Paused(db, make_settings(database_url), wait_s=2.0 if db.is_sqlite else 20.0)
    run_id = str(uuid.uuid4())
    dec = DecisionSubmitted(workflow_run_id=run_id, node_id="draft", action="approve", actor="alice")
    req = CheckpointRequested(app="demo", workflow_run_id=run_id, node_id="draft", node_output="v1", timeout_s=300,
                              max_rounds=3)
    outcome = {}
    try:
        deciding = threading.Thread(target=lambda: outcome.update(decision=decider.on_decision(dec, ALL, "rq", "c")))
        deciding.start()
        assert decider.looked.wait(10)
        opening = threading.Thread(target=lambda: outcome.update(request=decider.on_request(req, "held-q", "held-c")))
        opening.start()
        if not db.is_sqlite:
            opening.join(20)  # opened and committed while the decision waits
            assert not opening.is_alive()
        decider.go.set()
        deciding.join(20)
        opening.join(20)
        with db.read() as conn:
            cp = store.latest(conn, "demo", run_id, "draft")
            kept = parked.get(conn, dec.id)
            applied = store.decision_by_message(conn, dec.id)
        assert cp is not None and (cp["status"], cp["action"], cp["decided_by"]) == ("resolved", "approve", "alice")
        assert applied is not None and applied["outcome"] == "applied"
        assert kept is None or kept["status"] == "applied", kept
        # the held call is answered by whichever of the two applied it
        answers = [o for name in ("decision", "request") for o in outcome[name].outbound if o.routing_key == "held-q"]
        assert len(answers) == 1
    finally:
        decider.go.set()
        db.dispose()
