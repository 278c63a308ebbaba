"""Instagram webhook events: the typed form the relay stores and translates.

``parse_webhook`` turns one verified webhook body into events. It never raises on
content: shapes it does not know are returned as ``Skipped`` with a reason, so the
caller can log and count them while the rest of the batch is still stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


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


@dataclass(frozen=True, slots=True)
class InstagramEvent:
    kind: EventKind
    account_id: str  # the business Instagram account (entry.id)
    customer_id: str  # the customer's IGSID: the ordering key
    dedupe_key: str  # the platform id (mid, comment id) or one derived from it
    timestamp_ms: int  # Meta's event time in milliseconds
    data: dict[str, Any]  # the messaging item or the changes value, as Meta sent it
    field: str | None = None  # the changes[] field name, for changes-borne events

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "kind": self.kind.value,
                "account_id": self.account_id,
                "customer_id": self.customer_id,
                "dedupe_key": self.dedupe_key,
                "timestamp_ms": self.timestamp_ms,
                "data": self.data,
                "field": self.field,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> InstagramEvent:
        obj = json.loads(raw)
        return cls(
            kind=EventKind(obj["kind"]),
            account_id=obj["account_id"],
            customer_id=obj["customer_id"],
            dedupe_key=obj["dedupe_key"],
            timestamp_ms=int(obj["timestamp_ms"]),
            data=obj["data"],
            field=obj.get("field"),
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """An item of the batch that produced no event, and why (a metric label)."""

    reason: str  # short, low-cardinality: "unknown_field", "malformed_item", ...
    detail: str  # for the log line; never contains secrets


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
    }
)
COMMENT_FIELDS = frozenset({"comments", "live_comments"})


class _Malformed(Exception):
    """An item lacks what its shape requires; the message names the field, not content."""


def _str_id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise _Malformed(f"{what} missing or not an id")
    return str(value)


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is not an object")
    return value


def _millis(value: Any) -> int | None:
    """Meta's timestamps: ms (messaging), seconds (entry.time), strings in test events."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return _iso_millis(value)
    if isinstance(value, (int, float)) and value == value and 0 < value < 1e16:
        return int(value * 1000) if value < 1e11 else int(value)
    return None


def _iso_millis(value: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


def _encodable(data: Any) -> bool:
    """False when a string holds a lone surrogate (an unpaired ``\\ud83d`` escape)."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _messaging_event(
    item: dict[str, Any], account_id: str, fallback_ms: int, field: str | None
) -> InstagramEvent:
    sender = _str_id(_obj(item.get("sender"), "sender").get("id"), "sender.id")
    recipient_obj = item.get("recipient")
    recipient = (
        str(recipient_obj["id"])
        if isinstance(recipient_obj, dict) and isinstance(recipient_obj.get("id"), (str, int))
        else account_id
    )
    ts = _millis(item.get("timestamp")) or fallback_ms

    def event(kind: EventKind, customer: str, key: str) -> InstagramEvent:
        return InstagramEvent(kind, account_id, customer, key, ts, item, field)

    if "message" in item:
        message = _obj(item["message"], "message")
        mid = _str_id(message.get("mid"), "message.mid")
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
    raise _Malformed("messaging item has none of message/postback/reaction/read/referral")


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
        ts = _millis(value.get("timestamp")) or entry_ms
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


def parse_webhook(
    body: Any, account_id: str | None = None, *, now_ms: Callable[[], int] | None = None
) -> ParseResult:
    """Parse a decoded webhook body (``{"object": "instagram", "entry": [...]}``).

    ``account_id`` is the configured business account; comments it wrote are dropped
    (as are those written by the entry's own account id).
    """
    result = ParseResult()
    if not isinstance(body, dict) or body.get("object") != "instagram":
        result.skipped.append(Skipped("not_instagram", "body is not an instagram object"))
        return result
    entries = body.get("entry")
    if not isinstance(entries, list):
        result.skipped.append(Skipped("malformed_item", "entry is not a list"))
        return result
    clock = now_ms or (lambda: int(time.time() * 1000))
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), (str, int)):
            result.skipped.append(Skipped("malformed_item", "entry without an id"))
            continue
        entry_id = str(entry["id"])
        own_ids = frozenset({entry_id} | ({account_id} if account_id else set()))
        entry_ms = _millis(entry.get("time")) or clock()
        items: list[tuple[str, Any]] = []
        for key in ("messaging", "changes", "standby"):
            raw = entry.get(key)
            if isinstance(raw, list):
                items.extend((key, item) for item in raw)
            elif raw is not None:
                result.skipped.append(Skipped("malformed_item", f"{key} is not a list"))
        for key, item in items:
            try:
                if not isinstance(item, dict):
                    raise _Malformed(f"{key} item is not an object")
                parsed = (
                    _change_event(item, entry_id, own_ids, entry_ms)
                    if key == "changes"
                    else _messaging_event(item, entry_id, entry_ms, None)
                )
            except _Malformed as exc:
                result.skipped.append(Skipped("malformed_item", str(exc)))
                continue
            if isinstance(parsed, Skipped):
                result.skipped.append(parsed)
            elif not _encodable(parsed.data):
                result.skipped.append(Skipped("invalid_unicode", f"{parsed.dedupe_key[:80]}"))
            else:
                result.events.append(parsed)
    return result
