"""Instagram event → Genesys Open Messaging inbound message.

The customer's text passes through untouched (byte-exact); everything Genesys has no
field for becomes a note the agent can read plus flat ``customAttributes`` an
Architect flow can route on (``Source == Instagram_DM`` and friends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

from ..genesys.payloads import (
    Attachment,
    ButtonResponse,
    ChannelMetadata,
    Content,
    From,
    InboundChannel,
    InboundMessage,
    MediaType,
)
from ..meta.events import EventKind, InstagramEvent
from ..meta.graph import MentionedComment, Profile
from ..meta.media import MediaInfo
from .timefmt import format_time

ATTRIBUTE_LIMIT = 1000
PROFILE_URL = "https://www.instagram.com/{}"

SHARE_CAPTIONS = {
    "share": "Shared a post",
    "ig_reel": "Shared a reel",
    "reel": "Shared a reel",
    "ig_post": "Shared a post",
    "template": "Shared a card",
    "fallback": "Shared a link",
}
REELS = ("ig_reel", "reel")  # a reel may be a playable video; posts and cards stay links
MEDIA_TYPES = {"image", "video", "audio", "file"}
# What a story or a shared post may show as instead of a link: a checked picture or video
# (a reel's page answers text/html, an odd CDN type would make a bogus "File").
VISUAL_TYPES: frozenset[MediaType] = frozenset({"Image", "Video"})
UNSUPPORTED_NOTE = (
    "The customer sent something Instagram does not pass on to other apps "
    "(for example a poll, a GIF or a voice effect). Check the conversation in the Instagram "
    "app, or ask the customer to describe it."
)


class MediaCheck(Protocol):
    async def probe(self, url: str, declared_type: str) -> MediaInfo: ...


class ProfileLookup(Protocol):
    async def get_profile(self, igsid: str) -> Profile | None: ...


class MentionLookup(Protocol):
    async def get_mentioned_comment(
        self, account_id: str, comment_id: str
    ) -> MentionedComment | None: ...


class CrmCheck(Protocol):
    async def lookup(self, igsid: str, username: str | None) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class InboundContext:
    media: MediaCheck
    profiles: ProfileLookup
    mentions: MentionLookup
    account_id: str
    crm: CrmCheck | None = None


@dataclass(frozen=True, slots=True)
class NotForwarded:
    reason: str


def follower_tier(count: int) -> str:
    """A routing-friendly bucket: Architect flows compare strings more easily than numbers."""
    for limit, tier in (
        (1_000, "standard"),
        (10_000, "micro"),
        (100_000, "mid"),
        (1_000_000, "macro"),
    ):
        if count < limit:
            return tier
    return "mega"


def _s(value: Any) -> str | None:
    """An attribute value: a bounded string, or None for nothing worth showing."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text[:ATTRIBUTE_LIMIT] if text else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _visual(info: MediaInfo | None) -> MediaInfo | None:
    return info if info is not None and info.verified and info.media_type in VISUAL_TYPES else None


class _Draft:
    """What a message is being built from; turned into the payload at the end."""

    def __init__(self, event: InstagramEvent, source: str, event_type: str) -> None:
        self.event = event
        self.texts: list[str] = []
        self.content: list[Content] = []
        self.attrs: dict[str, str] = {
            "Source": source,
            "EventType": event_type,
            "InstagramUserId": event.customer_id,
            "InstagramAccountId": event.account_id,
        }
        self.nickname: str | None = None
        self.first_name: str | None = None
        self.last_name: str | None = None
        self.image: str | None = None

    def attr(self, name: str, value: Any) -> None:
        text = _s(value)
        if text is not None:
            self.attrs[name] = text

    def username(self, username: str | None) -> None:
        if username:
            self.nickname = username
            self.attr("InstagramUsername", username)
            self.attr("ProfileUrl", PROFILE_URL.format(username))

    def profile(self, profile: Profile | None) -> None:
        if profile is None:
            return
        self.username(profile.username)
        if profile.name:
            first, _, last = profile.name.partition(" ")
            self.first_name, self.last_name = first or None, last or None
        self.image = profile.profile_pic
        if profile.follower_count is not None:
            self.attr("FollowerCount", profile.follower_count)
            self.attr("FollowerTier", follower_tier(profile.follower_count))
        if profile.is_user_follow_business is not None:
            self.attr("FollowsBusiness", str(profile.is_user_follow_business).lower())
        if profile.is_verified_user is not None:
            self.attr("VerifiedUser", str(profile.is_verified_user).lower())

    def attach(
        self, url: str, info: MediaInfo | None, media_type: MediaType, caption: str | None
    ) -> None:
        mime = info.mime if info and info.verified else None
        kind = info.media_type if info and info.verified else media_type
        self.content.append(
            Content(
                attachment=Attachment(
                    media_type=kind, url=url, mime=mime, filename=_filename(url), text=caption
                )
            )
        )

    def answer(self, kind: Literal["QuickReply", "Button"], text: str, payload: Any) -> None:
        """The customer answered a quick reply or a button: Genesys gets it as structured."""
        self.content.append(
            Content(
                content_type="ButtonResponse",
                button_response=ButtonResponse(type=kind, text=text, payload=_s(payload) or text),
            )
        )

    def build(self) -> InboundMessage | NotForwarded:
        text = "\n".join(t for t in self.texts if t)
        if not text and not self.content:
            return NotForwarded("empty")
        sender = From(
            id=self.event.customer_id,
            nickname=self.nickname,
            first_name=self.first_name,
            last_name=self.last_name,
            image=self.image,
        )
        channel = InboundChannel(
            message_id=self.event.dedupe_key,
            time=format_time(self.event.timestamp_ms),
            from_=sender,
            metadata=ChannelMetadata(custom_attributes=self.attrs),
        )
        return InboundMessage(channel=channel, text=text or None, content=self.content or None)


def _filename(url: str) -> str | None:
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return last if "." in last.strip(".") else None


async def _attachments(draft: _Draft, message: dict[str, Any], ctx: InboundContext) -> None:
    for att in message.get("attachments") or []:
        if not isinstance(att, dict):
            continue
        kind = str(att.get("type", ""))
        payload = _obj(att.get("payload"))
        url = payload.get("url")
        if kind == "unsupported_type":
            draft.texts.append(UNSUPPORTED_NOTE)
            draft.attrs["EventType"] = "unsupported"
            continue
        if kind == "story_mention":
            draft.attrs["Source"] = "Instagram_StoryMention"
            draft.attrs["EventType"] = "story_mention"
            draft.texts.insert(0, "Mentioned you in their story")
            draft.attr("StoryUrl", url)
            draft.attr("StoryId", payload.get("id") or payload.get("story_id"))
            if isinstance(url, str):
                info = _visual(await ctx.media.probe(url, kind))
                # An expired story no longer loads: pass the URL on as a link.
                draft.attach(url, info, "Link", "Story mention")
            continue
        if kind in MEDIA_TYPES:
            if draft.attrs["EventType"] == "text":
                draft.attrs["EventType"] = kind
            if isinstance(url, str):
                info = await ctx.media.probe(url, kind)
                draft.attach(url, info, info.media_type, None)
            continue
        # Shares, reels, posts, cards, links: a link the agent can open.
        if draft.attrs["EventType"] == "text":
            draft.attrs["EventType"] = kind if kind in SHARE_CAPTIONS else "fallback"
        caption = SHARE_CAPTIONS.get(kind, "Shared something")
        title = _s(payload.get("title"))
        draft.attr("PostTitle", title)
        draft.attr("PostMediaId", payload.get("ig_post_media_id"))
        if isinstance(url, str):
            checked = _visual(await ctx.media.probe(url, kind)) if kind in REELS else None
            draft.attach(url, checked, "Link", f"{caption}: {title}" if title else caption)
        elif title:
            draft.texts.append(f"{caption}: {title}")


async def _message(event: InstagramEvent, ctx: InboundContext) -> InboundMessage | NotForwarded:
    message = _obj(event.data.get("message"))
    draft = _Draft(event, "Instagram_DM", "text")
    draft.profile(await ctx.profiles.get_profile(event.customer_id))
    text = message.get("text")
    if isinstance(text, str):
        draft.texts.append(text)
    reply_to = _obj(message.get("reply_to"))
    story = reply_to.get("story")
    if isinstance(story, dict):
        draft.attrs["Source"] = "Instagram_StoryReply"
        draft.attrs["EventType"] = "story_reply"
        draft.attr("StoryId", story.get("id"))
        draft.attr("StoryUrl", story.get("url"))
        url = story.get("url")
        if isinstance(url, str):
            info = _visual(await ctx.media.probe(url, "story_mention"))
            draft.attach(url, info, "Link", "Reply to your story")
    draft.attr("ReplyToMessageId", reply_to.get("mid"))
    quick = message.get("quick_reply")
    if isinstance(quick, dict):
        draft.attrs["EventType"] = "quick_reply"
        draft.attr("QuickReplyPayload", quick.get("payload"))
        draft.answer("QuickReply", text if isinstance(text, str) else "", quick.get("payload"))
    await _attachments(draft, message, ctx)
    if message.get("is_unsupported"):
        draft.attrs["EventType"] = "unsupported"
        if UNSUPPORTED_NOTE not in draft.texts:
            draft.texts.append(UNSUPPORTED_NOTE)
    referral = message.get("referral") or event.data.get("referral")
    if isinstance(referral, dict):
        # Inside a message the referral only tags it; a standalone one is its own note.
        _referral_attrs(draft, referral)
    return draft.build()


def _referral_attrs(draft: _Draft, referral: dict[str, Any]) -> None:
    draft.attr("ReferralSource", referral.get("source"))
    draft.attr("ReferralType", referral.get("type"))
    draft.attr("ReferralRef", referral.get("ref"))
    draft.attr("ReferralAdId", referral.get("ad_id"))


async def _simple(event: InstagramEvent, ctx: InboundContext, event_type: str, text: str) -> _Draft:
    draft = _Draft(event, "Instagram_DM", event_type)
    draft.profile(await ctx.profiles.get_profile(event.customer_id))
    draft.texts.append(text)
    return draft


async def translate(event: InstagramEvent, ctx: InboundContext) -> InboundMessage | NotForwarded:
    result = await _translate(event, ctx)
    if ctx.crm is None or isinstance(result, NotForwarded):
        return result
    metadata = result.channel.metadata or ChannelMetadata()
    attrs = metadata.custom_attributes
    found = await ctx.crm.lookup(event.customer_id, attrs.get("InstagramUsername"))
    if not found:
        return result
    # CRM fields enrich; they never overwrite what the relay itself says (Source, ...).
    merged = {**found, **attrs}
    channel = result.channel.model_copy(
        update={"metadata": ChannelMetadata(custom_attributes=merged)}
    )
    return result.model_copy(update={"channel": channel})


async def _translate(event: InstagramEvent, ctx: InboundContext) -> InboundMessage | NotForwarded:
    data = event.data
    match event.kind:
        case EventKind.MESSAGE:
            return await _message(event, ctx)
        case EventKind.UNSEND:
            mid = _s(_obj(data.get("message")).get("mid")) or "?"
            draft = await _simple(
                event,
                ctx,
                "unsend",
                f"🗑️ The customer unsent a message (id {mid}). "
                "It is no longer visible on Instagram.",
            )
            draft.attr("UnsentMessageId", mid)
            return draft.build()
        case EventKind.POSTBACK:
            postback = _obj(data.get("postback"))
            title = _s(postback.get("title")) or "(tapped a button)"
            draft = await _simple(event, ctx, "postback", title)
            draft.answer("Button", title, postback.get("payload"))
            draft.attr("PostbackTitle", postback.get("title"))
            draft.attr("PostbackPayload", postback.get("payload"))
            return draft.build()
        case EventKind.REACTION:
            reaction = _obj(data.get("reaction"))
            shown = _s(reaction.get("emoji")) or _s(reaction.get("reaction")) or "a reaction"
            action = _s(reaction.get("action")) or "react"
            note = (
                f"Removed the reaction {shown}"
                if action == "unreact"
                else f"Reacted {shown} to a message"
            )
            draft = await _simple(event, ctx, "reaction", note)
            draft.attr("Reaction", reaction.get("reaction") or reaction.get("emoji"))
            draft.attr("ReactionAction", action)
            draft.attr("ReactedMessageId", reaction.get("mid"))
            return draft.build()
        case EventKind.REFERRAL:
            referral = _obj(data.get("referral"))
            if referral.get("ad_id"):
                note = f"Started the conversation from an ad (ad id {referral['ad_id']})"
            elif referral.get("ref"):
                note = f"Started the conversation from an ig.me link (ref {referral['ref']})"
            else:
                note = "Started the conversation from a referral"
            draft = await _simple(event, ctx, "referral", note)
            _referral_attrs(draft, referral)
            return draft.build()
        case EventKind.COMMENT:
            return _comment(event)
        case EventKind.MENTION:
            return await _mention(event, ctx)
        case EventKind.ECHO | EventKind.SEEN:
            return NotForwarded(event.kind.value)


def _comment(event: InstagramEvent) -> InboundMessage | NotForwarded:
    value = event.data
    draft = _Draft(event, "Instagram_Comment", "comment")
    author = _obj(value.get("from"))
    draft.username(_s(author.get("username")))
    text = value.get("text")
    draft.texts.append(text if isinstance(text, str) else "")
    draft.attr("CommentId", value.get("id"))
    draft.attr("ParentCommentId", value.get("parent_id"))
    media = _obj(value.get("media"))
    draft.attr("MediaId", media.get("id"))
    draft.attr("MediaProductType", media.get("media_product_type"))
    if event.field == "live_comments":
        draft.attr("LiveComment", "true")
    return draft.build()


async def _mention(event: InstagramEvent, ctx: InboundContext) -> InboundMessage | NotForwarded:
    value = event.data
    comment_id = str(value.get("comment_id", ""))
    media_id = str(value.get("media_id", ""))
    draft = _Draft(event, "Instagram_Mention", "mention")
    draft.attr("CommentId", comment_id)
    draft.attr("MediaId", media_id)
    found = await ctx.mentions.get_mentioned_comment(ctx.account_id, comment_id)
    if found is not None:
        draft.username(found.username)
        draft.texts.append(f"Mentioned you in a comment: {found.text}")
    else:
        draft.texts.append(
            f"Mentioned you in a comment (comment {comment_id} on media {media_id}); "
            "the comment's text could not be fetched."
        )
    return draft.build()
