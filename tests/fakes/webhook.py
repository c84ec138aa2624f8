"""A webhook receiver as a customer would write it: it checks `X-HITL-Signature` with
`verify_webhook_signature()` (the contract documented in services/notifier/channels/webhook.py and
README-channels.md), refuses what does not verify with 401, and records what it accepted."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.notifier.channels.webhook import WebhookSignatureError, verify_webhook_signature
from tests.fakes.server import FakeServer, Recorded

WEBHOOK_SECRET = "whsec-receiver-secret-4242"


class FakeReceiver(FakeServer):
    doc = "services/notifier/README-channels.md#webhook"

    def __init__(self, secret: str = WEBHOOK_SECRET) -> None:
        super().__init__()
        self.secret = secret
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[str] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook?key=receiver-url-key"

    def routes(self):
        return [("POST", "/hook", self.hook)]

    async def hook(self, request: Request, rec: Recorded) -> Response:
        if rec.headers.get("content-type") != "application/json":
            return Response(status_code=415)
        try:
            verify_webhook_signature(self.secret, rec.headers.get("x-hitl-signature"), rec.body)
        except WebhookSignatureError as exc:
            self.refused.append(exc.code)
            return Response(status_code=401)
        self.accepted.append(rec.json)
        return Response(status_code=204)
