"""``/webhooks/instagram/data-deletion``: Meta's data-deletion request callback.

Meta POSTs a form with ``signed_request`` = ``<base64url signature>.<base64url payload>``:
the signature is HMAC-SHA256 of the payload part (as sent, still encoded) with the app
secret; the payload is JSON with ``algorithm: "HMAC-SHA256"`` and the ``user_id`` whose
data is to go. The relay erases that customer at once (``privacy.erase``) and answers
``{"url": <status URL>, "confirmation_code": <code>}``; the status URL
(``GET .../data-deletion/<code>``) tells the person it was done. A forged, malformed or
unknown request is refused with a 400/403 and its reason, logged and counted
(``igbridge_webhook_requests{route, status}``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import records
from ..config import Settings
from ..metrics import RelayMetrics
from ..privacy import erase, valid_customer_id
from ..records import DELETIONS, DeletionStatus
from ..store.base import Store, StoreUnavailable
from .base import reject
from .body import BodyTooLarge, read_body

log = logging.getLogger(__name__)

ROUTE = "/webhooks/instagram/data-deletion"
# A signed request is a few hundred bytes; a form much larger is not Meta's.
MAX_FORM_BYTES = 8192
CODE = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    reason: str


def _unbase64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def parse_signed_request(signed: str, app_secrets: Sequence[bytes]) -> str | Refused:
    """The ``user_id`` of a genuine signed request, or why it is refused. Pure."""
    sig_part, dot, payload_part = signed.strip().partition(".")
    if not dot or not sig_part or not payload_part:
        return Refused(400, "signed_request is not <signature>.<payload>")
    try:
        given = _unbase64(sig_part)
        payload = json.loads(_unbase64(payload_part))
    except (binascii.Error, ValueError, RecursionError):
        return Refused(400, "signed_request is not base64url JSON")
    if not isinstance(payload, dict):
        return Refused(400, "signed_request payload is not a JSON object")
    if str(payload.get("algorithm", "")).upper() != "HMAC-SHA256":
        return Refused(400, "signed_request algorithm is not HMAC-SHA256")
    ok = False
    for secret in app_secrets:  # several during a rotation; no early exit
        expected = hmac.new(secret, payload_part.encode(), hashlib.sha256).digest()
        ok |= hmac.compare_digest(expected, given)
    if not ok:
        return Refused(403, "signed_request signature mismatch")
    user_id = payload.get("user_id")
    if not isinstance(user_id, str | int) or not valid_customer_id(str(user_id)):
        return Refused(400, "signed_request user_id missing or not an id")
    return str(user_id)


class DataDeletion:
    def __init__(self, settings: Settings, store: Store, metrics: RelayMetrics) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics

    def _answer(self, response: Response) -> Response:
        self._metrics.webhook_requests.labels(ROUTE, str(response.status_code)).inc()
        return response

    def _refuse(self, refused: Refused) -> Response:
        log.warning("data-deletion request refused: %s", refused.reason)
        return self._answer(reject(refused.status, refused.reason))

    async def request(self, request: Request) -> Response:
        try:
            raw = await read_body(request, MAX_FORM_BYTES)
        except BodyTooLarge:
            return self._refuse(Refused(413, f"form exceeds {MAX_FORM_BYTES} bytes"))
        try:
            form = parse_qs(raw.decode("ascii"), max_num_fields=8)
        except (UnicodeDecodeError, ValueError):
            return self._refuse(Refused(400, "body is not a URL-encoded form"))
        signed = form.get("signed_request")
        if not signed:
            return self._refuse(Refused(400, "signed_request missing"))
        parsed = parse_signed_request(signed[0], self._settings.app_secrets)
        if isinstance(parsed, Refused):
            return self._refuse(parsed)
        code = secrets.token_urlsafe(18)
        try:
            removed = await erase(self._store, parsed, why="meta data-deletion request")
            status = DeletionStatus(requested_at=time.time(), removed=removed)
            await records.put(self._store, DELETIONS, code, status)
        except StoreUnavailable as exc:
            # Meta shows the person an error and they may ask again; nothing was promised.
            log.error("data-deletion request not done: %s", exc)
            return self._answer(reject(503, "store unavailable, retry later"))
        url = f"{self._base(request)}{ROUTE}/{code}"
        return self._answer(JSONResponse({"url": url, "confirmation_code": code}))

    def _base(self, request: Request) -> str:
        if self._settings.public_url:
            return self._settings.public_url
        return str(request.base_url).rstrip("/") + self._settings.base_path

    async def status(self, request: Request) -> Response:
        code = str(request.path_params.get("code", ""))
        if CODE.fullmatch(code) is None:
            return self._refuse(Refused(400, "not a confirmation code"))
        try:
            found = await records.get(self._store, DELETIONS, code)
        except StoreUnavailable as exc:
            log.error("data-deletion status not read: %s", exc)
            return self._answer(reject(503, "store unavailable, retry later"))
        if found is None:
            return self._answer(reject(404, "no deletion request with this confirmation code"))
        return self._answer(
            JSONResponse(
                {
                    "confirmation_code": code,
                    "status": found.status,
                    "requested_at": found.requested_at,
                    "detail": "Every message and record this relay kept about you was deleted.",
                    "removed": found.removed,
                }
            )
        )
