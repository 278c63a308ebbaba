"""``/webhooks/genesys``: agents' messages and typing events, signed by Genesys.

Stored durably and answered at once (Genesys waits 10 s, then retries); the outbound
worker does the sending.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .body import BodyTooLarge, read_body
from .config import Settings
from .genesys.outbound import parse_outbound, verify_genesys_signature
from .meta.signature import SignatureCheck
from .metrics import RelayMetrics
from .store.base import NewJob, Store, StoreUnavailable

log = logging.getLogger(__name__)

OUTBOUND = "outbound"
ROUTE = "/webhooks/genesys"


def _reject(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _order_ms(value: str | None) -> int:
    if value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    return int(time.time() * 1000)


class GenesysWebhook:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: RelayMetrics,
        on_stored: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._secret = settings.genesys_webhook_secret.get_secret_value().encode("utf-8")
        self._store = store
        self._metrics = metrics
        self._on_stored = on_stored

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._receive(request)
        self._metrics.webhook_requests.labels(ROUTE, str(response.status_code)).inc()
        self._metrics.webhook_duration.labels(ROUTE).observe(time.perf_counter() - started)
        return response

    async def _receive(self, request: Request) -> Response:
        try:
            raw = await read_body(request, self._settings.max_body_bytes)
        except BodyTooLarge:
            return _reject(413, f"body exceeds {self._settings.max_body_bytes} bytes")
        check = verify_genesys_signature(
            raw, request.headers.get("x-hub-signature-256"), self._secret
        )
        if check is not SignatureCheck.OK:
            log.warning("genesys webhook refused: signature %s", check.value)
            status = 401 if check is SignatureCheck.MISSING else 403
            return _reject(status, f"X-Hub-Signature-256 {check.value}")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return _reject(400, "body is not valid UTF-8 JSON")
        msg = parse_outbound(body)
        if isinstance(msg, str):
            log.warning("genesys webhook refused: %s", msg)
            return _reject(400, f"not an Open Messaging outbound message: {msg}")
        if msg.type == "Receipt" or (msg.type == "Event" and not msg.events):
            self._metrics.not_forwarded.labels(f"genesys_{msg.type.lower()}").inc()
            return JSONResponse({"accepted": 0})
        job = NewJob(msg.customer_id, msg.id, _order_ms(msg.channel.time), raw)
        try:
            stored = await self._store.enqueue(OUTBOUND, [job])
        except StoreUnavailable as exc:
            log.error("genesys webhook not stored: %s", exc)
            return _reject(503, "store unavailable, retry later")
        if stored.duplicates:
            self._metrics.duplicates.labels(OUTBOUND).inc(stored.duplicates)
        if stored.accepted:
            self._on_stored()
        return JSONResponse({"accepted": stored.accepted, "duplicates": stored.duplicates})
