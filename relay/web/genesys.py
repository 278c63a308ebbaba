"""``/webhooks/genesys``: agents' messages and typing events, signed by Genesys.

Stored durably and answered at once (Genesys waits 10 s, then retries); the outbound
worker does the sending.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..genesys.outbound import parse_outbound
from ..records import OUTBOUND
from ..store.base import NewJob, StoreUnavailable
from .base import SignedWebhook, reject
from .signature import SignatureCheck, verify_genesys_signature

log = logging.getLogger(__name__)

ROUTE = "/webhooks/genesys"


def _order_ms(value: str | None) -> int:
    if value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    return int(time.time() * 1000)


class GenesysWebhook(SignedWebhook):
    route = ROUTE
    name = "genesys"

    def check_signature(self, raw: bytes, header: str | None) -> SignatureCheck:
        secret = self._settings.genesys_webhook_secret.get_secret_value().encode("utf-8")
        return verify_genesys_signature(raw, header, secret)

    async def handle(self, request: Request) -> Response:
        raw = await self.read_signed(request)
        if isinstance(raw, Response):
            return raw
        msg = parse_outbound(raw)  # decodes the JSON too: malformed JSON is a 400 here
        if isinstance(msg, str):
            log.warning("genesys webhook refused: %s", msg)
            return reject(400, f"not an Open Messaging outbound message: {msg}")
        if msg.type == "Receipt" or (msg.type == "Event" and not msg.events):
            self._metrics.not_forwarded.labels(f"genesys_{msg.type.lower()}").inc()
            return JSONResponse({"accepted": 0})
        job = NewJob(msg.customer_id, msg.id, _order_ms(msg.channel.time), raw)
        try:
            stored = await self._store.enqueue(OUTBOUND, [job])
        except StoreUnavailable as exc:
            log.error("genesys webhook not stored: %s", exc)
            return reject(503, "store unavailable, retry later")
        if stored.duplicates:
            self._metrics.duplicates.labels(OUTBOUND).inc(stored.duplicates)
        if stored.accepted:
            self._on_stored()
        return JSONResponse({"accepted": stored.accepted, "duplicates": stored.duplicates})
