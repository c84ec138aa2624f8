"""Forged broker messages, in app alpha's name: unsigned, a wrong bot secret, an unknown bot, a forged
internal signature, a bot acting for someone it may not (alpha's reviewer through beta's bot, beta's
reviewer through alpha's bot), a group or a name that is no reviewer as the actor, a claimed
`console` channel; checkpoint requests and run ends published without our key. Each lands in its DLQ
with the reason it earns and changes nothing of alpha; then alpha's own bot, claiming to be the
console, decides every checkpoint and is recorded as `bot:alpha-bot`."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from shared.models import CheckpointRequested, RunEnded
from shared.topology import CHECKPOINT_REQUESTED, RUN_ENDED, Names, dlq_name
from tests.faults.attacks import (
    ALPHA,
    APP_TOKENS,
    AppStore,
    Leaks,
    decision_bytes,
    drain,
    forged_internal,
    reason_of,
    signed_by,
    snapshot,
    two_app_env,
    wrong_bot_secret,
)
from tests.faults.conftest import scaled
from tests.faults.helpers import DifyNode, account, checkpoint_body, finish, open_broker, start_call, wait_until

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack(stacks):
    return stacks("forgeries", env=two_app_env(), processes=("decider", "ingest"))


def forgeries(cp: dict) -> list[tuple[str, bytes, dict, str]]:
    """(what, body, headers, the DLQ reason it must get) for alpha's checkpoint `cp`."""
    def body(**fields) -> bytes:
        return decision_bytes(checkpoint_id=cp["id"], action="approve", **fields)

    alice, console = body(actor="alice"), body(actor="alice", channel="console")
    as_bob, legal, mallory = body(actor="bob"), body(actor="group:legal"), body(actor="mallory")
    for_alice_by_beta = body(actor="alice", channel="console")
    return [
        ("unsigned", alice, {}, "unsigned message"),
        ("unsigned, channel console", console, {}, "unsigned message"),
        ("wrong bot secret", console, wrong_bot_secret("alpha-bot", console), "bad signature for bot 'alpha-bot'"),
        ("unknown bot", alice, signed_by("alpha-bot", alice) | {"x-hitl-bot": "ghost"}, "unknown bot 'ghost'"),
        ("forged internal signature", console, forged_internal(console), "bad internal signature"),
        ("a bot for someone it may not act for", for_alice_by_beta, signed_by("beta-bot", for_alice_by_beta),
         "bot beta-bot: bot 'beta-bot' may not act for 'alice'"),
        ("a bot for a reviewer of another app", as_bob, signed_by("alpha-bot", as_bob),
         "bot alpha-bot: bot 'alpha-bot' may not act for 'bob'"),
        ("a group as the actor", legal, signed_by("alpha-bot", legal),
         "bot alpha-bot: 'group:legal' is not a reviewer"),
        ("a name that is no reviewer", mallory, signed_by("alpha-bot", mallory),
         "bot alpha-bot: 'mallory' is not a reviewer"),
    ]


def test_forged_broker_messages_are_dead_lettered_with_a_reason_and_never_applied(stack, row):
    alpha = AppStore(stack.db_url, ALPHA)
    names = Names(stack.env["HITL_NAMESPACE"])
    n = scaled(20, minimum=4)
    started = time.monotonic()
    leaks = Leaks()

    async def scenario():
        node = DifyNode(stack.ingest_url, APP_TOKENS[ALPHA], max_retries=300, interval_s=0.2)
        broker = await open_broker(stack)
        await drain(broker, dlq_name(names.decisions_queue), quiet_s=0.5)
        await drain(broker, dlq_name(names.checkpoints_queue), quiet_s=0.5)
        results, sem = [], asyncio.Semaphore(100)
        bodies = [checkpoint_body() for _ in range(n)]
        runs = {b["workflow_run_id"] for b in bodies}
        calls = [start_call(node, b, results, sem) for b in bodies]
        assert await wait_until(lambda: len([c for c in alpha.checkpoints(runs) if c["status"] == "open"]) >= n, 60)
        cps = alpha.checkpoints(runs)
        before = snapshot(alpha)
        expected: list[str] = []
        for cp in cps:
            for _what, body, headers, reason in forgeries(cp):
                await broker.publish(names.decisions, "", body, headers=headers, sign=False,
                                     message_id=str(uuid.uuid4()))
                expected.append(reason)
        # our own commands, published without our key: a request for alpha's run, a run end
        commands = []
        for cp in cps:
            req = CheckpointRequested(app=ALPHA, workflow_run_id=cp["workflow_run_id"], node_id="draft", round=9,
                                      node_output={"text": "forged"}, timeout_s=300, max_rounds=9)
            ended = RunEnded(app=ALPHA, workflow_run_id=cp["workflow_run_id"], status="stopped")
            commands += [(CHECKPOINT_REQUESTED, req.to_bytes(), {}), (RUN_ENDED, ended.to_bytes(), {}),
                         (RUN_ENDED, ended.to_bytes(), forged_internal(ended.to_bytes()))]
        for key, body, headers in commands:
            await broker.publish(names.commands, key, body, headers=headers, sign=False, message_id=str(uuid.uuid4()))
        dead = await drain(broker, dlq_name(names.decisions_queue), expect=len(expected), timeout_s=30)
        dead_commands = await drain(broker, dlq_name(names.checkpoints_queue), expect=len(commands), timeout_s=30)
        after = snapshot(alpha)
        for cid, state in before.items():
            if after.get(cid) != state:
                leaks.flag(f"a forged message changed alpha's {cid}: {state} → {after.get(cid)}")
        if len(alpha.all_rows()) != len(before):
            leaks.flag(f"forged requests opened checkpoints: {len(alpha.all_rows())} rows, {len(before)} before")
        # the real bot, claiming to be the console: applied, recorded as the bot
        for cp in cps:
            body = decision_bytes(checkpoint_id=cp["id"], action="approve", actor="alice", channel="console")
            await broker.publish(names.decisions, "", body, headers=signed_by("alpha-bot", body), sign=False,
                                 message_id=str(uuid.uuid4()))
        unfinished = await finish(calls, 60)
        tally = account(results, alpha, expected={r: "approve" for r in runs})
        tally.errors += unfinished
        for cp in cps:
            for h in alpha.full_history(cp["id"]):
                if h["kind"] == "decision" and (h["actor"], h["channel"]) != ("alice", "bot:alpha-bot"):
                    leaks.flag(f"{cp['id']}: decision by {h['actor']} recorded via {h['channel']}")
        await node.aclose()
        await broker.close()
        return tally, expected, dead, dead_commands, commands

    tally, expected, dead, dead_commands, commands = asyncio.run(scenario())
    reasons = [reason_of(d) for d in dead]
    # each reason must be the one its forgery earns, as many times as that forgery was sent
    got = Counter(next((want for want in set(expected) if r.startswith(want)), f"unexpected: {r[:80]}")
                  for r in reasons)
    wrong = sorted(set(got.items()) ^ set(Counter(expected).items()))
    no_reason = [d.body[:60] for d in dead_commands if not reason_of(d)]
    tally.iterations = len(expected) + len(commands)
    tally.lost += max(0, len(expected) - len(dead)) + max(0, len(commands) - len(dead_commands))
    row("forged broker messages → DLQ", **tally.counts(), leaked=leaks.count, seconds=time.monotonic() - started,
        dead_lettered=len(dead) + len(dead_commands))
    print(f"\nforgeries: {len(dead)} decisions and {len(dead_commands)} commands dead-lettered; reasons "
          f"{sorted({r[:60] for r in reasons})}; leaks {leaks.problems[:5]}")
    assert len(dead) == len(expected) and not wrong, wrong[:10]
    assert len(dead_commands) == len(commands) and not no_reason, no_reason[:5]
    assert leaks.count == 0, leaks.problems[:20]
    assert tally.lost == 0 and tally.duplicated == 0 and tally.errors == 0, tally.problems[:20]
