"""What Genesys POSTs to the relay's outbound webhook: agents' messages, typing events,
and receipts, signed with ``X-Hub-Signature-256: sha256=<base64 HMAC-SHA256>``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..meta.signature import SignatureCheck

PREFIX = "sha256="


def _digest(body: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()


def verify_genesys_signature(raw: bytes, header: str | None, secret: bytes) -> SignatureCheck:
    """Check Genesys's base64 signature over the raw bytes.

    Genesys's own sample hashes the compact JSON; if that ever differs from the bytes on
    the wire, the compact form of the same body is accepted too (still under the secret).
    """
    if not header:
        return SignatureCheck.MISSING
    header = header.strip()
    if not header.startswith(PREFIX):
        return SignatureCheck.MALFORMED
    try:
        given = base64.b64decode(header[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return SignatureCheck.MALFORMED
    if len(given) != hashlib.sha256().digest_size:
        return SignatureCheck.MALFORMED
    if hmac.compare_digest(_digest(raw, secret), given):
        return SignatureCheck.OK
    try:
        compact = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return SignatureCheck.MISMATCH
    if compact != raw and hmac.compare_digest(_digest(compact, secret), given):
        return SignatureCheck.OK
    return SignatureCheck.MISMATCH


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Party(_Model):
    id: str
    id_type: str | None = Field(default=None, alias="idType")


class OutboundChannel(_Model):
    id: str | None = None
    to: Party
    time: str | None = None
    message_id: str | None = Field(default=None, alias="messageId")


class OutboundAttachment(_Model):
    id: str | None = None
    media_type: str | None = Field(default=None, alias="mediaType")
    url: str | None = None
    mime: str | None = None
    filename: str | None = None
    content_size_bytes: int | None = Field(default=None, alias="contentSizeBytes")


class OutboundContent(_Model):
    content_type: str = Field(alias="contentType")
    attachment: OutboundAttachment | None = None
    quick_reply: dict[str, Any] | None = Field(default=None, alias="quickReply")
    button_response: dict[str, Any] | None = Field(default=None, alias="buttonResponse")
    card: dict[str, Any] | None = None
    carousel: dict[str, Any] | None = None
    list_: dict[str, Any] | None = Field(default=None, alias="list")


class TypingEvent(_Model):
    event_type: str = Field(alias="eventType")
    typing: dict[str, Any] | None = None


class OutboundMessage(_Model):
    id: str
    conversation_id: str | None = Field(default=None, alias="conversationId")
    direction: str | None = None
    originating_entity: str | None = Field(default=None, alias="originatingEntity")
    type: Literal["Text", "Structured", "Receipt", "Event"] | str
    channel: OutboundChannel
    text: str | None = None
    content: list[OutboundContent] = Field(default_factory=list)
    events: list[TypingEvent] = Field(default_factory=list)

    @property
    def customer_id(self) -> str:
        return self.channel.to.id

    @property
    def from_human(self) -> bool:
        # Genesys marks bot replies "Bot"; Meta allows HUMAN_AGENT only for people.
        return (self.originating_entity or "Human") == "Human"


def parse_outbound(raw: bytes) -> OutboundMessage | str:
    """The message, or a reason it is not one (for a 400). Parsed from the raw bytes as
    the outbound worker will parse them, so nothing stored is undecodable later (a lone
    surrogate escape, say, which plain JSON decoding lets through)."""
    try:
        return OutboundMessage.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
