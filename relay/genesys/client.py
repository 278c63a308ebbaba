"""Genesys Cloud Open Messaging client: inbound messages (and, later, receipts and events)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from .auth import TokenProvider
from .errors import PermanentError, TransientError
from .http import classify_response, error_reason, retry_after_seconds
from .payloads import InboundMessage

# Genesys (and the seed's "???" failure) need the charset spelled out.
JSON_UTF8 = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class InboundAccepted:
    message_id: str | None
    conversation_id: str | None


def encode_json(body: object) -> bytes:
    """UTF-8 JSON with characters as themselves, never ``?`` and never lossy."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class GenesysClient:
    def __init__(
        self, http: httpx.AsyncClient, api_url: str, integration_id: str, tokens: TokenProvider
    ) -> None:
        self._http = http
        self._api = api_url
        self._integration = integration_id
        self.tokens = tokens

    def _inbound_url(self, kind: str) -> str:
        return f"{self._api}/api/v2/conversations/messages/{self._integration}/inbound/open/{kind}"

    async def send_inbound(self, message: InboundMessage) -> InboundAccepted:
        """Deliver a customer's message; the response carries the conversation id."""
        body = await self._post(
            self._inbound_url("message"), message.body(), params={"prefetchConversationId": "true"}
        )
        conv = body.get("conversationId")
        msg_id = body.get("id")
        return InboundAccepted(
            message_id=msg_id if isinstance(msg_id, str) else None,
            conversation_id=conv if isinstance(conv, str) else None,
        )

    async def send_structured_response(self, message: InboundMessage) -> InboundAccepted:
        """A customer's answer to a quick reply or button (``content`` holds ButtonResponse)."""
        body = await self._post(self._inbound_url("structured/response"), message.body())
        msg_id = body.get("id")
        return InboundAccepted(msg_id if isinstance(msg_id, str) else None, None)

    async def send_receipt(
        self,
        message_id: str,
        customer_id: str,
        status: str,
        *,
        time: str,
        reasons: list[dict[str, str]] | None = None,
    ) -> None:
        """Tell Genesys the final fate of an agent's message (``Delivered`` or ``Failed``)."""
        receipt: dict[str, object] = {
            "id": message_id,
            "channel": {"to": {"id": customer_id, "idType": "Opaque"}, "time": time},
            "status": status,
            "direction": "Outbound",
            "isFinalReceipt": True,
        }
        if reasons:
            receipt["reasons"] = reasons
        await self._post(self._inbound_url("receipt"), receipt)

    async def _post(
        self, url: str, payload: object, *, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        content = encode_json(payload)
        for attempt in (1, 2):
            token = await self.tokens.token()
            try:
                resp = await self._http.post(
                    url,
                    content=content,
                    params=params,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": JSON_UTF8},
                )
            except httpx.TimeoutException:
                raise TransientError("Genesys timed out") from None
            except httpx.HTTPError as exc:
                raise TransientError(f"Genesys unreachable: {type(exc).__name__}") from None
            if resp.status_code == 401 and attempt == 1:
                # The token was revoked or expired early: fetch a new one, try once more.
                self.tokens.invalidate(token)
                continue
            kind = classify_response(resp.status_code)
            if kind == "ok":
                try:
                    parsed = resp.json()
                except ValueError:
                    return {}
                return parsed if isinstance(parsed, dict) else {}
            if kind == "transient":
                raise TransientError(
                    error_reason(resp),
                    status=resp.status_code,
                    retry_after=retry_after_seconds(resp),
                )
            raise PermanentError(error_reason(resp), status=resp.status_code)
        raise TransientError("Genesys refused a freshly issued token (HTTP 401)", status=401)
