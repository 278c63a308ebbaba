"""``/webhooks/genesys``: agents' messages and typing events, signed by Genesys.

A raw ASGI endpoint like the Instagram one (``SignedWebhook.__call__``). Stored durably
and answered at once (Genesys waits 10 s, then retries); the outbound worker does the
sending. What it could not send is refused here with a 400 and the reason
(``genesys.outbound``): counted in ``igbridge_events_skipped_total`` as
``genesys_malformed``, ``genesys_invalid_time``, ``genesys_stale`` or
``genesys_future_timestamp`` (the same replay bounds as Instagram events').
"""

from __future__ import annotations

import json
import logging
import time

from starlette.responses import Response

from ..genesys.outbound import Refused, message_time, parse_outbound
from ..meta.events import MAX_AHEAD_MS
from ..records import OUTBOUND
from ..store.base import NewJob, StoreUnavailable
from .base import SignedWebhook, reject
from .signature import SignatureCheck, verify_genesys_signature

log = logging.getLogger(__name__)

ROUTE = "/webhooks/genesys"
NOTHING_ACCEPTED = json.dumps({"accepted": 0}, separators=(",", ":")).encode()


class GenesysWebhook(SignedWebhook):
    route = ROUTE
    name = "genesys"

    def check_signature(self, raw: bytes, header: str | None) -> SignatureCheck:
        secret = self._settings.genesys_webhook_secret.get_secret_value().encode("utf-8")
        return verify_genesys_signature(raw, header, secret)

    async def take(self, raw: bytes) -> bytes | Response:
        msg = parse_outbound(raw)  # decodes the JSON too: malformed JSON is a 400 here
        if isinstance(msg, str):
            self._metrics.skipped.labels("genesys_malformed").inc()
            log.warning("genesys webhook refused: %s", msg)
            return reject(400, f"not an Open Messaging outbound message: {msg}")
        if msg.type == "Receipt" or (msg.type == "Event" and not msg.events):
            self._metrics.not_forwarded.labels(f"genesys_{msg.type.lower()}").inc()
            return NOTHING_ACCEPTED
        now_ms = int(time.time() * 1000)
        horizon_ms = self._settings.replay_horizon_ms
        order_ms = message_time(msg, now_ms, horizon_ms, MAX_AHEAD_MS)
        if isinstance(order_ms, Refused):
            self._metrics.skipped.labels(f"genesys_{order_ms.reason}").inc()
            log.warning("genesys webhook refused: %s", order_ms.detail)
            return reject(400, order_ms.detail)
        job = NewJob(msg.customer_id, msg.id, order_ms, raw)
        try:
            stored = await self._store.enqueue(OUTBOUND, [job])
        except StoreUnavailable as exc:
            log.error("genesys webhook not stored: %s", exc)
            return reject(503, "store unavailable, retry later")
        if stored.duplicates:
            self._metrics.duplicates.labels(OUTBOUND).inc(stored.duplicates)
        if stored.accepted:
            self._on_stored()
        answer = {"accepted": stored.accepted, "duplicates": stored.duplicates}
        return json.dumps(answer, separators=(",", ":")).encode()
