"""Instagram event → Genesys Open Messaging inbound message.

The customer's text passes through untouched (byte-exact); everything Genesys has no
field for becomes a note the agent can read plus flat ``customAttributes`` an
Architect flow can route on (``Source == Instagram_DM`` and friends).

``gather`` does the lookups an event needs (profile, media checks, the mentioned
comment, the CRM) and ``build`` turns the event and those facts into the message
without any I/O of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

from ..genesys.payloads import (
    Attachment,
    ButtonResponse,
    ChannelMetadata,
    Content,
    CustomerMessage,
    From,
    InboundChannel,
    InboundMessage,
    MediaType,
    StructuredResponse,
)
from ..meta.events import Attachment as AttachmentBody
from ..meta.events import (
    Comment,
    Echo,
    EventBody,
    Handover,
    HandoverAction,
    InstagramEvent,
    Mention,
    Message,
    MessageEdit,
    Postback,
    Reaction,
    Referral,
    Seen,
    Unsend,
)
from ..meta.graph import MentionedComment, Profile
from ..meta.media import MediaInfo
from .answers import origin
from .media_type import attachment_mime, media_type, verified_media_type
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
# A mention is someone else's comment on someone else's post: Instagram offers no direct
# message (nor private reply) to it, so a reply from Genesys could only fail.
MENTION_NOTE = (
    "(This mention cannot be answered by direct message: reply publicly under the post "
    "in the Instagram app.)"
)
STANDBY_NOTE = (
    "(Another app controls this conversation on Instagram: replies from here will be "
    "refused until it passes control to this channel.)"
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
    # Profile attributes (PROFILE_FIELDS) that may reach Genesys; None: all of them.
    profile_attributes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class NotForwarded:
    reason: str


@dataclass(frozen=True, slots=True)
class Facts:
    """What the relay looked up for one event: all ``build`` needs besides the event."""

    profile: Profile | None = None  # the customer's, for direct messages
    media: Mapping[str, MediaInfo] = dataclasses.field(default_factory=dict)  # checks, by URL
    mentioned: MentionedComment | None = None  # the comment a mention points at, if found
    crm: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the CRM's fields
    profile_attributes: frozenset[str] | None = None  # the attribute policy in force


AttachmentRole = Literal["unsupported", "story_mention", "media", "share"]


def _role(kind: str) -> AttachmentRole:
    if kind == "unsupported_type":
        return "unsupported"
    if kind == "story_mention":
        return "story_mention"
    if kind in MEDIA_TYPES:
        return "media"
    return "share"  # shares, reels, posts, cards, links, types Meta adds later


def media_checks(body: EventBody) -> list[tuple[str, str]]:
    """The URLs whose type ``build`` goes by, each with the type the webhook declared."""
    if not isinstance(body, Message):
        return []
    checks: list[tuple[str, str]] = []
    story = body.reply_to.story if body.reply_to else None
    if story is not None and story.url is not None:
        checks.append((story.url, "story_mention"))
    for att in body.attachments:
        checked = _role(att.type) in ("story_mention", "media") or att.type in REELS
        if att.url is not None and checked:
            checks.append((att.url, att.type))
    return checks


async def gather(event: InstagramEvent, ctx: InboundContext) -> Facts:
    """Every lookup the event needs: the only I/O of a translation."""
    body = event.body
    profile = None
    if isinstance(body, (Message, Unsend, Postback, Reaction, Referral, MessageEdit, Handover)):
        # Commenters and mentioners are not messaging contacts: no profile for them.
        profile = await ctx.profiles.get_profile(event.customer_id)
    media: dict[str, MediaInfo] = {}
    for url, declared in media_checks(body):
        if url not in media:
            media[url] = await ctx.media.probe(url, declared)
    mentioned = None
    if isinstance(body, Mention):
        mentioned = await ctx.mentions.get_mentioned_comment(ctx.account_id, body.comment_id)
    facts = Facts(
        profile=profile,
        media=media,
        mentioned=mentioned,
        profile_attributes=ctx.profile_attributes,
    )
    if ctx.crm is None:
        return facts
    # The CRM is asked only about what will be forwarded, by the username the message shows.
    draft = _build(event, facts)
    if isinstance(draft, NotForwarded):
        return facts
    username = _attributes(draft).get("InstagramUsername")
    return dataclasses.replace(facts, crm=await ctx.crm.lookup(event.customer_id, username))


def build(event: InstagramEvent, facts: Facts) -> CustomerMessage | NotForwarded:
    """The message Genesys gets for the event, or why there is none. Pure."""
    result = _build(event, facts)
    if event.standby and not isinstance(result, NotForwarded):
        result = _standby(result)
    if facts.profile_attributes is not None and not isinstance(result, NotForwarded):
        result = _only_allowed(result, facts.profile_attributes)
    if isinstance(result, NotForwarded) or not facts.crm:
        return result
    # CRM fields enrich; they never overwrite what the relay itself says (Source, ...).
    merged = {**facts.crm, **_attributes(result)}
    channel = result.channel.model_copy(
        update={"metadata": ChannelMetadata(custom_attributes=merged)}
    )
    return result.model_copy(update={"channel": channel})


async def translate(event: InstagramEvent, ctx: InboundContext) -> CustomerMessage | NotForwarded:
    return build(event, await gather(event, ctx))


# The attributes made of the customer's profile, which the attribute policy governs
# (ProfileUrl and Source stay whatever it says: routing depends on them).
PROFILE_FIELDS = frozenset(
    {"InstagramUsername", "FollowerCount", "FollowerTier", "FollowsBusiness", "VerifiedUser"}
)


def _only_allowed(message: CustomerMessage, allowed: frozenset[str]) -> CustomerMessage:
    attrs = {
        k: v for k, v in _attributes(message).items() if k not in PROFILE_FIELDS or k in allowed
    }
    channel = message.channel.model_copy(
        update={"metadata": ChannelMetadata(custom_attributes=attrs)}
    )
    return message.model_copy(update={"channel": channel})


def _standby(message: CustomerMessage) -> CustomerMessage:
    """A copy of a thread another app controls: marked, so the flow and the agent know (an
    answer to a button has no text to carry the note: the attribute tells)."""
    attrs = {**_attributes(message), "Standby": "true"}
    channel = message.channel.model_copy(
        update={"metadata": ChannelMetadata(custom_attributes=attrs)}
    )
    if isinstance(message, StructuredResponse):
        return message.model_copy(update={"channel": channel})
    text = f"{message.text}\n{STANDBY_NOTE}" if message.text else STANDBY_NOTE
    return message.model_copy(update={"channel": channel, "text": text})


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


def _bounded(text: str | None) -> str | None:
    """An attribute value: at most ATTRIBUTE_LIMIT characters, or None for nothing."""
    return text[:ATTRIBUTE_LIMIT] if text else None


def _attributes(message: CustomerMessage) -> dict[str, str]:
    metadata = message.channel.metadata or ChannelMetadata()
    return metadata.custom_attributes


def _visual(info: MediaInfo | None) -> MediaType | None:
    found = verified_media_type(info)
    return found if found in VISUAL_TYPES else None


def _filename(url: str) -> str | None:
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return last if "." in last.strip(".") else None


class _Draft:
    """What a message is being built from; turned into the payload at the end."""

    def __init__(self, event: InstagramEvent, source: str, event_type: str) -> None:
        self.event = event
        self.texts: list[str] = []
        self.content: list[Content] = []
        self.choice: ButtonResponse | None = None  # an answer to the agent's buttons
        self.origin: str | None = None  # the agent message that offered them
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

    def attr(self, name: str, value: str | None) -> None:
        text = _bounded(value)
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
            self.attr("FollowerCount", str(profile.follower_count))
            self.attr("FollowerTier", follower_tier(profile.follower_count))
        if profile.is_user_follow_business is not None:
            self.attr("FollowsBusiness", str(profile.is_user_follow_business).lower())
        if profile.is_verified_user is not None:
            self.attr("VerifiedUser", str(profile.is_verified_user).lower())

    def attach(self, url: str, kind: MediaType, mime: str, caption: str | None) -> None:
        self.content.append(
            Content(
                attachment=Attachment(
                    media_type=kind, url=url, mime=mime, filename=_filename(url), text=caption
                )
            )
        )

    def media(self, url: str, info: MediaInfo | None, declared: str) -> None:
        """A picture, video, sound or file: the checked type, else the declared one."""
        kind = media_type(info, declared)
        self.attach(url, kind, attachment_mime(info, kind), None)

    def link(self, url: str, info: MediaInfo | None, caption: str) -> None:
        """A story or a share: shown as what it is only when checked as a picture or video
        (an expired story no longer loads, a reel's page is HTML); else a link."""
        visual = _visual(info)
        if visual is not None:
            self.attach(url, visual, attachment_mime(info, visual), caption)
        else:
            self.attach(url, "Link", attachment_mime(info, "Link"), caption)

    def answer(
        self, kind: Literal["QuickReply", "Button"], text: str, payload: str | None, attr: str
    ) -> None:
        """The customer answered a quick reply or a button. When its payload names the agent
        message that offered it (answers.py), Genesys gets a structured response with the
        agent's own payload; otherwise the answer stays an ordinary message, its text and
        the payload as it came (in ``attr``) — never lost."""
        found = origin(payload)
        if found is None:
            self.attr(attr, payload)
            return
        self.attr(attr, found.payload)
        self.origin = found.message_id
        self.choice = ButtonResponse(type=kind, text=text or found.payload, payload=found.payload)

    def referral(self, referral: Referral) -> None:
        self.attr("ReferralSource", referral.source)
        self.attr("ReferralType", referral.type)
        self.attr("ReferralRef", referral.ref)
        self.attr("ReferralAdId", referral.ad_id)

    def build(self) -> CustomerMessage | NotForwarded:
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
        if self.choice is not None and self.origin is not None and not self.content:
            return StructuredResponse(
                channel=channel, button_response=self.choice, originating_message_id=self.origin
            )
        return InboundMessage(channel=channel, text=text or None, content=self.content or None)


def _note(event: InstagramEvent, facts: Facts, event_type: str, text: str) -> _Draft:
    """A direct-message event with no text of its own: a note for the agent."""
    draft = _Draft(event, "Instagram_DM", event_type)
    draft.profile(facts.profile)
    draft.texts.append(text)
    return draft


def _build(event: InstagramEvent, facts: Facts) -> CustomerMessage | NotForwarded:
    match event.body:
        case Message() as message:
            return _message(event, message, facts)
        case Unsend(mid=unsent):
            mid = _bounded(unsent) or "?"
            draft = _note(
                event,
                facts,
                "unsend",
                f"🗑️ The customer unsent a message (id {mid}). "
                "It is no longer visible on Instagram.",
            )
            draft.attr("UnsentMessageId", mid)
            return draft.build()
        case Postback() as postback:
            title = _bounded(postback.title) or "(tapped a button)"
            draft = _note(event, facts, "postback", title)
            draft.attr("PostbackTitle", postback.title)
            draft.answer("Button", title, postback.payload, "PostbackPayload")
            return draft.build()
        case Reaction() as reaction:
            shown = _bounded(reaction.emoji) or _bounded(reaction.reaction) or "a reaction"
            action = _bounded(reaction.action) or "react"
            note = (
                f"Removed the reaction {shown}"
                if action == "unreact"
                else f"Reacted {shown} to a message"
            )
            draft = _note(event, facts, "reaction", note)
            draft.attr("Reaction", reaction.reaction or reaction.emoji)
            draft.attr("ReactionAction", action)
            draft.attr("ReactedMessageId", reaction.mid)
            return draft.build()
        case Referral() as referral:
            if referral.ad_id:
                note = f"Started the conversation from an ad (ad id {referral.ad_id})"
            elif referral.ref:
                note = f"Started the conversation from an ig.me link (ref {referral.ref})"
            else:
                note = "Started the conversation from a referral"
            draft = _note(event, facts, "referral", note)
            draft.referral(referral)
            return draft.build()
        case MessageEdit() as edit:
            mid = _bounded(edit.mid) or "?"
            count = f", edit {edit.num_edit}" if edit.num_edit is not None else ""
            draft = _note(
                event,
                facts,
                "edit",
                f"✏️ The customer edited a message (id {mid}{count}). New text: {edit.text or ''}",
            )
            draft.attr("EditedMessageId", mid)
            draft.attr("EditCount", str(edit.num_edit) if edit.num_edit is not None else None)
            return draft.build()
        case Handover() as handover:
            draft = _note(event, facts, "handover", _handover_note(handover))
            draft.attr("HandoverAction", handover.action.value)
            draft.attr("HandoverNewOwnerAppId", handover.new_owner_app_id)
            draft.attr("HandoverPreviousOwnerAppId", handover.previous_owner_app_id)
            draft.attr("HandoverRequestedOwnerAppId", handover.requested_owner_app_id)
            draft.attr("HandoverMetadata", handover.metadata)
            return draft.build()
        case Comment() as comment:
            return _comment(event, comment)
        case Mention() as mention:
            return _mention(event, mention, facts.mentioned)
        case Echo() | Seen():
            return NotForwarded(event.kind.value)


def _handover_note(handover: Handover) -> str:
    """Meta sends each handover to the app it concerns: a pass to the app given control,
    a take to the app that lost it, a request to the app that holds it."""
    match handover.action:
        case HandoverAction.PASSED:
            text = (
                "🔀 This conversation was passed to this channel"
                + (
                    f" by app {handover.previous_owner_app_id}"
                    if handover.previous_owner_app_id
                    else ""
                )
                + ": replies from here are delivered again."
            )
        case HandoverAction.TAKEN:
            text = (
                "🔀 Another app"
                + (f" (app {handover.new_owner_app_id})" if handover.new_owner_app_id else "")
                + " took control of this conversation; replies from here will be refused until "
                "it passes control back."
            )
        case HandoverAction.REQUESTED:
            text = (
                "🔀 Another app"
                + (
                    f" (app {handover.requested_owner_app_id})"
                    if handover.requested_owner_app_id
                    else ""
                )
                + " asks for control of this conversation."
            )
    if handover.metadata:
        text += f" Its note: {_bounded(handover.metadata)}"
    return text


def _message(
    event: InstagramEvent, message: Message, facts: Facts
) -> CustomerMessage | NotForwarded:
    draft = _Draft(event, "Instagram_DM", "text")
    draft.profile(facts.profile)
    if message.text is not None:
        draft.texts.append(message.text)
    reply_to = message.reply_to
    story = reply_to.story if reply_to is not None else None
    if story is not None:
        draft.attrs["Source"] = "Instagram_StoryReply"
        draft.attrs["EventType"] = "story_reply"
        draft.attr("StoryId", story.id)
        draft.attr("StoryUrl", story.url)
        if story.url is not None:
            draft.link(story.url, facts.media.get(story.url), "Reply to your story")
    draft.attr("ReplyToMessageId", reply_to.mid if reply_to is not None else None)
    if message.quick_reply is not None:
        draft.attrs["EventType"] = "quick_reply"
        draft.answer(
            "QuickReply", message.text or "", message.quick_reply.payload, "QuickReplyPayload"
        )
    for att in message.attachments:
        _attachment(draft, att, facts)
    if message.is_unsupported:
        draft.attrs["EventType"] = "unsupported"
        if UNSUPPORTED_NOTE not in draft.texts:
            draft.texts.append(UNSUPPORTED_NOTE)
    if message.referral is not None:
        # Inside a message the referral only tags it; a standalone one is its own note.
        draft.referral(message.referral)
    return draft.build()


def _attachment(draft: _Draft, att: AttachmentBody, facts: Facts) -> None:
    kind, url = att.type, att.url
    match _role(kind):
        case "unsupported":
            draft.texts.append(UNSUPPORTED_NOTE)
            draft.attrs["EventType"] = "unsupported"
        case "story_mention":
            draft.attrs["Source"] = "Instagram_StoryMention"
            draft.attrs["EventType"] = "story_mention"
            draft.texts.insert(0, "Mentioned you in their story")
            draft.attr("StoryUrl", url)
            draft.attr("StoryId", att.story_id)
            if url is not None:
                # An expired story no longer loads: pass the URL on as a link.
                draft.link(url, facts.media.get(url), "Story mention")
        case "media":
            if draft.attrs["EventType"] == "text":
                draft.attrs["EventType"] = kind
            if url is not None:
                draft.media(url, facts.media.get(url), kind)
        case "share":
            # Shares, reels, posts, cards, links: a link the agent can open.
            if draft.attrs["EventType"] == "text":
                draft.attrs["EventType"] = kind if kind in SHARE_CAPTIONS else "fallback"
            caption = SHARE_CAPTIONS.get(kind, "Shared something")
            title = _bounded(att.title)
            draft.attr("PostTitle", title)
            draft.attr("PostMediaId", att.post_media_id)
            if url is not None:
                checked = facts.media.get(url) if kind in REELS else None
                draft.link(url, checked, f"{caption}: {title}" if title else caption)
            elif title:
                draft.texts.append(f"{caption}: {title}")


def _comment(event: InstagramEvent, comment: Comment) -> CustomerMessage | NotForwarded:
    draft = _Draft(event, "Instagram_Comment", "comment")
    draft.username(_bounded(comment.from_username))
    draft.texts.append(comment.text)
    draft.attr("CommentId", comment.id)
    draft.attr("ParentCommentId", comment.parent_id)
    draft.attr("MediaId", comment.media_id)
    draft.attr("MediaProductType", comment.media_product_type)
    if comment.live:
        draft.attr("LiveComment", "true")
    return draft.build()


def _mention(
    event: InstagramEvent, mention: Mention, found: MentionedComment | None
) -> CustomerMessage | NotForwarded:
    draft = _Draft(event, "Instagram_Mention", "mention")
    draft.attr("CommentId", mention.comment_id)
    draft.attr("MediaId", mention.media_id)
    if found is not None:
        draft.username(found.username)
        draft.texts.append(f"Mentioned you in a comment: {found.text}")
    else:
        draft.texts.append(
            f"Mentioned you in a comment (comment {mention.comment_id} on media "
            f"{mention.media_id}); the comment's text could not be fetched."
        )
    draft.texts.append(MENTION_NOTE)
    return draft.build()
