"""The webhook side of the Meta simulator: Meta-shaped event bodies, signed and delivered
the way Meta documents it.

Builders return whole webhook bodies (``{"object": "instagram", "entry": [...]}``);
``batch`` joins several into one delivery. A builder for something the customer did
(a message, a postback, a referral) moves the 24-hour window through ``on_customer``,
as the customer writing would; seen receipts, reactions, echoes, unsends, edits and
handovers do not. ``standby`` turns a delivery into what a thread's secondary app gets;
``for_account`` builds another business account's deliveries (one app, several accounts).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import httpx

Body = dict[str, Any]
AttachmentType = Literal[
    "image", "video", "audio", "file", "share", "story_mention", "ig_reel", "reel", "ig_post"
]


def sign_meta(body: bytes, secret: str) -> str:
    """``X-Hub-Signature-256``: lowercase hex HMAC-SHA256 of the exact bytes sent."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def encode_like_meta(body: Body) -> bytes:
    """Meta escapes non-ASCII as ``\\uXXXX``; the signature covers exactly these bytes."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def deliver_webhook(
    url: str, body: Body | bytes, secret: str, *, timeout: float = 20.0
) -> httpx.Response:
    """POST one signed delivery (Meta gives up after 20 s); bytes are sent as they are."""
    raw = body if isinstance(body, bytes) else encode_like_meta(body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        "X-Hub-Signature-256": sign_meta(raw, secret),
    }
    return httpx.post(url, content=raw, headers=headers, timeout=timeout)


def verify_webhook(url: str, verify_token: str, challenge: str) -> httpx.Response:
    """Meta's subscription handshake: the endpoint must echo ``challenge``."""
    params = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}
    return httpx.get(url, params=params, timeout=10)


def _now_ms() -> int:
    return int(time.time() * 1000)


class MetaWebhooks:
    """Builds deliveries for one business account."""

    def __init__(
        self,
        account_id: str,
        *,
        on_customer: Callable[[str, int], None] = lambda igsid, ts_ms: None,
        on_comment: Callable[[str, int], None] = lambda comment_id, ts_ms: None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.account_id = account_id
        self._on_customer = on_customer
        self._on_comment = on_comment
        self._clock_ms = clock_ms
        self._serial = itertools.count(1)

    def new_mid(self) -> str:
        return f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAU{uuid.uuid4().hex}"

    # -- the general form (also used directly by tests with unusual shapes) -----------------
    def messaging(
        self, sender: str, message: Body | None = None, *, ts_ms: int | None = None, **other: Any
    ) -> Body:
        """One ``messaging[]`` item from ``sender``; ``message`` gets a ``mid`` if it has none."""
        ts = ts_ms if ts_ms is not None else self._clock_ms()
        item: Body = {"sender": {"id": sender}, "recipient": {"id": self.account_id}}
        item["timestamp"] = ts
        if message is not None:
            item["message"] = {"mid": self.new_mid(), **message}
        item.update(other)
        customer_did = (
            message is not None and not message.get("is_echo") and not message.get("is_deleted")
        ) or any(k in other for k in ("postback", "referral"))
        if customer_did:
            self._on_customer(sender, ts)
        return item

    def body(self, messaging: list[Body] | None = None, changes: list[Body] | None = None) -> Body:
        """One delivery with one entry; changes-only entries carry ``time`` in seconds,
        as Meta's comment notifications do."""
        now = self._clock_ms()
        entry: Body = {"id": self.account_id, "time": now if messaging else now // 1000}
        if messaging:
            entry["messaging"] = messaging
        if changes:
            entry["changes"] = changes
        return {"object": "instagram", "entry": [entry]}

    @staticmethod
    def batch(*bodies: Body) -> Body:
        """Several deliveries as one (Meta batches up to 1000 updates)."""
        return {"object": "instagram", "entry": [e for b in bodies for e in b["entry"]]}

    def _one(self, sender: str, ts_ms: int | None, message: Body | None, **other: Any) -> Body:
        return self.body([self.messaging(sender, message, ts_ms=ts_ms, **other)])

    @staticmethod
    def _mid(mid: str | None) -> Body:
        return {"mid": mid} if mid else {}

    # -- messages ------------------------------------------------------------------------------
    def text(
        self, sender: str, text: str, *, mid: str | None = None, ts_ms: int | None = None
    ) -> Body:
        return self._one(sender, ts_ms, {**self._mid(mid), "text": text})

    def attachment(
        self,
        sender: str,
        kind: AttachmentType,
        url: str,
        *,
        mid: str | None = None,
        ts_ms: int | None = None,
        **payload: Any,
    ) -> Body:
        """``message.attachments[0]``; extra payload keys (``title``, ``ig_post_media_id``)."""
        attachment = {"type": kind, "payload": {"url": url, **payload}}
        return self._one(sender, ts_ms, {**self._mid(mid), "attachments": [attachment]})

    def story_mention(
        self, sender: str, story_url: str, *, mid: str | None = None, ts_ms: int | None = None
    ) -> Body:
        return self.attachment(sender, "story_mention", story_url, mid=mid, ts_ms=ts_ms)

    def story_reply(
        self,
        sender: str,
        text: str,
        story_url: str,
        story_id: str = "17900000000000001",
        *,
        mid: str | None = None,
        ts_ms: int | None = None,
    ) -> Body:
        reply_to = {"story": {"url": story_url, "id": story_id}}
        return self._one(sender, ts_ms, {**self._mid(mid), "text": text, "reply_to": reply_to})

    def reply_to(
        self,
        sender: str,
        text: str,
        replied_mid: str,
        *,
        mid: str | None = None,
        ts_ms: int | None = None,
    ) -> Body:
        message = {**self._mid(mid), "text": text, "reply_to": {"mid": replied_mid}}
        return self._one(sender, ts_ms, message)

    def quick_reply(
        self,
        sender: str,
        text: str,
        payload: str,
        *,
        mid: str | None = None,
        ts_ms: int | None = None,
    ) -> Body:
        message = {**self._mid(mid), "text": text, "quick_reply": {"payload": payload}}
        return self._one(sender, ts_ms, message)

    def echo(
        self, customer: str, text: str, *, mid: str | None = None, ts_ms: int | None = None
    ) -> Body:
        """The business's own message (from the Instagram app or the relay): ids swapped."""
        ts = ts_ms if ts_ms is not None else self._clock_ms()
        item = {
            "sender": {"id": self.account_id},
            "recipient": {"id": customer},
            "timestamp": ts,
            "message": {"mid": mid or self.new_mid(), "text": text, "is_echo": True},
        }
        return self.body([item])

    def unsend(self, sender: str, mid: str, *, ts_ms: int | None = None) -> Body:
        return self._one(sender, ts_ms, {"mid": mid, "is_deleted": True})

    # -- other messaging events ------------------------------------------------------------------
    def postback(
        self,
        sender: str,
        title: str,
        payload: str,
        *,
        mid: str | None = None,
        ts_ms: int | None = None,
    ) -> Body:
        postback = {"mid": mid or self.new_mid(), "title": title, "payload": payload}
        return self._one(sender, ts_ms, None, postback=postback)

    def reaction(
        self,
        sender: str,
        mid: str,
        emoji: str = "❤️",
        *,
        action: Literal["react", "unreact"] = "react",
        ts_ms: int | None = None,
    ) -> Body:
        reaction: Body = {"mid": mid, "action": action}
        if action == "react":
            reaction.update(reaction="love" if emoji == "❤️" else "other", emoji=emoji)
        return self._one(sender, ts_ms, None, reaction=reaction)

    def seen(self, sender: str, mid: str, *, ts_ms: int | None = None) -> Body:
        return self._one(sender, ts_ms, None, read={"mid": mid})

    def referral(
        self,
        sender: str,
        ref: str,
        *,
        source: str = "ADS",
        kind: str = "OPEN_THREAD",
        ad_id: str | None = None,
        ts_ms: int | None = None,
    ) -> Body:
        referral: Body = {"ref": ref, "source": source, "type": kind}
        if ad_id is not None:
            referral["ad_id"] = ad_id
        return self._one(sender, ts_ms, None, referral=referral)

    # -- comments and mentions (changes[]) -------------------------------------------------------
    def comment(
        self,
        from_id: str,
        username: str,
        text: str,
        *,
        comment_id: str | None = None,
        media_id: str = "18000000000000001",
        parent_id: str | None = None,
        media_product_type: str = "FEED",
    ) -> Body:
        """A comment on a post; the business may answer it once with a private reply."""
        cid = comment_id or f"1785{next(self._serial):013d}"
        value: Body = {
            "from": {"id": from_id, "username": username},
            "media": {"id": media_id, "media_product_type": media_product_type},
            "id": cid,
            "text": text,
        }
        if parent_id is not None:
            value["parent_id"] = parent_id
        self._on_comment(cid, self._clock_ms())
        return self.body(changes=[{"field": "comments", "value": value}])

    def mention(self, media_id: str, comment_id: str) -> Body:
        """Someone mentioned the business in a comment (look it up with the Graph API)."""
        return self.body(
            changes=[
                {"field": "mentions", "value": {"media_id": media_id, "comment_id": comment_id}}
            ]
        )

    # -- edits, conversation routing, other accounts -----------------------------------------------
    def message_edit(
        self, sender: str, mid: str, text: str, *, num_edit: int = 1, ts_ms: int | None = None
    ) -> Body:
        """The customer edited a message they sent (Meta allows five edits)."""
        edit = {"mid": mid, "text": text, "num_edit": num_edit}
        return self._one(sender, ts_ms, None, message_edit=edit)

    def handover(
        self,
        sender: str,
        action: Literal["pass_thread_control", "take_thread_control", "request_thread_control"],
        *,
        new_owner_app_id: str | None = None,
        previous_owner_app_id: str | None = None,
        requested_owner_app_id: str | None = None,
        metadata: str | None = None,
        ts_ms: int | None = None,
    ) -> Body:
        """Thread control moved (conversation routing); ``sender`` is the customer."""
        control = {
            k: v
            for k, v in (
                ("new_owner_app_id", new_owner_app_id),
                ("previous_owner_app_id", previous_owner_app_id),
                ("requested_owner_app_id", requested_owner_app_id),
                ("metadata", metadata),
            )
            if v is not None
        }
        return self._one(sender, ts_ms, None, **{action: control})

    @staticmethod
    def standby(body: Body) -> Body:
        """The same delivery as another app, the thread's owner, would get it: this app sees
        the thread's items under ``standby[]`` instead of ``messaging[]``."""
        entries = []
        for entry in body["entry"]:
            moved = {k: v for k, v in entry.items() if k != "messaging"}
            if "messaging" in entry:
                moved["standby"] = entry["messaging"]
            entries.append(moved)
        return {**body, "entry": entries}

    def for_account(self, account_id: str) -> MetaWebhooks:
        """Builders for another business account served by the same app (and callback URL):
        its customers are not this account's, so they move no window here."""
        return MetaWebhooks(account_id, clock_ms=self._clock_ms)
