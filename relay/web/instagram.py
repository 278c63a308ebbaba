"""``/webhooks/instagram``: Meta's verification handshake and signed event deliveries."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..records import INTAKE
from ..store.base import NewJob, StoreUnavailable
from .base import SignedWebhook, reject
from .signature import SignatureCheck, verify_meta_signature, verify_token_matches

log = logging.getLogger(__name__)

ROUTE = "/webhooks/instagram"
# The ack's answer, encoded once.
STORED = json.dumps({"stored": True}).encode()


class InstagramWebhook(SignedWebhook):
    route = ROUTE
    name = "instagram"

    # Unique across processes and replicas sharing a store, increasing within one.
    _origin = f"{socket.gethostname()}-{os.getpid()}"
    _sequence = itertools.count()

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

    async def handle(self, request: Request) -> Response:
        """Verify, check it is an Instagram object, store the bytes as they came, answer.

        Parsing into events happens on the delivery side (``delivery.intake``): the ack
        costs a signature check, one JSON decode and one group-committed write."""
        read = await self.read_signed_json(request)
        if isinstance(read, Response):
            return read
        raw, body = read
        if not isinstance(body, dict) or body.get("object") != "instagram":
            log.warning("instagram webhook refused: not an instagram object")
            return reject(400, 'expected a JSON object with "object": "instagram"')
        # An increasing id, not the body's digest: the index entries of a batch land side
        # by side (a random key dirties a page of each index per webhook, and every dirty
        # page is written to the WAL and fsynced). A retry of the same body is dropped a
        # step later, by its events' ids.
        now_ns = time.time_ns()
        stamp = f"{now_ns:016x}.{self._origin}.{next(self._sequence)}"
        job = NewJob(stamp, stamp, now_ns // 1_000_000, raw)
        try:
            await self._store.enqueue(INTAKE, [job])
        except StoreUnavailable as exc:
            # 503 makes Meta retry later: better than a 200 for events we could not keep.
            log.error("instagram webhook not stored: %s", exc)
            return reject(503, "store unavailable, retry later")
        self._on_stored()
        return Response(STORED, media_type="application/json")
