"""python -m services.decider — the checkpoint state machine (the only writer of checkpoints)."""
from __future__ import annotations


from services.decider.service import DeciderService
from shared import metrics
from shared.runner import run, run_worker


def make_service(settings, db, broker) -> DeciderService:
    metrics.observe_store(db, checkpoints=True, apps=[a.name for a in settings.apps])
    return DeciderService(settings, db, broker)


if __name__ == "__main__":
    run(run_worker("decider", make_service, lambda s: (s.decider_host, s.decider_port)))
