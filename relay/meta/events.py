"""Instagram webhook events: the typed form the relay stores and translates.

``parse_webhook`` turns one verified webhook body into events. It never raises on
content: shapes it does not know are returned as ``Skipped`` with a reason, so the
caller can log and count them while the rest of the batch is still stored. A signature
only proves Meta sent the bytes once, so what a handler could not take is refused here:
fields of the wrong type, unparsable URLs, impossible timestamps, text that is not
Unicode, replays older than the dedupe memory (``stale``) and times more than a day ahead
(``future_timestamp``); attachments past the first twenty are dropped
(``too_many_attachments``).

Each event keeps Meta's item as sent (``data``, what the store holds, so queued jobs
survive upgrades) and its typed ``body``, read from that item once when the event is
made. Nothing past this module reads the raw item.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from ..pipeline.window import clamp_event_ms
from ..records import DEDUPE_RETENTION_SECONDS


class EventKind(StrEnum):
    MESSAGE = "message"  # text and/or attachments, story replies, replies, quick replies
    ECHO = "echo"  # sent by the business (Instagram app or the relay itself)
    UNSEND = "unsend"  # the customer deleted a message (message.is_deleted)
    POSTBACK = "postback"
    REACTION = "reaction"
    SEEN = "seen"
    REFERRAL = "referral"
    COMMENT = "comment"
    MENTION = "mention"
    EDIT = "edit"  # the customer edited a message they sent (message_edit)
    HANDOVER = "handover"  # conversation routing: thread control moved between apps


# -- typed bodies ---------------------------------------------------------------------------
# Optional text fields hold Meta's scalar as text (ids may arrive as numbers, flags as
# booleans); a missing, empty or structured value is None. URLs and the customer's own
# text are kept only when they are strings, exactly as sent.


@dataclass(frozen=True, slots=True)
class Attachment:
    type: str  # Meta's attachment type as sent: "image", "story_mention", "ig_reel", ...
    url: str | None
    title: str | None
    story_id: str | None  # a story mention's story
    post_media_id: str | None  # a shared post's media (ig_post_media_id)


@dataclass(frozen=True, slots=True)
class Story:
    id: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class ReplyTo:
    mid: str | None  # the message replied to
    story: Story | None  # or the business's story replied to


@dataclass(frozen=True, slots=True)
class QuickReply:
    payload: str | None


@dataclass(frozen=True, slots=True)
class Referral:
    """Where a conversation came from: an ad, an ig.me link. Also a message's tag."""

    source: str | None
    type: str | None
    ref: str | None
    ad_id: str | None


@dataclass(frozen=True, slots=True)
class Message:
    mid: str | None
    text: str | None
    attachments: tuple[Attachment, ...]
    reply_to: ReplyTo | None
    quick_reply: QuickReply | None
    is_unsupported: bool  # something Instagram does not pass on (a poll, a GIF, ...)
    referral: Referral | None


@dataclass(frozen=True, slots=True)
class Echo:
    mid: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class Unsend:
    mid: str | None  # the message the customer deleted


@dataclass(frozen=True, slots=True)
class Postback:
    mid: str | None
    title: str | None
    payload: str | None


@dataclass(frozen=True, slots=True)
class Reaction:
    mid: str | None  # the message reacted to
    action: str | None  # "react" or "unreact"
    reaction: str | None  # Meta's name for it: "love", ...
    emoji: str | None


@dataclass(frozen=True, slots=True)
class Seen:
    mid: str | None


@dataclass(frozen=True, slots=True)
class Comment:
    id: str | None
    text: str  # "" when the comment has none
    from_id: str | None
    from_username: str | None
    parent_id: str | None  # the comment this one answers
    media_id: str | None
    media_product_type: str | None  # "FEED", "REELS", ...
    live: bool  # written on a live broadcast


@dataclass(frozen=True, slots=True)
class Mention:
    comment_id: str
    media_id: str


@dataclass(frozen=True, slots=True)
class MessageEdit:
    mid: str | None  # the message the customer edited
    text: str | None  # its text after the edit
    num_edit: int | None  # how many times it has been edited (Meta caps it at five)


class HandoverAction(StrEnum):
    PASSED = "pass_thread_control"  # control passed to this app
    TAKEN = "take_thread_control"  # control taken from this app
    REQUESTED = "request_thread_control"  # another app asks this app for control


@dataclass(frozen=True, slots=True)
class Handover:
    action: HandoverAction
    new_owner_app_id: str | None
    previous_owner_app_id: str | None
    requested_owner_app_id: str | None  # request_thread_control's asking app
    metadata: str | None  # the free text the other app attached


EventBody = (
    Message
    | Echo
    | Unsend
    | Postback
    | Reaction
    | Seen
    | Referral
    | Comment
    | Mention
    | MessageEdit
    | Handover
)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text or None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# Meta sends a handful of attachments per message (an Instagram DM carries at most ten
# photos or videos); past this many the rest are not forwarded (``too_many_attachments``),
# so a forged message with thousands costs no more than an ordinary one.
MAX_ATTACHMENTS = 20


def _attachments(raw: Any) -> tuple[Attachment, ...]:
    if isinstance(raw, dict):  # one attachment not wrapped in a list
        raw = [raw]
    if not isinstance(raw, list):
        return ()
    found: list[Attachment] = []
    for att in raw[:MAX_ATTACHMENTS]:
        if not isinstance(att, dict):
            continue  # an attachment that is not an object carries nothing to show
        payload = _dict(att.get("payload"))
        found.append(
            Attachment(
                type=str(att.get("type", "")),
                url=_string(payload.get("url")),
                title=_text(payload.get("title")),
                story_id=_text(payload.get("id") or payload.get("story_id")),
                post_media_id=_text(payload.get("ig_post_media_id")),
            )
        )
    return tuple(found)


def _count(value: Any) -> int | None:
    """A count Meta documents as an integer (and shows as a string in its sample)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _handover(data: dict[str, Any]) -> Handover:
    action = next((a for a in HandoverAction if a.value in data), HandoverAction.PASSED)
    control = _dict(data.get(action.value))
    return Handover(
        action=action,
        new_owner_app_id=_text(control.get("new_owner_app_id")),
        previous_owner_app_id=_text(control.get("previous_owner_app_id")),
        requested_owner_app_id=_text(control.get("requested_owner_app_id")),
        metadata=_string(control.get("metadata")) or None,
    )


def _referral(raw: dict[str, Any]) -> Referral:
    return Referral(
        source=_text(raw.get("source")),
        type=_text(raw.get("type")),
        ref=_text(raw.get("ref")),
        ad_id=_text(raw.get("ad_id")),
    )


def _message(item: dict[str, Any]) -> Message:
    message = _dict(item.get("message"))
    reply_to = message.get("reply_to")
    story = _dict(reply_to).get("story")
    quick = message.get("quick_reply")
    # A referral may ride in the message or beside it (Meta has sent both).
    referral = message.get("referral") or item.get("referral")
    return Message(
        mid=_text(message.get("mid")),
        text=_string(message.get("text")),
        attachments=_attachments(message.get("attachments")),
        reply_to=(
            ReplyTo(
                mid=_text(reply_to.get("mid")),
                story=(
                    Story(_text(story.get("id")), _string(story.get("url")))
                    if isinstance(story, dict)
                    else None
                ),
            )
            if isinstance(reply_to, dict)
            else None
        ),
        quick_reply=QuickReply(_text(quick.get("payload"))) if isinstance(quick, dict) else None,
        is_unsupported=bool(message.get("is_unsupported")),
        referral=_referral(referral) if isinstance(referral, dict) else None,
    )


def _comment(value: dict[str, Any], field: str | None) -> Comment:
    author = _dict(value.get("from"))
    media = _dict(value.get("media"))
    return Comment(
        id=_text(value.get("id")),
        text=_string(value.get("text")) or "",
        from_id=_text(author.get("id")),
        from_username=_text(author.get("username")),
        parent_id=_text(value.get("parent_id")),
        media_id=_text(media.get("id")),
        media_product_type=_text(media.get("media_product_type")),
        live=field == "live_comments",
    )


def read_body(kind: EventKind, data: dict[str, Any], field: str | None) -> EventBody:
    """The typed body of an item already classified as ``kind``. Total: a field of an
    unexpected shape reads as absent, so a stored job always decodes."""
    match kind:
        case EventKind.MESSAGE:
            return _message(data)
        case EventKind.ECHO:
            message = _dict(data.get("message"))
            return Echo(_text(message.get("mid")), _string(message.get("text")))
        case EventKind.UNSEND:
            return Unsend(_text(_dict(data.get("message")).get("mid")))
        case EventKind.POSTBACK:
            postback = _dict(data.get("postback"))
            return Postback(
                _text(postback.get("mid")),
                _text(postback.get("title")),
                _text(postback.get("payload")),
            )
        case EventKind.REACTION:
            reaction = _dict(data.get("reaction"))
            return Reaction(
                mid=_text(reaction.get("mid")),
                action=_text(reaction.get("action")),
                reaction=_text(reaction.get("reaction")),
                emoji=_text(reaction.get("emoji")),
            )
        case EventKind.SEEN:
            return Seen(_text(_dict(data.get("read")).get("mid")))
        case EventKind.REFERRAL:
            return _referral(_dict(data.get("referral")))
        case EventKind.COMMENT:
            return _comment(data, field)
        case EventKind.MENTION:
            return Mention(str(data.get("comment_id", "")), str(data.get("media_id", "")))
        case EventKind.EDIT:
            edit = _dict(data.get("message_edit"))
            return MessageEdit(
                _text(edit.get("mid")), _string(edit.get("text")), _count(edit.get("num_edit"))
            )
        case EventKind.HANDOVER:
            return _handover(data)


@dataclass(frozen=True, slots=True)
class InstagramEvent:
    kind: EventKind
    account_id: str  # the business Instagram account (entry.id)
    customer_id: str  # the customer's IGSID: the ordering key
    dedupe_key: str  # the platform id (mid, comment id) or one derived from it
    timestamp_ms: int  # Meta's event time in milliseconds
    data: dict[str, Any]  # the messaging item or the changes value, as Meta sent it (stored)
    field: str | None = None  # the changes[] field name, for changes-borne events
    # From entry.standby[]: a thread another app controls (delivered only when configured).
    standby: bool = False
    # Read from ``data`` once, here; derived, so equal data means an equal body.
    body: EventBody = dataclasses.field(init=False, repr=False, compare=False)
    # The stored form, encoded once: parsing checks it encodes, the splitter stores it.
    _json: bytes | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", read_body(self.kind, self.data, self.field))

    def to_json(self) -> bytes:
        """The stored form (``data`` must not be changed after the first call)."""
        encoded = self._json
        if encoded is None:
            encoded = self._encode()
            object.__setattr__(self, "_json", encoded)
        return encoded

    def _encode(self) -> bytes:
        stored: dict[str, Any] = {
            "kind": self.kind.value,
            "account_id": self.account_id,
            "customer_id": self.customer_id,
            "dedupe_key": self.dedupe_key,
            "timestamp_ms": self.timestamp_ms,
            "data": self.data,
            "field": self.field,
        }
        if self.standby:  # only then, so other jobs stay readable by older replicas
            stored["standby"] = True
        return json.dumps(
            stored,
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> InstagramEvent:
        obj = json.loads(raw)
        data = obj["data"]
        if not isinstance(data, dict):
            raise TypeError("stored event data is not an object")
        return cls(
            kind=EventKind(obj["kind"]),
            account_id=obj["account_id"],
            customer_id=obj["customer_id"],
            dedupe_key=obj["dedupe_key"],
            timestamp_ms=int(obj["timestamp_ms"]),
            data=data,
            field=obj.get("field"),
            standby=obj.get("standby") is True,
        )


class JustStored:
    """Events this process has just stored, by their stored form.

    The splitter parses a webhook; the inbound worker of the same process then takes the
    event as it is instead of decoding the job again. Lookup is by the job's bytes, so
    only an event stored exactly so is taken. Bounded (oldest forgotten first): a job
    another replica claims, or one dedupe dropped, is forgotten, and a job not found
    here is decoded as before."""

    def __init__(self, limit: int = 2048) -> None:
        self._limit = limit
        self._events: dict[bytes, InstagramEvent] = {}

    def add(self, event: InstagramEvent) -> None:
        events = self._events
        events[event.to_json()] = event
        if len(events) > self._limit:
            del events[next(iter(events))]

    def take(self, raw: bytes) -> InstagramEvent | None:
        """The event stored as ``raw``, once (a retry decodes again)."""
        return self._events.pop(raw, None)

    def __len__(self) -> int:
        return len(self._events)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An item of the batch that produced no event, and why (a metric label)."""

    reason: str  # short, low-cardinality: "unknown_field", "malformed_item", "stale", ...
    detail: str  # for the log line; never contains secrets

    def __post_init__(self) -> None:
        # Details quote the webhook; a lone surrogate in one must not break the log line.
        object.__setattr__(self, "detail", _printable(self.detail))


def _printable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(slots=True)
class ParseResult:
    events: list[InstagramEvent] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


FORWARDED_KINDS = frozenset(
    {
        EventKind.MESSAGE,
        EventKind.UNSEND,
        EventKind.POSTBACK,
        EventKind.REACTION,
        EventKind.REFERRAL,
        EventKind.COMMENT,
        EventKind.MENTION,
        EventKind.EDIT,
        EventKind.HANDOVER,
    }
)

# changes[] fields whose value is a messaging item (the App Dashboard's test events).
MESSAGING_FIELDS = frozenset(
    {
        "messages",
        "message_reactions",
        "messaging_postbacks",
        "messaging_seen",
        "messaging_referral",
        "message_echoes",
        "messaging_optins",
        "message_edit",
        "messaging_handover",
    }
)
# What Meta's App Dashboard "Test" button puts in entry.id: no account has it.
DASHBOARD_TEST_ENTRY_ID = "0"
StandbyMode = Literal["skip", "deliver"]
COMMENT_FIELDS = frozenset({"comments", "live_comments"})


class _Refused(Exception):
    """An item no handler could take: ``reason`` is the metric label, the message names
    the field, not its content."""

    reason = "malformed_item"


class _Malformed(_Refused):
    """An item lacks what its shape requires, or a field has the wrong type."""


class _BadTimestamp(_Refused):
    reason = "invalid_timestamp"


class _BadUrl(_Refused):
    reason = "invalid_url"


def _str_id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise _Malformed(f"{what} missing or not an id")
    return str(value)


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is not an object")
    return value


MAX_MILLIS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: Genesys's times stop there
# Meta retries a webhook for 36 hours; an event older than the dedupe memory can only be
# a replay of a webhook whose ids were forgotten, so it is refused rather than resent.
REPLAY_HORIZON_MS = int(DEDUPE_RETENTION_SECONDS * 1000)
# How far ahead of our clock a platform's time may be. Clocks are not a day apart (a
# time-zone slip is at most 14 hours); a stamp further ahead is broken or forged, and is
# refused (``future_timestamp``): stored, it would outlive its dedupe key and a replay of
# it would never be old enough to be stale.
MAX_AHEAD_MS = 86_400_000


def replay_cutoff_ms(now_ms: int, horizon_ms: int) -> int:
    """Platform times before this are replays (``stale``). An accepted time is at most
    ``MAX_AHEAD_MS`` ahead of its arrival and its dedupe key lives ``REPLAY_HORIZON_MS``
    from then: the horizon is shortened by the allowed lead, so every replay that dedupe
    no longer catches is stale."""
    return now_ms - min(horizon_ms, REPLAY_HORIZON_MS - MAX_AHEAD_MS)


def _millis(value: Any, what: str) -> int | None:
    """Meta's timestamps: ms (messaging), seconds (entry.time), digit or ISO strings in
    test events. None when absent; a time that is not a whole positive number (or an
    ISO time with its zone) before year 10000 is refused."""
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            number = int(text)
        else:
            return _iso_millis(value, what)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or number <= 0:
        raise _BadTimestamp(f"{what} is not a positive whole number")
    ms = number * 1000 if number < 100_000_000_000 else number
    if ms > MAX_MILLIS:
        raise _BadTimestamp(f"{what} is past year 9999")
    return ms


def _iso_millis(value: str, what: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _BadTimestamp(f"{what} is not a time") from None
    if parsed.tzinfo is None:
        raise _BadTimestamp(f"{what} has no time zone")
    try:
        ms = int(parsed.timestamp() * 1000)
    except (OverflowError, ValueError):
        raise _BadTimestamp(f"{what} is out of range") from None
    if not 0 < ms <= MAX_MILLIS:
        raise _BadTimestamp(f"{what} is before 1970 or past year 9999")
    return ms


def _url_ok(url: str | None) -> bool:
    """A URL the media check and the file name can read (``https://[::1`` cannot)."""
    if url is None:
        return True
    try:
        parts = urllib.parse.urlsplit(url)
        parts.hostname, parts.port  # noqa: B018 (both parse lazily and may raise)
    except ValueError:
        return False
    return True


def _check_urls(body: EventBody) -> None:
    if not isinstance(body, Message):
        return
    for att in body.attachments:
        if not _url_ok(att.url):
            raise _BadUrl("an attachment URL cannot be parsed")
    reply_to = body.reply_to
    if reply_to is not None and reply_to.story is not None and not _url_ok(reply_to.story.url):
        raise _BadUrl("the story URL cannot be parsed")


def _check_message(message: dict[str, Any]) -> None:
    """A message whose attachments are a number or a flag: refused, not shown empty."""
    attachments = message.get("attachments")
    if attachments is not None and not isinstance(attachments, (list, dict)):
        raise _Malformed("message.attachments is not a list")


def _encodable(event: InstagramEvent) -> bool:
    """False when a string holds a lone surrogate (an unpaired ``\\ud83d`` escape). The
    stored form it encodes is kept for the splitter."""
    try:
        event.to_json()
    except UnicodeEncodeError:
        return False
    return True


def _messaging_event(
    item: dict[str, Any],
    account_id: str,
    fallback_ms: int,
    field: str | None,
    *,
    standby: bool = False,
) -> InstagramEvent | Skipped:
    sender = _str_id(_obj(item.get("sender"), "sender").get("id"), "sender.id")
    recipient_obj = item.get("recipient")
    recipient = (
        str(recipient_obj["id"])
        if isinstance(recipient_obj, dict) and isinstance(recipient_obj.get("id"), (str, int))
        else account_id
    )
    ts = _millis(item.get("timestamp"), "timestamp") or fallback_ms

    def event(kind: EventKind, customer: str, key: str) -> InstagramEvent:
        return InstagramEvent(kind, account_id, customer, key, ts, item, field, standby)

    if "message" in item:
        message = _obj(item["message"], "message")
        mid = _str_id(message.get("mid"), "message.mid")
        _check_message(message)
        if message.get("is_echo"):
            return event(EventKind.ECHO, recipient, mid)
        if message.get("is_deleted"):
            return event(EventKind.UNSEND, sender, f"{mid}#unsend")
        return event(EventKind.MESSAGE, sender, mid)
    if "postback" in item:
        postback = _obj(item["postback"], "postback")
        pb_mid = postback.get("mid")
        key = (
            str(pb_mid)
            if isinstance(pb_mid, (str, int)) and pb_mid != ""
            else f"postback:{sender}:{ts}"
        )
        return event(EventKind.POSTBACK, sender, key)
    if "reaction" in item:
        reaction = _obj(item["reaction"], "reaction")
        mid = _str_id(reaction.get("mid"), "reaction.mid")
        action = str(reaction.get("action", "react"))
        name = reaction.get("reaction") or reaction.get("emoji") or ""
        return event(EventKind.REACTION, sender, f"{mid}#reaction:{action}:{name}:{ts}")
    if "read" in item:
        read = _obj(item["read"], "read")
        seen = read.get("mid") or read.get("watermark") or ts
        return event(EventKind.SEEN, sender, f"{seen}#seen:{sender}")
    if "referral" in item:
        _obj(item["referral"], "referral")
        return event(EventKind.REFERRAL, sender, f"referral:{sender}:{ts}")
    if "message_edit" in item:
        edit = _obj(item["message_edit"], "message_edit")
        mid = _str_id(edit.get("mid"), "message_edit.mid")
        if sender == account_id:
            return Skipped("own_edit", f"edit of {mid[:80]} made by the business")
        count = _count(edit.get("num_edit"))
        return event(EventKind.EDIT, sender, f"{mid}#edit:{count if count is not None else ts}")
    for action in HandoverAction:
        if action.value in item:
            _obj(item[action.value], action.value)
            return event(EventKind.HANDOVER, sender, f"handover:{action.value}:{sender}:{ts}")
    raise _Malformed(
        "messaging item has none of message/postback/reaction/read/referral/message_edit/"
        "thread control"
    )


def _change_event(
    change: dict[str, Any], entry_id: str, own_ids: frozenset[str], entry_ms: int
) -> InstagramEvent | Skipped:
    field = change.get("field")
    value = change.get("value")
    if not isinstance(field, str):
        return Skipped("malformed_item", "changes item without a field name")
    if field in MESSAGING_FIELDS:
        return _messaging_event(_obj(value, f"{field} value"), entry_id, entry_ms, field)
    if field in COMMENT_FIELDS:
        value = _obj(value, f"{field} value")
        comment_id = _str_id(value.get("id"), "comment id")
        author = _str_id(_obj(value.get("from"), "comment from").get("id"), "comment from.id")
        if author in own_ids:
            return Skipped("own_comment", f"comment {comment_id} written by the business")
        ts = _millis(value.get("timestamp"), f"{field} timestamp") or entry_ms
        return InstagramEvent(EventKind.COMMENT, entry_id, author, comment_id, ts, value, field)
    if field == "mentions":
        value = _obj(value, "mentions value")
        comment_id = _str_id(value.get("comment_id"), "mentions comment_id")
        media_id = _str_id(value.get("media_id"), "mentions media_id")
        return InstagramEvent(
            EventKind.MENTION,
            entry_id,
            f"ig-mention-{media_id}",
            f"mention:{comment_id}",
            entry_ms,
            value,
            field,
        )
    return Skipped("unknown_field", f"changes field {field[:64]!r}")


def _whole_entry(entry: dict[str, Any], reason: str, detail: str) -> list[Skipped]:
    """One skip per item of an entry skipped whole (at least one per entry)."""
    count = sum(
        len(raw)
        for key in ("messaging", "changes", "standby")
        if isinstance(raw := entry.get(key), list)
    )
    return [Skipped(reason, detail)] * max(count, 1)


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _admit(
    parsed: InstagramEvent, raw_ms: int, now_ms: int, horizon_ms: int | None, test_entry: bool
) -> InstagramEvent | Skipped:
    """The event as stored, or why it is not: a replay past the dedupe memory, a time
    more than a day ahead, or text that is not Unicode. Its time is clamped to a little
    past now (Meta's clock may run ahead of ours), so a stamp hours ahead cannot hold the
    24-hour window open; its dedupe key keeps the time as sent, so a replay of it is
    still a duplicate."""
    if horizon_ms and not test_entry and raw_ms < replay_cutoff_ms(now_ms, horizon_ms):
        age_days = (now_ms - raw_ms) / 86_400_000
        return Skipped("stale", f"{parsed.dedupe_key[:80]} is {age_days:.1f} days old")
    if not test_entry and raw_ms > now_ms + MAX_AHEAD_MS:
        ahead_days = (raw_ms - now_ms) / 86_400_000
        detail = f"{parsed.dedupe_key[:80]} is stamped {ahead_days:.1f} days ahead"
        return Skipped("future_timestamp", detail)
    clamped = clamp_event_ms(raw_ms, now_ms)
    if clamped != raw_ms:
        parsed = dataclasses.replace(parsed, timestamp_ms=clamped)
    if not _encodable(parsed):
        return Skipped("invalid_unicode", f"{parsed.dedupe_key[:80]}")
    return parsed


def _cap_attachments(event: InstagramEvent) -> tuple[InstagramEvent, int]:
    """The event with at most ``MAX_ATTACHMENTS`` attachments in what is stored (its body
    reads no more than that already), and how many were left out."""
    message = event.data.get("message")
    if not isinstance(message, dict):
        return event, 0
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or len(attachments) <= MAX_ATTACHMENTS:
        return event, 0
    kept = {**message, "attachments": attachments[:MAX_ATTACHMENTS]}
    data = {**event.data, "message": kept}
    return dataclasses.replace(event, data=data), len(attachments) - MAX_ATTACHMENTS


def parse_webhook(
    body: Any,
    account_id: str | None = None,
    *,
    entry_ids: Iterable[str] = (),
    standby: StandbyMode = "skip",
    now_ms: Callable[[], int] | None = None,
    horizon_ms: int | None = None,
) -> ParseResult:
    """Parse a decoded webhook body (``{"object": "instagram", "entry": [...]}``).

    ``account_id`` is the configured business account; comments it wrote are dropped
    (as are those written by the entry's own account id). When it is given, an entry for
    any other account is skipped (``other_account``): one Meta app may serve several
    accounts through one callback URL, and another brand's messages must not reach this
    channel. ``entry_ids`` are further ids this account's entries may carry
    (with Instagram Login, ``entry.id`` is the app-scoped user id, which may differ from
    the id ``/me`` gives). ``entry.standby[]`` holds threads another app controls:
    skipped (``standby``), or delivered marked when ``standby`` is ``"deliver"``.

    ``now_ms`` is the clock (read once per call): events older than ``horizon_ms`` by
    Meta's timestamp (less the day a time may run ahead, ``replay_cutoff_ms``) are
    skipped as ``stale`` (None or 0: never), and events more than a day ahead as
    ``future_timestamp``, except the App Dashboard's test events, whose sample times are
    years old.
    """
    result = ParseResult()
    if not isinstance(body, dict) or body.get("object") != "instagram":
        result.skipped.append(Skipped("not_instagram", "body is not an instagram object"))
        return result
    entries = body.get("entry")
    if not isinstance(entries, list):
        result.skipped.append(Skipped("malformed_item", "entry is not a list"))
        return result
    now = now_ms() if now_ms is not None else int(time.time() * 1000)
    accepted = frozenset({account_id, DASHBOARD_TEST_ENTRY_ID, *entry_ids}) if account_id else None
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), (str, int)):
            result.skipped.append(Skipped("malformed_item", "entry without an id"))
            continue
        entry_id = str(entry["id"])
        if not _unicode(entry_id):
            detail = "entry.id is not valid Unicode (a lone surrogate escape)"
            result.skipped.extend(_whole_entry(entry, "invalid_unicode", detail))
            continue
        if accepted is not None and entry_id not in accepted:
            detail = f"entry.id {entry_id[:40]} is not this channel's account"
            result.skipped.extend(_whole_entry(entry, "other_account", detail))
            continue
        own_ids = frozenset({entry_id} | ({account_id} if account_id else set()))
        try:
            entry_ms = _millis(entry.get("time"), "entry.time") or now
        except _BadTimestamp as exc:
            result.skipped.extend(_whole_entry(entry, exc.reason, str(exc)))
            continue
        test_entry = entry_id == DASHBOARD_TEST_ENTRY_ID
        items: list[tuple[str, Any]] = []
        for key in ("messaging", "changes", "standby"):
            raw = entry.get(key)
            if isinstance(raw, list):
                items.extend((key, item) for item in raw)
            elif raw is not None:
                result.skipped.append(Skipped("malformed_item", f"{key} is not a list"))
        for key, item in items:
            if key == "standby" and standby == "skip":
                result.skipped.append(Skipped("standby", "a thread another app controls"))
                continue
            try:
                if not isinstance(item, dict):
                    raise _Malformed(f"{key} item is not an object")
                parsed = (
                    _change_event(item, entry_id, own_ids, entry_ms)
                    if key == "changes"
                    else _messaging_event(item, entry_id, entry_ms, None, standby=key == "standby")
                )
                dropped = 0
                if isinstance(parsed, InstagramEvent):
                    parsed, dropped = _cap_attachments(parsed)  # before anything encodes it
                    _check_urls(parsed.body)
                    parsed = _admit(parsed, parsed.timestamp_ms, now, horizon_ms, test_entry)
                if dropped and isinstance(parsed, InstagramEvent):
                    detail = f"{parsed.dedupe_key[:80]}: {dropped} attachments past the first"
                    result.skipped.append(
                        Skipped("too_many_attachments", f"{detail} {MAX_ATTACHMENTS}")
                    )
            except _Refused as exc:
                result.skipped.append(Skipped(exc.reason, str(exc)))
                continue
            if isinstance(parsed, Skipped):
                result.skipped.append(parsed)
            else:
                result.events.append(parsed)
    return result
