"""`make run`: start the Dify simulator, decider, poller, ingest, the console and the notifier (its email
and webhook pointed at local sinks that print here) with one demo app per kind of wait (demo/apps.py),
and say what to type."""
from __future__ import annotations

import os
import signal
import sys
import time

from demo.apps import APPS, apps_env, gateway_curl, register_apps
from demo.sinks import LocalSinks, with_notifier
from demo.stack import PROCESSES, ROOT, ProcessStack

PORTS = {"sim": 5001, "ingest": 8080, "decider": 8081, "poller": 8082, "console": 8090, "notifier": 8083}


def make_stack() -> ProcessStack:
    return ProcessStack(ROOT / "var" / "run",
                        database_url=os.environ.get("HITL_DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'hitl.db'}"),
                        namespace=os.environ.get("HITL_NAMESPACE", "hitl"), ports=PORTS,
                        env=apps_env(f"http://127.0.0.1:{PORTS['sim']}"))


def start_processes(stack: ProcessStack, sinks: LocalSinks) -> None:
    try:
        stack.start_many([*PROCESSES, "console", "notifier"])
    except RuntimeError as exc:
        stack.stop_all()
        sinks.stop()
        sys.exit(f"could not start: {exc}")


def what_to_type(stack: ProcessStack, sinks: LocalSinks) -> str:
    """The three waits, each with the run to start through the gateway and how to decide it."""
    held, human, handoff = (next(a for a in APPS if a.name == n) for n in ("demo", "longreview", "handoff"))
    apps = "\n".join(f"  {a.name:17} {a.wait}   (Dify key {a.dify_api_key})" for a in APPS)
    return f"""
dify-hitl is running (logs in var/run/*.log; Ctrl-C stops everything)
  Dify simulator   {stack.sim_url}
  ingest           {stack.ingest_url}     (the Dify gateway, the decision and runs API)
  decider          {stack.decider_url}     (/metrics, /readyz)
  poller           {stack.poller_url}     (/metrics, /readyz)
  console          {stack.console_url}     sign in as alice / rv-alice-token (or bob / rv-bob-token)
{sinks.banner(stack)}

Demo apps, one per kind of wait (README "Which wait to use"):
{apps}

Every run below goes through the gateway (ingest), so `hitl run-show` has its node timeline.
export HITL_TOKEN=rv-alice-token     # reviewer alice

1. Short review — held HTTP checkpoint (the run waits inside its HTTP node, at most Dify's 1200 s):
   {gateway_curl(stack, held, "release notes")} &
   .venv/bin/hitl checkpoints --status open
   .venv/bin/hitl decide <ID> revise --feedback "mention the new API"    # round 2 appears
   .venv/bin/hitl decide <ID2> approve                                     # the run ends succeeded
   Or from a notification printed here: open its Approve link, press Confirm.

2. Long review — Dify's Human Input form (the run is paused in Dify, nothing held, up to 7 days):
   {gateway_curl(stack, human, "pricing page")}
   .venv/bin/hitl show <ID>                                  # the form, its actions, Dify's expiry
   .venv/bin/hitl decide <ID> edit --output "The corrected draft"

3. Any length — detached checkpoint (answers "pending" at once; the decision starts handoff-continue):
   {gateway_curl(stack, handoff, "annual report")}
   .venv/bin/hitl decide <ID> approve
   .venv/bin/hitl runs --app handoff-continue                 # the continuation run, with the decision

Watch runs:
   .venv/bin/hitl runs                        # status and the checkpoint outcome ("aborted by alice")
   .venv/bin/hitl run-show <RUN_ID>           # node timeline in colors
"""


def supervise(stack: ProcessStack, sinks: LocalSinks) -> None:
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


def main() -> None:
    stack = make_stack()
    sinks = with_notifier(stack)  # the notifier's email and webhook go to local sinks that print here
    start_processes(stack, sinks)
    register_apps(stack)
    print(what_to_type(stack, sinks), flush=True)
    supervise(stack, sinks)


if __name__ == "__main__":
    main()
