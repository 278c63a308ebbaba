"""What Genesys POSTs to the relay's outbound webhook: agents' messages, typing events,
and receipts (the signature is checked in ``web/signature.py``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


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
    text: str | None = None  # a caption


class Location(_Model):
    url: str | None = None
    address: str | None = None
    text: str | None = None
    latitude: float | None = None
    longitude: float | None = None


class TemplateParameter(_Model):
    name: str | None = None
    text: str | None = None


class TemplateText(_Model):
    """A notification template's header, body or footer (the header may be media instead)."""

    type: str | None = None
    text: str | None = None
    media: OutboundAttachment | None = None
    parameters: list[TemplateParameter] = Field(default_factory=list)


class TemplateButton(_Model):
    type: str | None = None  # QuickReply | PhoneNumber | Url
    text: str | None = None
    url: str | None = None
    payload: str | None = None
    phone_number: str | None = Field(default=None, alias="phoneNumber")
    parameters: list[TemplateParameter] = Field(default_factory=list)


class NotificationTemplate(_Model):
    """Content type ``Notification``: a template Genesys fills in with parameters."""

    id: str | None = None
    language: str | None = None
    header: TemplateText | None = None
    body: TemplateText | None = None
    buttons: list[TemplateButton] = Field(default_factory=list)
    footer: TemplateText | None = None


class OutboundContent(_Model):
    content_type: str = Field(alias="contentType")
    attachment: OutboundAttachment | None = None
    quick_reply: dict[str, Any] | None = Field(default=None, alias="quickReply")
    button_response: dict[str, Any] | None = Field(default=None, alias="buttonResponse")
    card: dict[str, Any] | None = None
    carousel: dict[str, Any] | None = None
    list_: dict[str, Any] | None = Field(default=None, alias="list")
    location: Location | None = None
    template: NotificationTemplate | None = None
    text: dict[str, Any] | None = None  # content type Text: {"type": "Text", "body": ...}
    quick_reply_v2: dict[str, Any] | None = Field(default=None, alias="quickReplyV2")


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
