"""``/webhooks/instagram``: Meta's verification handshake and signed event deliveries.

The POST is the relay's hot path: it is a raw ASGI endpoint (``InstagramWebhook`` is
called with the scope), reached before Starlette's routing (``web.direct``): no Request or
Response objects, the body taken from the first ASGI message, the ack's headers encoded
once. Refusals are rare and go through ordinary Starlette responses.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ..store.base import StoreUnavailable
from .base import SignedWebhook, client_gone, reject
from .body import BodyTooLarge, receive_body
from .signature import SignatureCheck, verify_meta_signature, verify_token_matches

log = logging.getLogger(__name__)

ROUTE = "/webhooks/instagram"
# The ack's answer, encoded once.
STORED = json.dumps({"stored": True}).encode()
STORED_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-length", str(len(STORED)).encode()),
        (b"content-type", b"application/json"),
    ],
}
STORED_BODY = {"type": "http.response.body", "body": STORED, "more_body": False}
SIGNATURE_HEADER = b"x-hub-signature-256"


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The POST as a raw ASGI endpoint: the answers, logs and metrics of ``receive``."""
        started = time.perf_counter()
        declared: bytes | None = None
        signature: bytes | None = None
        for name, value in scope["headers"]:  # the first of a repeated header, as Starlette
            if name == b"content-length" and declared is None:
                declared = value
            elif name == SIGNATURE_HEADER and signature is None:
                signature = value
        refused: Response | None
        try:
            raw = await receive_body(receive, declared, self._settings.max_body_bytes)
        except BodyTooLarge:
            refused = self.too_large()
        except ClientDisconnect:
            await client_gone(self._metrics, scope["path"])(scope, receive, send)
            return
        else:
            header = None if signature is None else signature.decode("latin-1")
            refused = self.refuse_signature(raw, header)
            if refused is None:
                refused = await self.take(raw)
        if refused is None:
            self.count(200, started)
            await send(STORED_START)
            await send(STORED_BODY)
            return
        self.count(refused.status_code, started)
        await refused(scope, receive, send)

    async def take(self, raw: bytes) -> Response | None:
        """Check it is an Instagram object and store the bytes as they came: None once
        stored, else the 4xx/503 that refuses it (and a log line).

        Parsing into events happens on the delivery side (``delivery.intake``): the ack
        costs a signature check, one JSON decode and one group-committed write."""
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
        return None
