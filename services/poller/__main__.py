"""python -m services.poller — tracks every Dify run and node; discovers runs; delivers Dify forms;
starts continuations."""
from __future__ import annotations

from typing import Any

from services.poller.service import PollerService
from shared import metrics
from shared.runner import Runtime, run, run_worker


def make_service(runtime: Runtime, broker: Any) -> PollerService:
    settings = runtime.settings
    metrics.observe_store(runtime.db, runs=True, apps=[a.name for a in settings.apps if a.watched])
    return PollerService(settings, runtime.db, broker, runtime.verifier)


def main() -> None:
    run(run_worker("poller", make_service, lambda s: (s.poller_host, s.poller_port)))


if __name__ == "__main__":
    main()
