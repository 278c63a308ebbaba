"""Instagram webhook events: the typed form the relay stores and translates.

``parse_webhook`` turns one verified webhook body into events. It never raises on
content: shapes it does not know are returned as ``Skipped`` with a reason, so the
caller can log and count them while the rest of the batch is still stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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


def parse_webhook(body: Any) -> ParseResult:
    """Parse a decoded webhook body (``{"object": "instagram", "entry": [...]}``)."""
    raise NotImplementedError
