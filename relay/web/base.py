"""What both webhook routes share: a size limit, a signature check over the raw bytes,
JSON decoding, the metrics every answer is counted in, and the POST as a raw ASGI
endpoint.

A POST is the relay's hot path: each route is called with the scope (``web.direct``
sends it there before Starlette's routing), so there are no Request or Response objects
for an accepted webhook: the body is taken from the ASGI messages and the 200 sent as two
messages. Refusals are rare and go through ordinary Starlette responses."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..config import Settings
from ..metrics import RelayMetrics
from ..store.base import Store
from .body import BodyTooLarge, receive_body
from .signature import SignatureCheck

log = logging.getLogger(__name__)

SIGNATURE_HEADER = b"x-hub-signature-256"
JSON_TYPE = (b"content-type", b"application/json")


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

    async def take(self, raw: bytes) -> bytes | Response:
        """A signed body: the JSON of its 200 once it is stored, or the 4xx/503 that
        refuses it (and a log line)."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The POST as a raw ASGI endpoint: size limit, signature, ``take``, the metrics."""
        started = time.perf_counter()
        declared: bytes | None = None
        signature: bytes | None = None
        for name, value in scope["headers"]:  # the first of a repeated header, as Starlette
            if name == b"content-length" and declared is None:
                declared = value
            elif name == SIGNATURE_HEADER and signature is None:
                signature = value
        answer: bytes | Response
        try:
            raw = await receive_body(receive, declared, self._settings.max_body_bytes)
        except BodyTooLarge:
            answer = self.too_large()
        except ClientDisconnect:
            await client_gone(self._metrics, scope["path"])(scope, receive, send)
            return
        else:
            header = None if signature is None else signature.decode("latin-1")
            refused = self.refuse_signature(raw, header)
            answer = await self.take(raw) if refused is None else refused
        if isinstance(answer, bytes):
            self.count(200, started)
            length = (b"content-length", str(len(answer)).encode())
            await send(
                {"type": "http.response.start", "status": 200, "headers": [length, JSON_TYPE]}
            )
            await send({"type": "http.response.body", "body": answer, "more_body": False})
            return
        self.count(answer.status_code, started)
        await answer(scope, receive, send)

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
