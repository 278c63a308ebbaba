"""The Instagram Send API, with Graph errors sorted by what the relay must do about them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from ..http import TRANSPORT_ERRORS, fetch
from ..retry_after import retry_after_seconds
from .graph import GraphError

WINDOW_SUBCODES = frozenset({2534022, 2018278})
# Code 10 with this subcode: another app controls the thread (conversation routing /
# handover). Reported by integrators, not in Meta's error table: unconfirmed.
HANDOVER_SUBCODES = frozenset({2018300})
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80002})
UNAVAILABLE_SUBCODES = frozenset({1545041, 2018001})


class SendErrorKind(StrEnum):
    WINDOW = "window"  # outside the 24-hour window (or the tag's 7 days)
    HANDOVER = "handover"  # another app controls the thread: wait until control comes back
    TOKEN = "token"  # noqa: S105 (a kind of error, not a secret) — access token invalid or expired: nothing will work until replaced
    THROTTLED = "throttled"
    DESTINATION = "destination"  # no such user, or the user is unavailable
    TRANSIENT = "transient"  # 5xx, timeouts, network
    REJECTED = "rejected"  # anything else Meta refused: retrying will not help


class SendError(Exception):
    def __init__(self, kind: SendErrorKind, error: GraphError, retry_after: float | None = None):
        super().__init__(f"{kind.value}: {error.message or f'HTTP {error.status}'}")
        self.kind = kind
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str | None


def classify(error: GraphError) -> SendErrorKind:
    if error.code == 10 and error.subcode in WINDOW_SUBCODES:
        return SendErrorKind.WINDOW
    if error.code == 10 and error.subcode in HANDOVER_SUBCODES:
        return SendErrorKind.HANDOVER
    if error.code == 190:
        return SendErrorKind.TOKEN
    if error.code in THROTTLE_CODES or error.status == 429:
        return SendErrorKind.THROTTLED
    if error.code == 551 or error.subcode in UNAVAILABLE_SUBCODES:
        return SendErrorKind.DESTINATION
    if error.status >= 500 or error.status == 0:
        return SendErrorKind.TRANSIENT
    return SendErrorKind.REJECTED


class SendClient:
    def __init__(self, http: aiohttp.ClientSession, graph_base: str, access_token: str) -> None:
        self._http = http
        self._base = graph_base.rstrip("/")
        self._messages = f"{self._base}/me/messages"
        self.set_access_token(access_token)

    def set_access_token(self, access_token: str) -> None:
        """Use a rotated token from now on."""
        # Built once per token, not per request (aiohttp copies what it is given).
        self._auth = {"Authorization": f"Bearer {access_token}"}
        self._auth_json = {**self._auth, "Content-Type": "application/json; charset=utf-8"}

    async def _post(
        self, url: str, *, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> Sent:
        headers = self._auth
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers = self._auth_json
        try:
            resp = await fetch(
                self._http, "POST", url, data=content, params=params, headers=headers
            )
        except TRANSPORT_ERRORS as exc:
            err = GraphError(0, None, None, f"Instagram unreachable: {type(exc).__name__}")
            raise SendError(SendErrorKind.TRANSIENT, err) from None
        if resp.status != 200:
            err = GraphError.from_response(resp)
            raise SendError(classify(err), err, retry_after_seconds(resp.headers))
        try:
            data = resp.json()
        except ValueError:
            data = {}
        mid = data.get("message_id") or data.get("id") if isinstance(data, dict) else None
        return Sent(str(mid) if mid else None)

    async def send(self, body: dict[str, Any]) -> Sent:
        """``POST /me/messages`` (works with Facebook Login page tokens and Instagram Login)."""
        return await self._post(self._messages, body=body)

    async def reply_publicly(self, comment_id: str, text: str) -> Sent:
        """A public reply under the customer's comment."""
        return await self._post(f"{self._base}/{comment_id}/replies", params={"message": text})
