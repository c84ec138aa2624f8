"""`make run`: start the Dify simulator, decider and ingest with the demo workflow, and say what to type."""
from __future__ import annotations

import os
import signal
import sys
import time

from demo.sinks import with_notifier
from demo.stack import APP_TOKEN, DIFY_APP_KEY, ROOT, ProcessStack


def main() -> None:
    stack = ProcessStack(ROOT / "var" / "run", database_url=os.environ.get("HITL_DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'hitl.db'}"),
                         namespace=os.environ.get("HITL_NAMESPACE", "hitl"),
                         ports={"sim": 5001, "ingest": 8080, "decider": 8081, "poller": 8082, "console": 8090,
                                "notifier": 8083})
    sinks = with_notifier(stack)  # the notifier's email and webhook go to local sinks that print here
    try:
        stack.start_all()
        stack.start("console")
        stack.start("notifier")
    except RuntimeError as exc:
        stack.stop_all()
        sinks.stop()
        sys.exit(f"could not start: {exc}")
    stack.register_app()
    print(f"""
dify-hitl is running (logs in var/run/*.log; Ctrl-C stops everything)
  Dify simulator   {stack.sim_url}     demo app key: {DIFY_APP_KEY}
  ingest           {stack.ingest_url}     checkpoint token: {APP_TOKEN}
  decider          {stack.decider_url}     (/metrics, /readyz)
  poller           {stack.poller_url}     (/metrics, /readyz)
  console          {stack.console_url}     sign in as alice / rv-alice-token (or bob / rv-bob-token)
{sinks.banner(stack)}

1. Start a workflow run (it pauses at the human checkpoint):
   curl -s -X POST {stack.sim_url}/v1/workflows/run -H 'Authorization: Bearer {DIFY_APP_KEY}' \\
        -H 'Content-Type: application/json' \\
        -d '{{"inputs": {{"topic": "release notes"}}, "response_mode": "blocking", "user": "me"}}' &

2. Decide, as reviewer alice:
   export HITL_TOKEN=rv-alice-token
   .venv/bin/hitl checkpoints --status open
   .venv/bin/hitl show <ID>
   .venv/bin/hitl decide <ID> revise --feedback "mention the new API"    # round 2 appears
   .venv/bin/hitl decide <ID2> approve                                     # the run ends succeeded
   Or from the notification printed below: open its Approve link, press Confirm.

3. Watch runs:
   .venv/bin/hitl runs
   .venv/bin/hitl run-show <RUN_ID>          # node timeline in colors
""", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
            for name, proc in list(stack.procs.items()):
                if proc.poll() is not None:
                    print(f"{name} exited ({proc.returncode}); last lines:\n{stack.log_tail(name)}", file=sys.stderr)
                    stop.append(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…")
        stack.stop_all()
        sinks.stop()


if __name__ == "__main__":
    main()
