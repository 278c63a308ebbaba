"""Genesys Open Messaging inbound payloads, as pydantic models.

``model_dump(mode="json", exclude_none=True, by_alias=True)`` gives the request body.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MediaType = Literal["Image", "Video", "Audio", "File", "Link"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)


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
    button_response: ButtonResponse | None = Field(default=None, alias="buttonResponse")


class InboundMessage(_Model):
    channel: InboundChannel
    text: str | None = None
    content: list[Content] | None = None

    @property
    def is_structured_response(self) -> bool:
        return any(c.button_response is not None for c in self.content or ())

    def body(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)
