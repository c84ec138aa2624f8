"""`make demo`: a whole round trip by itself — a run pauses, a reviewer revises, round 2, approve, done.

It drives the real processes with the real CLI (`hitl decide`), against the Dify simulator.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from demo.stack import DIFY_APP_KEY, ProcessStack


def hitl(stack: ProcessStack, *args: str) -> str:
    env = {**stack.env, "HITL_API_URL": stack.ingest_url, "HITL_TOKEN": "rv-alice-token", "NO_COLOR": "1"}
    out = subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise SystemExit(f"hitl {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def wait_open(stack: ProcessStack, round_: int, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(f"{stack.ingest_url}/v1/checkpoints?status=open",
                      headers={"Authorization": "Bearer rv-alice-token"})
        for cp in r.json()["checkpoints"]:
            if cp["round"] == round_:
                return cp
        time.sleep(0.2)
    raise SystemExit(f"no open checkpoint for round {round_} within {timeout_s}s")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hitl-demo-") as tmp, ProcessStack(Path(tmp)) as stack:
        stack.register_app()
        print(f"processes up: simulator {stack.sim_url}, ingest {stack.ingest_url}, decider {stack.decider_url}")
        result: dict = {}

        def start_run():
            r = httpx.post(f"{stack.sim_url}/v1/workflows/run", headers={"Authorization": f"Bearer {DIFY_APP_KEY}"},
                           json={"inputs": {"topic": "release notes"}, "response_mode": "blocking", "user": "demo"},
                           timeout=300)
            result.update(r.json())

        runner = threading.Thread(target=start_run)
        runner.start()
        print("\n$ a Dify run started (blocking); it pauses at the checkpoint")
        cp = wait_open(stack, 1)
        print("\n$ hitl checkpoints --status open\n" + hitl(stack, "checkpoints", "--status", "open"))
        print(f"$ hitl decide {cp['id']} revise --feedback 'mention the new API'")
        print(hitl(stack, "decide", cp["id"], "revise", "--feedback", "mention the new API"))
        cp2 = wait_open(stack, 2)
        print(f"$ hitl show {cp2['id']}\n" + hitl(stack, "show", cp2["id"]))
        print(f"$ hitl decide {cp2['id']} approve\n" + hitl(stack, "decide", cp2["id"], "approve"))
        runner.join(timeout=60)
        data = result.get("data", {})
        print(f"\nrun {result.get('workflow_run_id')} ended {data.get('status')!r}; outputs:")
        for key, value in (data.get("outputs") or {}).items():
            print(f"  {key}: {value}")
        if data.get("status") != "succeeded":
            raise SystemExit("the demo run did not succeed")
        print("\ndemo OK")


if __name__ == "__main__":
    os.environ.setdefault("HITL_LOG_FORMAT", "json")
    main()
