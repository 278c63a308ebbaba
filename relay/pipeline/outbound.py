"""Genesys agent message → Instagram Send API messages, decided whole before anything is sent.

Text longer than Instagram's 1000 bytes is split; each attachment is its own message;
quick replies, cards and carousels become Instagram quick replies and generic templates
within Instagram's limits, and what does not fit is sent as readable text instead. Every
content type Genesys may send (``ConversationMessageContent.contentType`` in Genesys's SDK)
has one entry in ``CONTENT``: a way to send it on Instagram, or the reason it cannot be
sent. One item that cannot be sent refuses the whole message, so nothing half-arrives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from ..genesys.outbound import (
    NotificationTemplate,
    OutboundAttachment,
    OutboundContent,
    OutboundMessage,
    TemplateParameter,
)
from .answers import offer
from .receipts import Refusal
from .split import split_text

MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE = 20
MAX_ELEMENTS = 10
MAX_BUTTONS = 3
TEMPLATE_TEXT = 80
MB = 1024 * 1024

# Genesys receipt reason codes for what the relay refuses itself.
UNSUPPORTED = "UnsupportedMessage"
INVALID_STRUCTURE = "InvalidMessageStructure"
MEDIA_TYPE = "MediaTypeNotAllowed"
MEDIA_LENGTH = "InvalidMediaContentLength"


@dataclass(frozen=True, slots=True)
class MediaRule:
    kind: str  # the Send API attachment type
    formats: str  # Meta's list, as the agent reads it
    mimes: frozenset[str]
    extensions: frozenset[str]
    limit: int


# Meta's "Upload Media for Instagram Messaging" page (Instagram Messaging → Features →
# Attachment Upload, updated April 2026) lists what an Instagram message may carry: image
# png, jpeg, gif up to 8 MB; video mp4, ogg, avi, mov, webm; audio aac, m4a, wav, mp4;
# file pdf; each up to 25 MB. Its "Send a Message" page still lists images as png/jpeg
# and no file formats; the upload page is newer and names GIFs, so GIFs are sent. Whether
# other file types than PDF are refused is unconfirmed: they are refused here, as listed.
MEDIA_RULES: dict[str, MediaRule] = {
    "Image": MediaRule(
        "image",
        "PNG, JPEG or GIF",
        frozenset({"image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/gif"}),
        frozenset({"png", "jpg", "jpeg", "gif"}),
        8 * MB,
    ),
    "Video": MediaRule(
        "video",
        "MP4, OGG, AVI, MOV or WebM",
        frozenset(
            {
                "video/mp4",
                "video/ogg",
                "video/avi",
                "video/x-msvideo",
                "video/msvideo",
                "video/quicktime",
                "video/webm",
            }
        ),
        frozenset({"mp4", "ogg", "ogv", "avi", "mov", "webm"}),
        25 * MB,
    ),
    "Audio": MediaRule(
        "audio",
        "AAC, M4A, WAV or MP4",
        frozenset(
            {
                "audio/aac",
                "audio/x-aac",
                "audio/mp4",
                "audio/m4a",
                "audio/x-m4a",
                "audio/wav",
                "audio/x-wav",
                "audio/wave",
                "audio/vnd.wave",
            }
        ),
        frozenset({"aac", "m4a", "wav", "mp4"}),
        25 * MB,
    ),
    "File": MediaRule("file", "PDF", frozenset({"application/pdf"}), frozenset({"pdf"}), 25 * MB),
}

Part = dict[str, Any]  # a Send API body without recipient and messaging_type (addressing.py)


def typing_parts(msg: OutboundMessage) -> list[Part]:
    parts: list[Part] = []
    for event in msg.events:
        if event.event_type.lower() == "typing":
            on = str((event.typing or {}).get("type", "On")).lower() != "off"
            parts.append({"sender_action": "typing_on" if on else "typing_off"})
    return parts


@dataclass
class _Reply:
    """The Send API messages of one agent message, gathered item by item."""

    parts: list[Part] = field(default_factory=list)
    quick: list[dict[str, Any]] = field(default_factory=list)
    # The agent message's Genesys id, written into every option's payload so that the
    # customer's answer can name it to Genesys (answers.py).
    message_id: str = ""
    extra_text: list[str] = field(default_factory=list)  # sent last: what did not fit
    # Text blocks in a row go as one text (split only past 1000 bytes), so a template or a
    # location after the agent's words costs no extra message (a private reply has one).
    pending: list[str] = field(default_factory=list)

    def text(self, text: str) -> None:
        if text.strip():
            self.pending.append(text)

    def add(self, part: Part) -> None:
        self.flush()
        self.parts.append(part)

    def flush(self) -> None:
        if self.pending:
            joined = "\n\n".join(self.pending)
            self.parts.extend({"message": {"text": t}} for t in split_text(joined))
            self.pending.clear()


def _clip(text: Any, limit: int) -> str:
    value = str(text or "").strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _quick_replies(items: list[dict[str, Any]], message_id: str) -> list[dict[str, str]] | None:
    replies = []
    for item in items:
        title = str(item.get("text") or "").strip()
        if not title or len(title) > QUICK_REPLY_TITLE:
            return None
        replies.append(
            {
                "content_type": "text",
                "title": title,
                "payload": offer(message_id, str(item.get("payload") or title)),
            }
        )
    return replies if 0 < len(replies) <= MAX_QUICK_REPLIES else None


def _button(action: dict[str, Any], message_id: str) -> dict[str, str] | None:
    kind = str(action.get("type", "")).lower()
    title = _clip(action.get("text") or action.get("title"), 20)
    if kind == "link" and action.get("url"):
        return {"type": "web_url", "url": str(action["url"]), "title": title or "Open"}
    if kind in ("postback", "quickreply", "button") and (action.get("payload") or title):
        payload = offer(message_id, str(action.get("payload") or title))
        return {"type": "postback", "title": title, "payload": payload}
    return None


def _element(card: dict[str, Any], message_id: str) -> tuple[dict[str, Any], list[str]]:
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
        button = _button(action, message_id) if isinstance(action, dict) else None
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


def _template(cards: list[dict[str, Any]], reply: _Reply) -> None:
    elements = []
    for card in cards[:MAX_ELEMENTS]:
        element, extra = _element(card, reply.message_id)
        elements.append(element)
        reply.extra_text.extend(extra)
    reply.extra_text.extend(_card_text(card) for card in cards[MAX_ELEMENTS:])
    attachment = {"type": "template", "payload": {"template_type": "generic", "elements": elements}}
    reply.add({"message": {"attachment": attachment}})


# -- media ---------------------------------------------------------------------------------
def _extension(att: OutboundAttachment) -> str | None:
    for name in (att.filename, urlsplit(att.url or "").path):
        suffix = PurePosixPath(name or "").suffix.lower().lstrip(".")
        if suffix:
            return suffix
    return None


def media_part(att: OutboundAttachment) -> Part | Refusal:
    """One attachment as a Send API message, checked against Meta's formats and sizes first.

    The MIME type decides; without one, the file name's (or URL's) extension. With neither,
    Instagram judges, and its refusal reaches the agent like any other."""
    if not att.url:
        return Refusal(INVALID_STRUCTURE, "The attachment has no URL.")
    media_type = att.media_type or "File"
    if media_type == "Link":
        return {"message": {"text": att.url}}
    rule = MEDIA_RULES.get(media_type)
    if rule is None:
        return Refusal(MEDIA_TYPE, f"Instagram cannot send {media_type} attachments.")
    name = att.filename or "The attachment"
    mime = (att.mime or "").split(";")[0].strip().lower()
    extension = _extension(att)
    if (mime and mime not in rule.mimes) or (
        not mime and extension and extension not in rule.extensions
    ):
        return Refusal(
            MEDIA_TYPE,
            f"{name} is {mime or '.' + str(extension)}; Instagram accepts {rule.kind} "
            f"attachments as {rule.formats} only. Convert it, or share it as a link.",
        )
    if att.content_size_bytes is not None and att.content_size_bytes > rule.limit:
        return Refusal(
            MEDIA_LENGTH,
            f"{name} is {att.content_size_bytes / MB:.1f} MB; "
            f"Instagram accepts {rule.kind} files up to {rule.limit // MB} MB.",
        )
    return {"message": {"attachment": {"type": rule.kind, "payload": {"url": att.url}}}}


# -- notification templates ----------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def fill_placeholders(text: str, parameters: list[TemplateParameter]) -> str | Refusal:
    """``{{name}}`` (or ``{{1}}``, ``{{2}}``… for unnamed parameters, in order) replaced by
    the parameters' values. Only a complete fill is faithful: a placeholder without a value,
    or a value without a placeholder, refuses the template."""
    values: dict[str, str] = {}
    for index, param in enumerate(parameters, start=1):
        key = (param.name or "").strip().strip("{}").strip() or str(index)
        values[key] = param.text or ""
    used: set[str] = set()
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            missing.append(key)
            return match.group(0)
        used.add(key)
        return values[key]

    filled = _PLACEHOLDER.sub(value, text)
    if missing:
        return Refusal(
            INVALID_STRUCTURE,
            f"The template's placeholder {{{{{missing[0]}}}}} has no parameter value; "
            "a half-filled template is not sent.",
        )
    unused = sorted(set(values) - used)
    if unused:
        return Refusal(
            INVALID_STRUCTURE,
            f"The template's parameter {unused[0]!r} has no placeholder in its text, so the "
            "relay cannot tell where it belongs; the template is not sent.",
        )
    return filled


def _notification(template: NotificationTemplate, reply: _Reply) -> Refusal | None:
    """A notification template as Instagram text: header, body, footer with their
    parameters filled in; a media header as an attachment before it; quick-reply buttons as
    quick replies; link and phone buttons as lines of text. Instagram has no templates of its
    own, so a template that arrives without its text cannot be sent."""
    body = template.body
    if body is None or not (body.text or "").strip():
        return Refusal(
            UNSUPPORTED,
            f"The notification template {template.id or ''} arrived without its text, and "
            "Instagram has no message templates; send the message as text.".replace("  ", " "),
        )
    sections: list[tuple[str, list[TemplateParameter]]] = []
    header = template.header
    if header is not None and header.media is not None:
        media = media_part(header.media)
        if isinstance(media, Refusal):
            return media
        reply.add(media)
    elif header is not None and header.text:
        sections.append((header.text, header.parameters))
    sections.append((body.text or "", body.parameters))
    if template.footer is not None and template.footer.text:
        sections.append((template.footer.text, template.footer.parameters))
    filled: list[str] = []
    for text, params in sections:
        done = fill_placeholders(text, params)
        if isinstance(done, Refusal):
            return done
        filled.append(done)
    lines: list[str] = []
    for button in template.buttons:
        kind = (button.type or "").lower()
        label = button.text or ""
        if kind == "quickreply":
            reply.quick.append({"text": label, "payload": button.payload or label})
            continue
        target = {"url": button.url, "phonenumber": button.phone_number}.get(kind)
        if not target:
            return Refusal(
                INVALID_STRUCTURE, f"The template's button {label!r} has no link or number."
            )
        if kind == "url":
            url = fill_placeholders(target, button.parameters)
            if isinstance(url, Refusal):
                return url
            target = url
        lines.append(f"• {label} {target}".replace("•  ", "• "))
    if lines:
        filled.append("\n".join(lines))
    reply.text("\n\n".join(block for block in filled if block.strip()))
    return None


# -- the other content types ------------------------------------------------------------------
def _decimal(value: float) -> str:
    return format(value, ".7f").rstrip("0").rstrip(".")


def location_text(content: OutboundContent) -> str | Refusal:
    """A location as text: its name and address, and its link, or a map link made from its
    coordinates (Google Maps URLs, which open the map app on a phone)."""
    loc = content.location
    assert loc is not None
    link = loc.url
    if not link and loc.latitude is not None and loc.longitude is not None:
        query = f"{_decimal(loc.latitude)},{_decimal(loc.longitude)}"
        link = f"https://www.google.com/maps/search/?api=1&query={query}"
    lines = [line.strip() for line in (loc.text, loc.address, link) if line and line.strip()]
    if not link and not loc.address:
        return Refusal(INVALID_STRUCTURE, "The location has no address, coordinates or link.")
    return "\n".join(lines)


Handler = Callable[[OutboundContent, _Reply], Refusal | None]


def _attachment(content: OutboundContent, reply: _Reply) -> Refusal | None:
    att = content.attachment
    assert att is not None
    part = media_part(att)
    if isinstance(part, Refusal):
        return part
    if att.text and att.text.strip():  # Instagram has no captions: the caption goes first
        reply.text(att.text.strip())
    reply.add(part)
    return None


def _text(content: OutboundContent, reply: _Reply) -> Refusal | None:
    body = (content.text or {}).get("body")
    if not isinstance(body, str) or not body.strip():
        return Refusal(INVALID_STRUCTURE, "The Text item has no body.")
    reply.text(body)
    return None


def _location(content: OutboundContent, reply: _Reply) -> Refusal | None:
    text = location_text(content)
    if isinstance(text, Refusal):
        return text
    reply.text(text)
    return None


def _quick_reply(content: OutboundContent, reply: _Reply) -> Refusal | None:
    assert content.quick_reply is not None
    reply.quick.append(content.quick_reply)
    return None


def _quick_reply_v2(content: OutboundContent, reply: _Reply) -> Refusal | None:
    v2 = content.quick_reply_v2 or {}
    actions = [a for a in v2.get("actions") or [] if isinstance(a, dict)]
    if not actions:
        return Refusal(INVALID_STRUCTURE, "The quick replies have no options.")
    if v2.get("title"):
        reply.text(str(v2["title"]))
    reply.quick.extend(actions)
    return None


def _card(content: OutboundContent, reply: _Reply) -> Refusal | None:
    assert content.card is not None
    _template([content.card], reply)
    return None


def _carousel(content: OutboundContent, reply: _Reply) -> Refusal | None:
    cards = [c for c in (content.carousel or {}).get("cards") or [] if isinstance(c, dict)]
    if not cards:
        return Refusal(INVALID_STRUCTURE, "The carousel has no cards.")
    _template(cards, reply)
    return None


def _notification_item(content: OutboundContent, reply: _Reply) -> Refusal | None:
    assert content.template is not None
    return _notification(content.template, reply)


def _refuse(sentence: str) -> Refusal:
    return Refusal(UNSUPPORTED, sentence)


@dataclass(frozen=True, slots=True)
class Sendable:
    """A content type Instagram can show: the item's field that carries it, and how."""

    field: str  # the OutboundContent attribute (Genesys's field, in snake case)
    handler: Handler


# Every contentType in Genesys's SDK (ConversationMessageContent), and what becomes of it.
CONTENT: dict[str, Sendable | Refusal] = {
    "Text": Sendable("text", _text),
    "Attachment": Sendable("attachment", _attachment),
    "Location": Sendable("location", _location),
    "QuickReply": Sendable("quick_reply", _quick_reply),
    "QuickReplyV2": Sendable("quick_reply_v2", _quick_reply_v2),
    "Card": Sendable("card", _card),
    "Carousel": Sendable("carousel", _carousel),
    "Notification": Sendable("template", _notification_item),
    "ButtonResponse": _refuse(
        "A button response is the customer's own answer; it is not sent back to them."
    ),
    "Story": _refuse("Instagram cannot send a story inside a message; send its link as text."),
    "Mention": _refuse("Instagram messages cannot carry a mention; write the @username as text."),
    "Reactions": _refuse("Reactions cannot be sent as an agent's message on Instagram."),
    "DatePicker": _refuse(
        "Instagram has no date picker; offer the dates as quick replies or in text."
    ),
    "ListPicker": _refuse(
        "Instagram has no list picker; offer up to 13 choices as quick replies, or list them."
    ),
    "Form": _refuse("Instagram has no forms; ask the questions in text."),
    "InteractiveApplication": _refuse(
        "Instagram cannot open an interactive application; send its link as text."
    ),
    "PaymentRequest": _refuse("Instagram messages cannot request a payment; send a link."),
    "PaymentResponse": _refuse("Instagram messages cannot carry a payment response."),
    "Push": _refuse("Push notifications are not Instagram messages."),
    "RoadsideAssistance": _refuse("Instagram cannot show roadside assistance content."),
    "RichLink": _refuse("Instagram cannot show a rich link; send the link as text."),
    "NotificationResponse": _refuse(
        "A notification response is the customer's own answer; it is not sent back to them."
    ),
    "Unknown": _refuse("Genesys marked this content Unknown; Instagram cannot show it."),
}
_BY_NAME = {name.lower(): entry for name, entry in CONTENT.items()}


def content_decision(content: OutboundContent) -> Sendable | Refusal:
    """How one content item goes to Instagram, or why it cannot."""
    kind = content.content_type
    entry = _BY_NAME.get(kind.lower())
    if entry is None:
        return _refuse(f"Instagram cannot show {kind} content.")
    if isinstance(entry, Sendable) and getattr(content, entry.field) is None:
        return Refusal(INVALID_STRUCTURE, f"The {kind} item has no {entry.field} to send.")
    return entry


def message_parts(msg: OutboundMessage) -> list[Part] | Refusal:
    """The Send API messages for one agent message, in order, or why it cannot be sent —
    decided for the whole message before any of it goes."""
    reply = _Reply(message_id=msg.id)
    reply.text(msg.text or "")
    for content in msg.content:
        decision = content_decision(content)
        if isinstance(decision, Refusal):
            return decision
        refused = decision.handler(content, reply)
        if refused is not None:
            return refused
    reply.flush()
    parts = reply.parts
    if reply.quick:
        mapped = _quick_replies(reply.quick, msg.id)
        if mapped is None:
            # Too many options or titles over 20 characters: list them as text instead.
            reply.extra_text.append("\n".join(f"• {q.get('text', '')}" for q in reply.quick))
        else:
            if not parts or "text" not in parts[-1].get("message", {}):
                parts.append({"message": {"text": "Choose an option:"}})
            parts[-1]["message"]["quick_replies"] = mapped
    for text in reply.extra_text:
        parts.extend({"message": {"text": t}} for t in split_text(text))
    if not parts:
        return Refusal(INVALID_STRUCTURE, "The message has no text or content to send.")
    return parts
