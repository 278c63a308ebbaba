"""What both webhook routes share: a size limit, a signature check over the raw bytes,
JSON decoding, and the metrics every answer is counted in."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config import Settings
from ..metrics import RelayMetrics
from ..store.base import Store
from .body import BodyTooLarge, read_body
from .signature import SignatureCheck

log = logging.getLogger(__name__)


def reject(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def client_gone(metrics: RelayMetrics, path: str) -> Response:
    """The client left (or was cut off by the server's body deadline) before its body
    arrived: nothing was stored and nobody is left to read the 400. Not the relay's error,
    but counted and logged, worth a look when it happens often (a proxy cutting requests,
    an attack)."""
    metrics.client_disconnects.inc()
    log.warning("request body not received: client gone", extra={"path": path[:200]})
    return Response(status_code=400)


class SignedWebhook:
    route = ""
    name = ""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: RelayMetrics,
        on_stored: Callable[[], None],
        on_answer: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._on_stored = on_stored
        self._on_answer = on_answer  # each answer's status (the app's /readyz watches 503s)
        self._answered: dict[int, Counter] = {}
        self._duration = metrics.webhook_duration.labels(self.route)

    def check_signature(self, raw: bytes, header: str | None) -> SignatureCheck:
        raise NotImplementedError

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self.handle(request)
        self.count(response.status_code, started)
        return response

    def count(self, status: int, started: float) -> None:
        """An answer in the metrics (and to ``on_answer``), from its ``perf_counter`` start."""
        answered = self._answered.get(status)
        if answered is None:  # labels() costs a lookup per call: once per status instead
            answered = self._metrics.webhook_requests.labels(self.route, str(status))
            self._answered[status] = answered
        answered.inc()
        self._duration.observe(time.perf_counter() - started)
        self._on_answer(status)

    def decode(self, raw: bytes) -> tuple[bytes, Any] | Response:
        """The raw bytes and their JSON, or the 400 that refuses them (and a log line)."""
        try:
            return raw, json.loads(raw)
        except RecursionError:
            log.warning("%s webhook refused: JSON nested too deeply", self.name)
            return reject(400, "body is nested too deeply")
        except (UnicodeDecodeError, ValueError) as exc:
            log.warning("%s webhook refused: malformed JSON (%s)", self.name, type(exc).__name__)
            return reject(400, "body is not valid UTF-8 JSON")

    async def read_signed(self, request: Request) -> bytes | Response:
        """The raw bytes, signature checked, or the 4xx that refuses them (and a log line)."""
        try:
            raw = await read_body(request, self._settings.max_body_bytes)
        except BodyTooLarge:
            return self.too_large()
        refused = self.refuse_signature(raw, request.headers.get("x-hub-signature-256"))
        return raw if refused is None else refused

    def too_large(self) -> Response:
        limit = self._settings.max_body_bytes
        log.warning("%s webhook refused: body over %d bytes", self.name, limit)
        return reject(413, f"body exceeds {limit} bytes")

    def refuse_signature(self, raw: bytes, header: str | None) -> Response | None:
        """None if the signature holds, else the 401/403 that refuses it (and a log line)."""
        check = self.check_signature(raw, header)
        if check is SignatureCheck.OK:
            return None
        log.warning("%s webhook refused: signature %s", self.name, check.value)
        status = 401 if check is SignatureCheck.MISSING else 403
        return reject(status, f"X-Hub-Signature-256 {check.value}")
