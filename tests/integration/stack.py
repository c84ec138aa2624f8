"""An in-process stack for integration tests: the real decider service and the real ingest app on one
event loop, talking through the real RabbitMQ (a namespace of their own) and a real SQL store."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from services.decider.service import DeciderService
from services.ingest.app import create_app
from shared.broker import Broker
from shared.broker.signing import BOT_HEADER, BOT_SIGNATURE_HEADER, signature
from shared.settings import Settings
from shared.store import Database
from shared.topology import Queue, build_topology
from tests.conftest import APP_TOKEN, BOT, BOT_SECRET, REVIEWERS, TEST_KEY, verifier


class Stack:
    def __init__(self, settings: Settings, *, decider: bool = True, fast_path: bool = True) -> None:
        self.settings = settings
        self.fast_path = fast_path
        self.with_decider = decider
        self.db = Database(settings.database_url)
        self.topology = build_topology(settings.names)

    def broker(self, name: str) -> Broker:
        return Broker(self.settings.rabbitmq_url, name=name, topology=self.topology, prefetch=self.settings.prefetch,
                      max_attempts=self.settings.max_delivery_attempts, signing_key=TEST_KEY)

    async def __aenter__(self) -> Stack:
        self.db.migrate()
        self.events: list[dict[str, Any]] = []
        self.tap = self.broker("test-tap")
        tap_queue = f"{self.settings.namespace}.test.events"
        self.tap.consume(tap_queue, self._on_event, declare=Queue(tap_queue, durable=False), exclusive=True,
                         bindings=((self.settings.names.events, "#"),))
        await self.tap.start()
        self.decider_broker = self.service = self.deadlines = None
        if self.with_decider:
            await self.start_decider()
        self.ingest_broker = self.broker("test-ingest")
        self.app = create_app(self.settings, self.db, self.ingest_broker, start_broker=False,
                              fast_path=self.fast_path, verifier=verifier(self.settings))
        await self.ingest_broker.start()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://ingest",
                                      timeout=120)
        return self

    async def start_decider(self) -> None:
        self.decider_broker = self.broker("test-decider")
        self.service = DeciderService(self.settings, self.db, self.decider_broker, verifier(self.settings))
        await self.decider_broker.start()
        self.deadlines = asyncio.create_task(self.service.run_timers())

    async def stop_decider(self) -> None:
        self.service.stop()
        await self.deadlines
        await self.decider_broker.close()

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()
        self.app.state.replies.fail_all()
        await self.ingest_broker.close()
        if self.service:
            await self.stop_decider()
        await self.tap.delete_topology()
        await self.tap.close()
        self.db.dispose()

    async def _on_event(self, delivery) -> None:
        self.events.append({"routing_key": delivery.routing_key, **json.loads(delivery.body)})

    # ------------------------------------------------------------------ helpers
    async def checkpoint_call(self, body: dict[str, Any], token: str = APP_TOKEN, path: str = "/v1/checkpoints"):
        return await self.http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

    async def decide(self, checkpoint_id: str, body: dict[str, Any], reviewer: str = "alice"):
        return await self.http.post(f"/v1/checkpoints/{checkpoint_id}/decision", json=body,
                                    headers={"Authorization": f"Bearer {REVIEWERS[reviewer]}"})

    async def post(self, path: str, body: dict[str, Any], reviewer: str = "alice"):
        return await self.http.post(path, json=body, headers={"Authorization": f"Bearer {REVIEWERS[reviewer]}"})

    async def get(self, path: str, reviewer: str = "alice"):
        return await self.http.get(path, headers={"Authorization": f"Bearer {REVIEWERS[reviewer]}"})

    async def wait_open(self, run_id: str, node_id: str = "draft", round_: int | None = None,
                        timeout_s: float = 10) -> dict[str, Any]:
        """The open checkpoint of this run and node, once the decider has opened it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            r = await self.get(f"/v1/checkpoints?status=open&run_id={run_id}")
            for cp in r.json()["checkpoints"]:
                if cp["node_id"] == node_id and (round_ is None or cp["round"] == round_):
                    return cp
            await asyncio.sleep(0.05)
        raise AssertionError(f"no open checkpoint for {run_id}/{node_id} within {timeout_s}s")

    async def wait_event(self, kind: str, timeout_s: float = 10, **match) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            for ev in self.events:
                if ev["routing_key"] == kind and all(ev["checkpoint"].get(k) == v for k, v in match.items()):
                    return ev
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} event matching {match} within {timeout_s}s")

    async def publish_bot_decision(self, payload: Any, signed: bool = True) -> None:
        """As a chat bot does: to `hitl.decisions`, signed with the bot's own secret."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {BOT_HEADER: BOT, BOT_SIGNATURE_HEADER: signature(BOT_SECRET.encode(), body)} if signed else {}
        await self.tap.publish(self.settings.names.decisions, "bot", body, headers=headers, sign=False)


def run(coro):
    return asyncio.run(coro)
