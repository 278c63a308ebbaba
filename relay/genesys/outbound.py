"""What Genesys POSTs to the relay's outbound webhook: agents' messages, typing events,
and receipts (the signature is checked in ``web/signature.py``).

A signed body may still be hostile: what the outbound worker could not take (a card's
``actions`` that is no list, a URL that cannot be parsed, a time before year 1) is refused
here, when it arrives, with the field it concerns; so is a message older than the dedupe
memory (``message_time``), which could only be a replay.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..pipeline.window import clamp_event_ms


def _parsable_url(url: str | None) -> str | None:
    if url is not None:
        try:
            parts = urllib.parse.urlsplit(url)
            parts.hostname, parts.port  # noqa: B018 (both parse lazily and may raise)
        except ValueError:
            raise ValueError("not a URL that can be parsed") from None
    return url


def _list_or_none(obj: dict[str, Any], key: str, what: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what}.{key} is not a list")
    return value


def _check_card(card: dict[str, Any], what: str) -> None:
    _list_or_none(card, "actions", what)


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

    _url = field_validator("url")(_parsable_url)


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

    # Cards, carousels and quick replies stay Genesys's objects (pipeline/outbound.py reads
    # them leniently); only the lists it walks must be lists.
    @field_validator("card")
    @classmethod
    def _card(cls, card: dict[str, Any] | None) -> dict[str, Any] | None:
        if card is not None:
            _check_card(card, "card")
        return card

    @field_validator("carousel")
    @classmethod
    def _carousel(cls, carousel: dict[str, Any] | None) -> dict[str, Any] | None:
        if carousel is not None:
            for index, card in enumerate(_list_or_none(carousel, "cards", "carousel")):
                if isinstance(card, dict):
                    _check_card(card, f"carousel.cards.{index}")
        return carousel

    @field_validator("quick_reply_v2")
    @classmethod
    def _quick_reply_v2(cls, v2: dict[str, Any] | None) -> dict[str, Any] | None:
        if v2 is not None:
            _list_or_none(v2, "actions", "quickReplyV2")
        return v2


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


@dataclass(frozen=True, slots=True)
class Refused:
    """A message refused by its time: ``reason`` is the metric label."""

    reason: Literal["invalid_time", "stale", "future_timestamp"]
    detail: str


def message_time(
    msg: OutboundMessage, now_ms: int, horizon_ms: int | None, ahead_ms: int | None = None
) -> int | Refused:
    """When the agent sent the message (Genesys's ``channel.time``, now when absent), no
    later than now plus the allowed clock skew: the order of the customer's replies. A
    time that cannot be read, older than ``horizon_ms`` (None or 0: no limit) or more than
    ``ahead_ms`` ahead (None: no limit) is refused. Pure: the caller's clock."""
    value = msg.channel.time
    if value is None:
        return now_ms
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:  # Genesys writes UTC; a time without a zone is taken so
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    except (ValueError, OverflowError):
        return Refused("invalid_time", "channel.time is not an ISO 8601 time")
    if ms < 0:
        return Refused("invalid_time", "channel.time is before 1970")
    if horizon_ms and ms < now_ms - horizon_ms:
        days = (now_ms - ms) / 86_400_000
        return Refused("stale", f"channel.time is {days:.1f} days old: a replay")
    if ahead_ms is not None and ms > now_ms + ahead_ms:
        days = (ms - now_ms) / 86_400_000
        return Refused("future_timestamp", f"channel.time is {days:.1f} days ahead")
    return clamp_event_ms(ms, now_ms)


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
