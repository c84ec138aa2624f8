"""python -m services.decider — the checkpoint state machine (the only writer of checkpoints)."""
from __future__ import annotations

from typing import Any

from services.decider.service import DeciderService
from shared import metrics
from shared.runner import Runtime, run, run_worker


def make_service(runtime: Runtime, broker: Any) -> DeciderService:
    settings = runtime.settings
    metrics.observe_store(runtime.db, checkpoints=True, apps=[a.name for a in settings.apps])
    metrics.node_labels.limit = settings.metric_node_labels
    return DeciderService(settings, runtime.db, broker, runtime.verifier)


def main() -> None:
    run(run_worker("decider", make_service, lambda s: (s.decider_host, s.decider_port)))


if __name__ == "__main__":
    main()
