"""What the attack scenarios share: a stack with two apps (alpha, beta), each with its reviewer and its
bot; a store view scoped to one app; forged and signed broker messages; DLQ draining; a leak scanner;
the retry-budget verdict; a store URL a scenario can move (a proxy in front of PostgreSQL, a SQLite
file on a small filesystem)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from sqlalchemy import text

from shared.broker.signing import BOT_HEADER, BOT_SIGNATURE_HEADER, INTERNAL_HEADER, bot_headers, signature
from tests.faults.helpers import CallResult, StoreView

ALPHA, BETA = "alpha", "beta"
APP_TOKENS = {ALPHA: "cp-alpha-token-0001", BETA: "cp-beta-token-0002"}
# alice reviews alpha only, bob beta only: bob is "a reviewer granted only B".
REVIEWER_TOKENS = {"alice": "rv-alice-alpha-token", "bob": "rv-bob-beta-token"}
PASSWORD = "console-pass-0123"
BOTS = {"alpha-bot": {"secret": "alpha-bot-secret-0123456", "acts_for": ["alice"], "apps": [ALPHA]},
        "beta-bot": {"secret": "beta-bot-secret-01234567", "acts_for": ["bob"], "apps": [BETA]}}


def two_app_env() -> dict[str, str]:
    from shared.passwords import hash_password

    hashed = hash_password(PASSWORD, iterations=1000)
    return {
        "HITL_APPS": json.dumps([{"name": name, "checkpoint_token": token} for name, token in APP_TOKENS.items()]),
        "HITL_REVIEWERS": json.dumps([
            {"name": "alice", "token": REVIEWER_TOKENS["alice"], "apps": [ALPHA], "password_hash": hashed},
            {"name": "bob", "token": REVIEWER_TOKENS["bob"], "apps": [BETA], "password_hash": hashed}]),
        "HITL_BOTS": json.dumps([{"name": name, **bot} for name, bot in BOTS.items()]),
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class AppStore(StoreView):
    """The store as one app owns it: its checkpoints only, the latest round per run (what its Dify
    node's last call was answered from)."""

    def __init__(self, url: str, app: str, round_: int | None = None) -> None:
        super().__init__(url)
        self.app = app
        self.round = round_  # only this round's checkpoints (None: the latest round of each run)

    def all_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(
                "SELECT id, app, kind, workflow_run_id, node_id, round, status, action, decided_by, reason, "
                "decision_channel, timeout_s, output, node_output, feedback FROM checkpoints WHERE app = :app "
                "ORDER BY round"), {"app": self.app})]

    def checkpoints(self, run_ids: set[str] | None = None) -> list[dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for r in self.all_rows():
            if self.round is not None and r["round"] != self.round:
                continue
            if run_ids is None or r["workflow_run_id"] in run_ids:
                latest[r["workflow_run_id"]] = r  # ordered by round: the last one wins
        return list(latest.values())

    def open_checkpoints(self) -> list[dict[str, Any]]:
        return [r for r in self.all_rows() if r["status"] == "open"]

    def full_history(self, checkpoint_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(
                "SELECT kind, actor, channel, action, outcome, code, message_id FROM checkpoint_history "
                "WHERE checkpoint_id = :id ORDER BY id"), {"id": checkpoint_id})]

    def parked(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(
                "SELECT id, workflow_run_id, apps, actor, status, checkpoint_id, code FROM parked_decisions"))]


def snapshot(store: AppStore, skip_run: str | None = None) -> dict[str, tuple]:
    """An alpha checkpoint as beta could have changed it (re-attaches of alpha's own node aside)."""
    rows = {}
    for cp in store.all_rows():
        if cp["workflow_run_id"] == skip_run:
            continue
        history = tuple((h["kind"], h["actor"], h["channel"], h["action"], h["outcome"])
                        for h in store.full_history(cp["id"]) if h["kind"] != "reattached")
        rows[cp["id"]] = (cp["status"], cp["action"], repr(cp["output"]), cp["decided_by"], cp["round"],
                          repr(cp["node_output"]), history)
    return rows


# ---------------------------------------------------------------------- the broker, as an attacker has it
def decision_bytes(**fields: Any) -> bytes:
    return json.dumps({"type": "decision.submitted", **fields}).encode()


def signed_by(bot: str, body: bytes, secret: str | None = None) -> dict[str, str]:
    return bot_headers(bot, secret or BOTS[bot]["secret"], body)


def forged_internal(body: bytes) -> dict[str, str]:
    """Headers that claim to come from our own processes, signed with a key that is not ours."""
    return {INTERNAL_HEADER: signature(b"not-the-internal-key", body)}


def wrong_bot_secret(bot: str, body: bytes) -> dict[str, str]:
    return {BOT_HEADER: bot, BOT_SIGNATURE_HEADER: signature(b"guessed-secret-0123456", body)}


async def drain(broker, queue: str, expect: int = 0, timeout_s: float = 15.0, quiet_s: float = 1.0) -> list:
    """Take every message of `queue`: at least `expect` (waiting up to `timeout_s` for them), then
    until the queue stays empty for `quiet_s` (so that a message too many is seen, not missed)."""
    got, deadline, empty_since = [], time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        d = await broker.get_one(queue)
        if d is not None:
            got.append(d)
            empty_since = None
            continue
        empty_since = empty_since or time.monotonic()
        if len(got) >= expect and time.monotonic() - empty_since >= quiet_s:
            break
        await asyncio.sleep(0.1)
    return got


def reason_of(delivery) -> str:
    value = delivery.headers.get("x-hitl-reason", "")
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- leaks
class Leaks:
    """Counts one app's secrets (texts, checkpoint ids) seen in answers given to another app's caller.
    What the caller sent itself (an id it names in a path) is not a leak when it comes back."""

    def __init__(self) -> None:
        self.markers: set[str] = set()
        self.count = 0
        self.problems: list[str] = []
        self.scanned = 0

    def scan(self, where: str, answer: str, sent: str = "") -> None:
        self.scanned += 1
        found = sorted(m for m in self.markers if m in answer and m not in sent)
        if found:
            self.count += 1
            self.problems.append(f"{where}: {found[:3]} in {answer[:200]}")

    def flag(self, problem: str) -> None:
        self.count += 1
        self.problems.append(problem)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------- honest verdicts
def retry_budget(tally, results: list[CallResult], budget_s: float, downtime_s: float) -> dict[str, Any]:
    """What became of the calls whose node used up its retries (`account` counted each as lost). When
    the fault (its measured downtime) lasted at least as long as the node's retry budget, Dify itself
    would have failed that run: such calls leave `lost`, and the row says `gave_up`, with the
    downtime — neither a pass nor a loss of ours. A node that gave up within its budget of a shorter
    fault stays a call we lost. Returns the row's fields."""
    gave_up = [r for r in results if r.gave_up]
    explained = [r for r in gave_up if downtime_s >= budget_s]
    tally.lost -= len(explained)
    fields: dict[str, Any] = {"gave_up": len(gave_up), "node_budget_s": round(budget_s, 1),
                              "downtime_s": round(downtime_s, 1)}
    if gave_up:
        fields["gave_up_after_s"] = round(max(r.waited_s for r in gave_up), 1)
    if explained:
        fields["result"] = "gave_up"
    return fields


def outage(log: list[tuple[float, Any]], start: float, end: float, period_s: float) -> dict[str, float]:
    """From a readiness probe's log (monotonic time, status): how long a process was not answering
    ready inside [start, end] in all, and its longest outage there."""
    down = total = longest = 0.0
    first = None
    for t, status in log:
        if not start <= t <= end:
            continue
        if status != 200:
            total += period_s
            first = t if first is None else first
            down = t - first + period_s
            longest = max(longest, down)
        else:
            first = None
    return {"down_s": round(total, 1), "longest_s": round(longest, 1)}
