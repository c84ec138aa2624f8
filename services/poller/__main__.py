"""python -m services.poller — tracks every Dify run and node; discovers runs; delivers Dify forms;
starts continuations."""
from __future__ import annotations


from services.poller.service import PollerService
from shared import metrics
from shared.runner import run, run_worker


def make_service(settings, db, broker) -> PollerService:
    metrics.observe_store(db, runs=True, apps=[a.name for a in settings.apps if a.watched])
    return PollerService(settings, db, broker)


if __name__ == "__main__":
    run(run_worker("poller", make_service, lambda s: (s.poller_host, s.poller_port)))
