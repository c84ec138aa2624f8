"""Conflicting decisions at once from the HTTP API, the `hitl` CLI and the bot exchange: one wins,
the others are refused `already_resolved` (409 over HTTP, exit 1 from the CLI, a history row for the
bot), the held Dify call gets the winner, and the history shows every attempt."""
from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time

import httpx
import pytest

from demo.stack import REVIEWERS, ROOT
from tests.faults.conftest import scaled
from tests.faults.helpers import (
    REVIEWER_TOKEN,
    DifyNode,
    StoreView,
    account,
    checkpoint_body,
    finish,
    open_broker,
    publish_decision,
    start_call,
    wait_until,
)

pytestmark = pytest.mark.timeout(600)

# The bot decides for dana: a bot message's actor must be a reviewer granted the app (issue "Decision
# policies"), or the decision is refused like one for a checkpoint that does not exist.
BOT_REVIEWER = {"name": "dana", "token": "rv-dana-token", "apps": ["demo"], "slack": "U0DANA"}


def cli_decide(stack, cp_id: str) -> subprocess.CompletedProcess:
    env = {**stack.env, "HITL_API_URL": stack.ingest_url, "HITL_TOKEN": "rv-bob-token", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "services.cli.main", "decide", cp_id, "edit",
                           "--output", '{"text": "cli"}'],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_conflicting_decisions_from_http_cli_and_bot_one_wins(stacks, row):
    stack = stacks("conflicts", processes=("sim", "decider", "ingest"),
                   env={"HITL_REVIEWERS": json.dumps([*REVIEWERS, BOT_REVIEWER])})
    store = StoreView(stack.db_url)
    n = scaled(24, minimum=3)
    started = time.monotonic()

    async def scenario():
        node = DifyNode(stack.ingest_url, max_retries=200, interval_s=0.2)
        broker = await open_broker(stack)
        http = httpx.AsyncClient(timeout=15)
        results, sem = [], asyncio.Semaphore(100)
        bodies = [checkpoint_body() for _ in range(n)]
        calls = [start_call(node, b, results, sem) for b in bodies]
        runs = {b["workflow_run_id"] for b in bodies}
        assert await wait_until(lambda: len(store.checkpoints(runs)) >= n, 60)
        cps = store.checkpoints(runs)
        verdicts = {"http": {}, "cli": {}, "bot": 0}
        batch = asyncio.Semaphore(6)

        async def fight(cp):
            async with batch:
                cli = asyncio.create_task(asyncio.to_thread(cli_decide, stack, cp["id"]))
                await asyncio.sleep(random.uniform(0.3, 1.2))  # about when the CLI process is up and sends
                http_t = asyncio.create_task(http.post(f"{stack.ingest_url}/v1/checkpoints/{cp['id']}/decision",
                                                       json={"action": "approve"},
                                                       headers={"Authorization": f"Bearer {REVIEWER_TOKEN}"}))
                await publish_decision(broker, stack, {"checkpoint_id": cp["id"], "action": "abort",
                                                       "reason": "bot says no", "actor": "dana", "channel": "slack"})
                verdicts["bot"] += 1
                r, out = await http_t, await cli
                code = (r.json().get("error") or {}).get("code") if r.status_code != 200 else "applied"
                verdicts["http"][code] = verdicts["http"].get(code, 0) + 1
                cli_code = "applied" if out.returncode == 0 else (
                    "already_resolved" if "already_resolved" in out.stderr + out.stdout else out.stderr.strip()[-120:])
                verdicts["cli"][cli_code] = verdicts["cli"].get(cli_code, 0) + 1
                return cp["id"], code, cli_code

        fights = await asyncio.gather(*(fight(cp) for cp in cps))
        unfinished = await finish(calls, 60)
        tally = account(results, store)
        tally.errors += unfinished
        # the history shows every attempt: three decisions, exactly one applied, the others already_resolved
        for cp_id, http_code, cli_code in fights:
            hist = await wait_until(lambda cp_id=cp_id: (h := [x for x in store.history(cp_id)
                                                               if x["kind"] == "decision"])
                                    and len(h) >= 3 and h, 15)
            if not hist:
                tally.lost += 1
                tally.problems.append(f"{cp_id}: history {store.history(cp_id)}")
                continue
            applied = [h for h in hist if h["outcome"] == "applied"]
            refused = [h for h in hist if h["outcome"] == "rejected"]
            # the CLI is a client of the HTTP API: its channel is "api" (it says "cli" as its client); a bot's
        # channel is the signing bot's name, whatever the message says
            who = sorted((h["actor"], h["channel"]) for h in hist)
            if len(applied) != 1 or len(refused) != 2 or any(h["code"] != "already_resolved" for h in refused) \
                    or who != [("alice", "api"), ("bob", "api"), ("dana", "bot:demo-bot")]:
                tally.duplicated += 1
                tally.problems.append(f"{cp_id}: history {hist}")
            if sorted([http_code, cli_code]).count("applied") > 1 or any(c not in ("applied", "already_resolved")
                                                                          for c in (http_code, cli_code)):
                tally.errors += 1
                tally.problems.append(f"{cp_id}: http {http_code} cli {cli_code}")
        await node.aclose()
        await broker.close()
        await http.aclose()
        return tally, verdicts

    tally, verdicts = asyncio.run(scenario())
    row("conflicting HTTP + CLI + bot", **tally.counts(), seconds=time.monotonic() - started,
        http=verdicts["http"], cli=verdicts["cli"])
    print(f"\nconflicts: {verdicts}; problems {tally.problems[:5]}")
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:10]
    store.close()
