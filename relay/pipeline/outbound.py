"""Genesys agent message → Instagram Send API messages.

Text longer than Instagram's 1000 bytes is split; each attachment is its own message;
quick replies, cards and carousels become Instagram quick replies and generic templates
within Instagram's limits, and what does not fit is sent as readable text instead.
"""

from __future__ import annotations

from typing import Any

from ..genesys.outbound import OutboundContent, OutboundMessage
from .receipts import Refusal
from .split import split_text

MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE = 20
MAX_ELEMENTS = 10
MAX_BUTTONS = 3
TEMPLATE_TEXT = 80
MB = 1024 * 1024
# Instagram's Send API limits: images png/jpeg up to 8 MB,
# audio, video and files up to 25 MB.
MEDIA_RULES: dict[str, tuple[str, tuple[str, ...] | None, int]] = {
    "Image": ("image", ("image/png", "image/jpeg", "image/jpg"), 8 * MB),
    "Video": ("video", None, 25 * MB),
    "Audio": ("audio", None, 25 * MB),
    "File": ("file", None, 25 * MB),
}

Part = dict[str, Any]  # a Send API body without recipient and messaging_type (addressing.py)


def typing_parts(msg: OutboundMessage) -> list[Part]:
    parts: list[Part] = []
    for event in msg.events:
        if event.event_type.lower() == "typing":
            on = str((event.typing or {}).get("type", "On")).lower() != "off"
            parts.append({"sender_action": "typing_on" if on else "typing_off"})
    return parts


def _clip(text: Any, limit: int) -> str:
    value = str(text or "").strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _quick_replies(items: list[dict[str, Any]]) -> list[dict[str, str]] | None:
    replies = []
    for item in items:
        title = str(item.get("text") or "").strip()
        if not title or len(title) > QUICK_REPLY_TITLE:
            return None
        replies.append(
            {"content_type": "text", "title": title, "payload": str(item.get("payload") or title)}
        )
    return replies if 0 < len(replies) <= MAX_QUICK_REPLIES else None


def _button(action: dict[str, Any]) -> dict[str, str] | None:
    kind = str(action.get("type", "")).lower()
    title = _clip(action.get("text") or action.get("title"), 20)
    if kind == "link" and action.get("url"):
        return {"type": "web_url", "url": str(action["url"]), "title": title or "Open"}
    if kind in ("postback", "quickreply", "button") and (action.get("payload") or title):
        return {"type": "postback", "title": title, "payload": str(action.get("payload") or title)}
    return None


def _element(card: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A generic-template element, and text lines for what did not fit."""
    overflow: list[str] = []
    element: dict[str, Any] = {"title": _clip(card.get("title") or "—", TEMPLATE_TEXT)}
    if card.get("description"):
        element["subtitle"] = _clip(card["description"], TEMPLATE_TEXT)
    image = card.get("image") or card.get("imageUrl")
    if isinstance(image, dict):
        image = image.get("url")
    if image:
        element["image_url"] = str(image)
    default = card.get("defaultAction")
    if isinstance(default, dict) and default.get("url"):
        element["default_action"] = {"type": "web_url", "url": str(default["url"])}
    buttons: list[dict[str, str]] = []
    for action in card.get("actions") or []:
        button = _button(action) if isinstance(action, dict) else None
        if button is None or len(buttons) == MAX_BUTTONS:
            if isinstance(action, dict):
                label = action.get("text") or action.get("title") or ""
                overflow.append(f"• {label} {action.get('url') or ''}".rstrip())
            continue
        buttons.append(button)
    if buttons:
        element["buttons"] = buttons
    return element, overflow


def _card_text(card: dict[str, Any]) -> str:
    lines = [str(card.get("title") or ""), str(card.get("description") or "")]
    for action in card.get("actions") or []:
        if isinstance(action, dict):
            lines.append(f"• {action.get('text') or ''} {action.get('url') or ''}".rstrip())
    return "\n".join(line for line in lines if line)


def _template(cards: list[dict[str, Any]]) -> tuple[Part, list[str]]:
    elements, overflow = [], []
    for card in cards[:MAX_ELEMENTS]:
        element, extra = _element(card)
        elements.append(element)
        overflow.extend(extra)
    overflow.extend(_card_text(card) for card in cards[MAX_ELEMENTS:])
    attachment = {"type": "template", "payload": {"template_type": "generic", "elements": elements}}
    return {"message": {"attachment": attachment}}, overflow


def _attachment(content: OutboundContent) -> Part | Refusal:
    att = content.attachment
    assert att is not None
    if not att.url:
        return Refusal("InvalidMessageStructure", "The attachment has no URL.")
    media_type = att.media_type or "File"
    if media_type == "Link":
        return {"message": {"text": att.url}}
    rule = MEDIA_RULES.get(media_type)
    if rule is None:
        return Refusal("MediaTypeNotAllowed", f"Instagram cannot send {media_type} attachments.")
    kind, mimes, limit = rule
    if mimes is not None and att.mime and att.mime.lower() not in mimes:
        return Refusal(
            "MediaTypeNotAllowed",
            f"Instagram accepts only PNG and JPEG images; this one is {att.mime}.",
        )
    if att.content_size_bytes is not None and att.content_size_bytes > limit:
        return Refusal(
            "InvalidMediaContentLength",
            f"{att.filename or 'The attachment'} is {att.content_size_bytes / MB:.1f} MB; "
            f"Instagram accepts {kind} files up to {limit // MB} MB.",
        )
    return {"message": {"attachment": {"type": kind, "payload": {"url": att.url}}}}


def message_parts(msg: OutboundMessage) -> list[Part] | Refusal:
    """The Send API messages for one agent message, in order, or why it cannot be sent."""
    texts = split_text(msg.text or "")
    parts: list[Part] = [{"message": {"text": t}} for t in texts]
    quick: list[dict[str, Any]] = []
    extra_text: list[str] = []
    for content in msg.content:
        kind = content.content_type
        if kind == "Attachment" and content.attachment is not None:
            part = _attachment(content)
            if isinstance(part, Refusal):
                return part
            parts.append(part)
        elif kind == "QuickReply" and content.quick_reply:
            quick.append(content.quick_reply)
        elif kind == "Card" and content.card:
            template, overflow = _template([content.card])
            parts.append(template)
            extra_text.extend(overflow)
        elif kind == "Carousel" and content.carousel:
            cards = [c for c in content.carousel.get("cards") or [] if isinstance(c, dict)]
            if cards:
                template, overflow = _template(cards)
                parts.append(template)
                extra_text.extend(overflow)
        elif kind in ("ButtonResponse", "Notification"):
            continue
        else:
            return Refusal("UnsupportedMessage", f"Instagram cannot show {kind} content.")
    if quick:
        mapped = _quick_replies(quick)
        if mapped is None:
            # Too many options or titles over 20 characters: list them as text instead.
            extra_text.append("\n".join(f"• {q.get('text', '')}" for q in quick))
        else:
            if not parts or "text" not in parts[-1].get("message", {}):
                parts.append({"message": {"text": "Choose an option:"}})
            parts[-1]["message"]["quick_replies"] = mapped
    for text in extra_text:
        parts.extend({"message": {"text": t}} for t in split_text(text))
    if not parts:
        return Refusal("InvalidMessageStructure", "The message has no text or content to send.")
    return parts
