"""Genesys Cloud Open Messaging client: inbound messages, structured answers, receipts."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from .auth import TokenProvider
from .payloads import CustomerMessage, InboundMessage, StructuredResponse
from .rest import GenesysRest


@dataclass(frozen=True, slots=True)
class InboundAccepted:
    message_id: str | None
    conversation_id: str | None


class GenesysClient:
    def __init__(
        self, http: aiohttp.ClientSession, api_url: str, integration_id: str, tokens: TokenProvider
    ) -> None:
        self.rest = GenesysRest(http, api_url, tokens)
        self.tokens = tokens
        self._inbound = f"/api/v2/conversations/messages/{integration_id}/inbound/open"
        self._inbound_message = f"{self._inbound}/message?prefetchConversationId=true"

    async def send_inbound(self, message: InboundMessage) -> InboundAccepted:
        """Deliver a customer's message; the response carries the conversation id."""
        # The query written into the path: a params dict is merged into the URL anew on
        # every request.
        body = await self.rest.request("POST", self._inbound_message, message.encoded())
        conv = body.get("conversationId")
        msg_id = body.get("id")
        return InboundAccepted(
            message_id=msg_id if isinstance(msg_id, str) else None,
            conversation_id=conv if isinstance(conv, str) else None,
        )

    async def send_structured_response(self, answer: StructuredResponse) -> InboundAccepted:
        """A customer's answer to an agent's quick reply or button. The route answers with
        the normalized message (OpenStructuredResponseNormalizedMessage): its ``id`` is
        Genesys's message id; it has no ``prefetchConversationId`` and no conversation id
        (the customer's conversation is already known from their earlier messages)."""
        body = await self.rest.request(
            "POST", f"{self._inbound}/structured/response", answer.encoded()
        )
        msg_id = body.get("id")
        return InboundAccepted(msg_id if isinstance(msg_id, str) else None, None)

    async def send(self, message: CustomerMessage) -> InboundAccepted:
        """A customer's message on the route its kind takes."""
        if isinstance(message, StructuredResponse):
            return await self.send_structured_response(message)
        return await self.send_inbound(message)

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
            "isFinalReceipt": True,
        }
        if reasons:
            receipt["reasons"] = reasons
        await self.rest.request("POST", f"{self._inbound}/receipt", receipt)
