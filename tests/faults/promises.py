"""Decisions as promises: every decision ingest answered 200 or 202 (or a bot got confirmed by
RabbitMQ) must end up applied. `Promises` sends them through each door and asks, at the end,
`GET /v1/decisions/{id}` what became of each one — the README's "a 202 is a promise"."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from tests.faults.helpers import REVIEWER_TOKEN, publish_decision

ALICE = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}


class Promises:
    def __init__(self, stack, http: httpx.AsyncClient) -> None:
        self.stack = stack
        self.http = http
        self.made: dict[str, str] = {}  # decision id → the door it came through
        self.answers: Counter = Counter()  # (door, status) → how many
        self.retry_later: list[tuple[str, dict]] = []  # answered 503: no promise, the caller sends it again

    def _kept(self, door: str, r: httpx.Response) -> None:
        self.answers[(door, r.status_code)] += 1
        if r.status_code in (200, 202):
            body = r.json()
            self.made[body["decision_id"]] = door

    async def node_confirmation(self, run_id: str, satisfied: bool = True) -> int:
        body = {"workflow_id": run_id, "node_id": "draft", "satisfied": satisfied,
                **({} if satisfied else {"feedback": "shorter"})}
        try:
            r = await self.http.post(f"{self.stack.ingest_url}/api/node-confirmation", json=body, headers=ALICE)
        except httpx.HTTPError as exc:
            self.answers[("node-confirmation", type(exc).__name__)] += 1
            return 0
        self._kept("node-confirmation", r)
        return r.status_code

    async def by_id(self, checkpoint_id: str, action: str = "approve") -> int:
        path = f"/v1/checkpoints/{checkpoint_id}/decision"
        try:
            r = await self.http.post(self.stack.ingest_url + path, json={"action": action}, headers=ALICE)
        except httpx.HTTPError as exc:
            self.answers[("by-id", type(exc).__name__)] += 1
            self.retry_later.append((path, {"action": action}))
            return 0
        self._kept("by-id", r)
        if r.status_code == 503:
            self.retry_later.append((path, {"action": action}))
        return r.status_code

    async def bot(self, broker, checkpoint_id: str) -> None:
        """As the demo bot for alice: published with confirms, so a promise once `publish` returns."""
        decision_id = str(uuid.uuid4())  # the message's `id` (the decision's id; the AMQP message id aside)
        await publish_decision(broker, self.stack, {"id": decision_id, "checkpoint_id": checkpoint_id,
                                                    "action": "approve", "actor": "alice"},
                               message_id=decision_id, timeout_s=60)
        self.made[decision_id] = "bot"
        self.answers[("bot", "confirmed")] += 1

    async def resend_refused(self) -> None:
        """A 503 promised nothing: the caller tries again, now that the fault is over."""
        todo, self.retry_later = self.retry_later, []
        for path, body in todo:
            for _ in range(60):
                try:
                    r = await self.http.post(self.stack.ingest_url + path, json=body, headers=ALICE)
                except httpx.HTTPError:
                    await asyncio.sleep(0.5)
                    continue
                if r.status_code != 503:
                    self._kept("by-id (again)", r)
                    break
                await asyncio.sleep(0.5)

    async def broken(self, timeout_s: float = 60.0) -> list[str]:
        """The promises not kept: decisions not `applied` by the end of `timeout_s` (the scenarios
        send one decision per checkpoint, so no refusal is expected either)."""
        pending = dict(self.made)
        deadline = time.monotonic() + timeout_s
        seen: dict[str, Any] = {}
        while pending and time.monotonic() < deadline:
            for decision_id in list(pending):
                try:
                    r = await self.http.get(f"{self.stack.ingest_url}/v1/decisions/{decision_id}", headers=ALICE)
                except httpx.HTTPError:
                    continue
                seen[decision_id] = (r.status_code, r.json().get("status"), r.json().get("code"))
                if r.status_code == 200 and r.json().get("status") == "applied":
                    pending.pop(decision_id)
            if pending:
                await asyncio.sleep(0.5)
        return [f"{self.made[d]} decision {d}: {seen.get(d)}" for d in pending]


async def poll_ready(url: str, stop: asyncio.Event, log: list[tuple[float, int | str]], period_s: float = 0.3) -> None:
    """/readyz of a process, every `period_s`, into `log` as (monotonic time, status)."""
    async with httpx.AsyncClient(timeout=2) as http:
        while not stop.is_set():
            try:
                status: int | str = (await http.get(url + "/readyz")).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            log.append((time.monotonic(), status))
            try:
                await asyncio.wait_for(stop.wait(), period_s)
            except TimeoutError:
                pass


def readiness(log: list[tuple[float, int | str]], start: float, end: float) -> dict[str, int]:
    """How the readiness probe answered inside [start, end]: {"ready": n, "not_ready": m}."""
    inside = [s for t, s in log if start <= t <= end]
    return {"ready": sum(1 for s in inside if s == 200), "not_ready": sum(1 for s in inside if s != 200)}
