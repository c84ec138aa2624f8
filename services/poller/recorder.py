"""What the poller knows about runs, from every source, written to the store: plain sync functions that
return the messages to publish after their transaction committed (like the decider's logic).

Sources, one module each: events (a tracking request, a Dify event streamed by the gateway or a
process of ours or replayed by a re-attach, a milestone the workflow reported, a stream reader's
heartbeat) — events.py; a page of GET /v1/workflows/logs — listing.py; a poll of
GET /v1/workflows/run/{id} — polls.py; captures of paused runs' forms and re-attaches after lost
streams — reattach.py. What they share (status changes) is runbook.py.
"""
from __future__ import annotations

from services.poller.events import NODE_EVENTS, EventBook
from services.poller.listing import ListingBook
from services.poller.polls import PollBook
from services.poller.reattach import ReattachBook
from services.poller.runbook import CANCELS_CHECKPOINTS, TERMINAL

__all__ = ["Recorder", "NODE_EVENTS", "TERMINAL", "CANCELS_CHECKPOINTS"]


class Recorder(EventBook, ListingBook, PollBook, ReattachBook):
    """Every store-side function of the poller, on one store and one set of settings."""
