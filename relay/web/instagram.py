"""``/webhooks/instagram``: Meta's verification handshake and signed event deliveries.

The POST is the relay's hot path, a raw ASGI endpoint (``SignedWebhook.__call__``): the
ack costs a signature check, one JSON decode and one group-committed write.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..store.base import StoreUnavailable
from .base import SignedWebhook, reject
from .signature import SignatureCheck, verify_meta_signature, verify_token_matches

log = logging.getLogger(__name__)

ROUTE = "/webhooks/instagram"
# The ack's answer, encoded once.
STORED = json.dumps({"stored": True}).encode()


class InstagramWebhook(SignedWebhook):
    route = ROUTE
    name = "instagram"

    def check_signature(self, raw: bytes, header: str | None) -> SignatureCheck:
        return verify_meta_signature(raw, header, self._settings.app_secrets)

    async def handshake(self, request: Request) -> Response:
        params = request.query_params
        expected = self._settings.meta_verify_token.get_secret_value()
        if params.get("hub.mode") == "subscribe" and verify_token_matches(
            params.get("hub.verify_token"), expected
        ):
            log.info("meta webhook verification accepted")
            return PlainTextResponse(params.get("hub.challenge", ""))
        log.warning("meta webhook verification refused: wrong mode or verify token")
        return PlainTextResponse("verification failed", status_code=403)

    async def take(self, raw: bytes) -> bytes | Response:
        """Check it is an Instagram object and store the bytes as they came.

        Parsing into events happens on the delivery side (``delivery.intake``)."""
        read = self.decode(raw)
        if isinstance(read, Response):
            return read
        body = read[1]
        if not isinstance(body, dict) or body.get("object") != "instagram":
            log.warning("instagram webhook refused: not an instagram object")
            return reject(400, 'expected a JSON object with "object": "instagram"')
        # Appended to the intake log as it came; a retry of the same body is dropped a
        # step later, by its events' ids.
        try:
            await self._store.append_intake([raw])
        except StoreUnavailable as exc:
            # 503 makes Meta retry later: better than a 200 for events we could not keep.
            log.error("instagram webhook not stored: %s", exc)
            return reject(503, "store unavailable, retry later")
        self._on_stored()
        return STORED
