"""The agent's side of the Genesys simulator: outbound webhooks, as Genesys sends them
to an integration's ``outboundNotificationWebhookUrl`` (Open Messaging outbound)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

AgentMessageType = Literal["Text", "Structured", "Event", "Receipt"]


def sign_genesys(body: bytes, secret: str) -> str:
    """``X-Hub-Signature-256`` as Genesys sends it: base64 (not hex) HMAC-SHA256."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode("ascii")


def genesys_time() -> str:
    """Now, as Genesys writes times: UTC, milliseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_agent_message(
    integration_id: str,
    to_id: str,
    text: str | None = None,
    *,
    message_type: AgentMessageType = "Text",
    content: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
    originating_entity: Literal["Human", "Bot"] = "Human",
    conversation_id: str | None = None,
    nickname: str = "Agent",
) -> dict[str, Any]:
    """One outbound notification body; ``text``/``content``/``events`` appear when given."""
    message_id = uuid.uuid4().hex
    body: dict[str, Any] = {
        "id": message_id,
        "conversationId": conversation_id or str(uuid.uuid4()),
        "direction": "Outbound",
        "originatingEntity": originating_entity,
        "type": message_type,
        "channel": {
            "id": integration_id,
            "platform": "Open",
            "type": "Private",
            "to": {"id": to_id, "idType": "Opaque"},
            "from": {"id": integration_id, "idType": "Opaque", "nickname": nickname},
            "time": genesys_time(),
            "messageId": message_id,
        },
    }
    if text is not None:
        body["text"] = text
    if content is not None:
        body["content"] = content
    if events is not None:
        body["events"] = events
    return body


def typing_event(on: bool = True, duration_ms: int = 5000) -> dict[str, Any]:
    """An ``events[]`` item: the agent is typing (or stopped)."""
    return {
        "eventType": "Typing",
        "typing": {"type": "On" if on else "Off", "duration": duration_ms},
    }


def quick_reply(text: str, payload: str | None = None) -> dict[str, Any]:
    """A ``content[]`` item of a Structured message: one quick-reply option."""
    return {
        "contentType": "QuickReply",
        "quickReply": {"text": text, "payload": payload or text, "action": "Message"},
    }


def postback_button(text: str, payload: str | None = None) -> dict[str, Any]:
    """A card's button that answers with ``payload`` (ConversationContentCardAction)."""
    return {"type": "Postback", "text": text, "payload": payload or text}


def link_button(text: str, url: str) -> dict[str, Any]:
    """A card's button that opens ``url``."""
    return {"type": "Link", "text": text, "url": url}


def card(
    title: str, actions: list[dict[str, Any]], description: str | None = None
) -> dict[str, Any]:
    """A ``content[]`` item of a Structured message: one card (ConversationContentCard)."""
    body: dict[str, Any] = {"title": title, "actions": actions}
    if description is not None:
        body["description"] = description
    return {"contentType": "Card", "card": body}


def encode_agent_message(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, characters as themselves (Genesys's sample signs this form)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _signed(body: dict[str, Any] | bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else encode_agent_message(body)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_genesys(raw, secret)}
    return raw, headers


def post_agent_message(
    url: str, body: dict[str, Any] | bytes, secret: str, *, timeout: float = 15.0
) -> httpx.Response:
    """POST one signed outbound notification, as Genesys would (it waits up to 10 s)."""
    raw, headers = _signed(body, secret)
    return httpx.post(url, content=raw, headers=headers, timeout=timeout)


async def post_agent_message_async(
    url: str, body: dict[str, Any] | bytes, secret: str, client: httpx.AsyncClient | None = None
) -> httpx.Response:
    """The same from async code, on ``client`` (its timeouts apply) or a short-lived one."""
    raw, headers = _signed(body, secret)
    if client is not None:
        return await client.post(url, content=raw, headers=headers)
    async with httpx.AsyncClient(timeout=15.0) as own:
        return await own.post(url, content=raw, headers=headers)
