"""Genesys Open Messaging inbound payloads, as pydantic models.

``body()`` gives the request body as JSON values (what tests judge against Genesys's SDK),
``encoded()`` the same body as the bytes sent: encoded by pydantic's serializer in one
step, rather than built as dicts and encoded again by ``json``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MediaType = Literal["Image", "Video", "Audio", "File", "Link"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)


class _Body(_Model):
    """A whole request body."""

    def body(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def encoded(self) -> bytes:
        """``body()`` as compact UTF-8 JSON (characters as themselves, like ``encode_json``)."""
        return self.__pydantic_serializer__.to_json(self, exclude_none=True, by_alias=True)


class From(_Model):
    id: str
    id_type: Literal["Opaque", "Email", "Phone"] = Field(default="Opaque", alias="idType")
    nickname: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    image: str | None = None


class ChannelMetadata(_Model):
    custom_attributes: dict[str, str] = Field(default_factory=dict, alias="customAttributes")


class InboundChannel(_Model):
    message_id: str = Field(alias="messageId")
    time: str  # ISO 8601 UTC with milliseconds, e.g. 2026-01-01T10:00:00.000Z
    from_: From = Field(alias="from")
    metadata: ChannelMetadata | None = None


class Attachment(_Model):
    media_type: MediaType = Field(alias="mediaType")
    url: str
    mime: str  # required by Genesys, even when only guessed (pipeline/media_type.py)
    filename: str | None = None
    text: str | None = None


class ButtonResponse(_Model):
    type: Literal["QuickReply", "Button"]
    text: str
    payload: str


class Content(_Model):
    """An inbound content item (OpenInboundMessageContent): an attachment, no contentType."""

    attachment: Attachment | None = None


class InboundMessage(_Body):
    channel: InboundChannel
    text: str | None = None
    content: list[Content] | None = None


class StructuredResponse(_Body):
    """A customer's answer to an agent's quick reply or button
    (``…/inbound/open/structured/response``, Genesys's OpenInboundStructuredResponseMessage):
    no text or content of its own, only the answer and the agent message it answers."""

    channel: InboundChannel
    button_response: ButtonResponse = Field(alias="buttonResponse")
    originating_message_id: str = Field(alias="originatingMessageId")

    def as_text(self) -> InboundMessage:
        """The same answer as an ordinary message, for when Genesys will not take it as a
        structured response: the agent still reads what the customer chose."""
        return InboundMessage(channel=self.channel, text=self.button_response.text)


# What the relay sends Genesys for one customer event.
CustomerMessage = InboundMessage | StructuredResponse
