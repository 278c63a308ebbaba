"""What the Genesys simulator accepts on the Open Messaging inbound routes.

Each check returns the reason Genesys would answer 400 with, or None. The rules come
from Genesys's Open Messaging API documentation, so the relay is tested against the
contract, not itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse

MEDIA_TYPES = frozenset({"Image", "Video", "Audio", "File", "Link"})
ID_TYPES = frozenset({"Opaque", "Email", "Phone"})
RECEIPT_STATUSES = frozenset({"Delivered", "Failed", "Read", "Sent", "Published", "Removed"})
BUTTON_RESPONSE_TYPES = frozenset({"QuickReply", "Button"})
REASON_CODES = frozenset(
    {
        "MessageExpired",
        "RateLimited",
        "MessageNotAllowed",
        "GeneralError",
        "UnsupportedMessage",
        "UnknownMessage",
        "InvalidMessageStructure",
        "InvalidDestination",
        "ServerError",
        "MediaTypeNotAllowed",
        "InvalidMediaContentLength",
        "RecipientOptedOut",
        "DataFiltered",
    }
)


def genesys_error(status: int, message: str, code: str = "bad.request") -> JSONResponse:
    """Genesys's error body: ``{"message", "code", "status"}``."""
    return JSONResponse({"message": message, "code": code, "status": status}, status_code=status)


def is_iso_datetime(value: Any) -> bool:
    """An ISO-8601 date and time (a bare date is not a message time)."""
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _check_channel(channel: Any) -> str | None:
    if not isinstance(channel, dict):
        return "channel is required"
    if not isinstance(channel.get("messageId"), str) or not channel["messageId"]:
        return "channel.messageId is required"
    sender = channel.get("from")
    if not isinstance(sender, dict) or not sender.get("id") or not sender.get("idType"):
        return "channel.from.id and channel.from.idType are required"
    if sender["idType"] not in ID_TYPES:
        return "channel.from.idType must be one of Opaque, Email, Phone"
    if not is_iso_datetime(channel.get("time")):
        return "channel.time must be an ISO-8601 date-time"
    meta = channel.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            return "channel.metadata must be an object"
        attrs = meta.get("customAttributes")
        if attrs is not None and not _string_map(attrs):
            return "channel.metadata.customAttributes must map strings to strings"
    return None


def _check_content(content: Any) -> str | None:
    if not isinstance(content, list):
        return "content must be a list"
    for item in content:
        if not isinstance(item, dict):
            return "each content item must be an object"
        if item.get("contentType") == "ButtonResponse":
            answer = item.get("buttonResponse")
            if not isinstance(answer, dict) or answer.get("type") not in BUTTON_RESPONSE_TYPES:
                return "buttonResponse.type must be QuickReply or Button"
            continue
        att = item.get("attachment")
        if not isinstance(att, dict) or att.get("mediaType") not in MEDIA_TYPES:
            return "attachment.mediaType must be one of Image, Video, Audio, File, Link"
        if not isinstance(att.get("url"), str) or not att["url"]:
            return "attachment.url is required"
    return None


def validate_inbound_message(body: Any) -> str | None:
    """``…/inbound/open/message`` (and structured responses, which share the shape)."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    top_meta = body.get("metadata")
    if isinstance(top_meta, dict) and "customAttributes" in top_meta:
        # Documented as rejected: custom attributes belong to the channel.
        return "customAttributes belong in channel.metadata, not top-level metadata"
    if top_meta is not None and not _string_map(top_meta):
        return "metadata must map strings to strings"
    reason = _check_channel(body.get("channel"))
    if reason:
        return reason
    text, content = body.get("text"), body.get("content")
    if text is not None and not isinstance(text, str):
        return "text must be a string"
    if not text and not content:
        return "a message needs text or content"
    return _check_content(content) if content else None


def validate_receipt(body: Any) -> str | None:
    """``…/inbound/open/receipt``: the fate of an outbound message."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("id"), str) or not body["id"]:
        return "receipt id (the outbound message id) is required"
    channel = body.get("channel")
    if not isinstance(channel, dict):
        return "channel is required"
    to = channel.get("to")
    if not isinstance(to, dict) or not to.get("id"):
        return "channel.to.id is required"
    if "time" in channel and not is_iso_datetime(channel["time"]):
        return "channel.time must be an ISO-8601 date-time"
    if body.get("status") not in RECEIPT_STATUSES:
        return "receipt status is invalid"
    reasons = body.get("reasons")
    if reasons is not None:
        if not isinstance(reasons, list):
            return "reasons must be a list"
        for reason in reasons:
            if not isinstance(reason, dict) or reason.get("code") not in REASON_CODES:
                return "reasons[].code is not a documented reason code"
    return None


def validate_event(body: Any) -> str | None:
    """``…/inbound/open/event``: for example the customer typing."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    channel = body.get("channel")
    sender = channel.get("from") if isinstance(channel, dict) else None
    if not isinstance(sender, dict) or not sender.get("id") or not sender.get("idType"):
        return "channel.from.id and channel.from.idType are required"
    events = body.get("events")
    if not isinstance(events, list) or not events:
        return "events must be a non-empty list"
    if not all(isinstance(e, dict) and isinstance(e.get("eventType"), str) for e in events):
        return "each event needs an eventType"
    return None
