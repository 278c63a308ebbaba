"""translate(): every Instagram event shape → the Open Messaging inbound body Genesys gets.

The media checks and profile lookups are the real clients, talking to a CDN (HTTPS, with
a throwaway CA) and a Graph API running on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from igbridge.relay.genesys.payloads import CustomerMessage, InboundMessage
from igbridge.relay.meta.events import EventKind, InstagramEvent
from igbridge.relay.meta.graph import GraphClient
from igbridge.relay.meta.media import MediaProber
from igbridge.relay.pipeline.inbound import (
    UNSUPPORTED_NOTE,
    InboundContext,
    NotForwarded,
    translate,
)
from igbridge.relay.pipeline.timefmt import format_time
from igbridge.sandbox.server import serve_in_thread
from igbridge.sandbox.tls import TLSFiles, make_tls

TOKEN = "page-token"
ACCOUNT = "17841400000000001"
CUSTOMER = "6915500000000001"
STRANGER = "6915500000000009"  # Graph has no profile for them (no consent yet)
COMMENTER = "6915500000000003"
TS = 1767261600000  # 2026-01-01T10:00:00.000Z
PIC = "https://scontent.cdninstagram.com/v/t51/ana.jpg?oh=1"
MENTIONED = "17850000000000099"

MIMES = {"1": "image/jpeg", "2": "video/mp4", "3": "audio/mp4", "4": "image/png", "5": "image/gif"}
EXPIRED = {"13"}


@dataclass
class World:
    """The loopback CDN and Graph API, and what they were asked."""

    tls: TLSFiles
    cdn: str = ""
    graph: str = ""
    cdn_requests: list[str] = field(default_factory=list)
    graph_requests: list[str] = field(default_factory=list)

    def cdn_url(self, asset: str) -> str:
        return f"{self.cdn}/ig_messaging_cdn/?asset_id={asset}&signature=AbQx1-sig"


def _cdn_app(world: World) -> Starlette:
    async def asset(request: Request) -> Response:
        world.cdn_requests.append(request.url.path)
        asset_id = request.query_params.get("asset_id", "")
        if asset_id in EXPIRED:
            return Response("URL signature expired", status_code=403, media_type="text/plain")
        if asset_id not in MIMES:
            return Response(status_code=404)
        return Response(status_code=200, headers={"Content-Type": MIMES[asset_id]})

    async def reel(request: Request) -> Response:
        world.cdn_requests.append(request.url.path)
        return Response("<html>reel</html>", media_type="text/html")

    async def named(request: Request) -> Response:
        world.cdn_requests.append(request.url.path)
        return Response(status_code=200, headers={"Content-Type": "application/pdf"})

    return Starlette(
        routes=[
            Route("/ig_messaging_cdn/", asset, methods=["GET", "HEAD"]),
            Route("/reel/{code}/", reel, methods=["GET", "HEAD"]),
            Route("/files/{name}", named, methods=["GET", "HEAD"]),
        ]
    )


def _graph_app(world: World) -> Starlette:
    async def node(request: Request) -> Response:
        node_id = request.path_params["node"]
        world.graph_requests.append(node_id)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _graph_error(190, "Invalid OAuth access token")
        fields = request.query_params.get("fields", "")
        if node_id == ACCOUNT and f"comment_id({MENTIONED})" in fields:
            comment = {"id": MENTIONED, "text": "@ourbrand is the best 🔥", "username": "fan_1"}
            return JSONResponse({"mentioned_comment": comment, "id": ACCOUNT})
        if node_id != CUSTOMER:
            return _graph_error(100, f"Object with ID '{node_id}' does not exist")
        return JSONResponse(
            {
                "name": "Ana Maria Lima",
                "username": "ana.customer",
                "profile_pic": PIC,
                "follower_count": 1520,
                "is_user_follow_business": True,
                "is_business_follow_user": False,
                "is_verified_user": False,
                "id": CUSTOMER,
            }
        )

    return Starlette(routes=[Route("/v21.0/{node}", node)])


def _graph_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": code}}, status_code=400)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(make_tls(tmp_path_factory.mktemp("tls")))
    with (
        serve_in_thread(_cdn_app(w), certfile=w.tls.cert, keyfile=w.tls.key) as cdn,
        serve_in_thread(_graph_app(w)) as graph,
    ):
        w.cdn, w.graph = cdn.url, f"{graph.url}/v21.0"
        yield w


def run(world: World, event: InstagramEvent) -> CustomerMessage | NotForwarded:
    async def go() -> CustomerMessage | NotForwarded:
        cdn_host = world.cdn.removeprefix("https://")  # host:port: only 443 needs no port
        media = MediaProber((cdn_host,), timeout=2.0, ca_file=world.tls.ca)
        graph = GraphClient(world.graph, TOKEN, timeout=2.0)
        try:
            return await translate(event, InboundContext(media, graph, graph, ACCOUNT))
        finally:
            await media.aclose()
            await graph.aclose()

    return asyncio.run(go())


def body(world: World, event: InstagramEvent) -> dict[str, Any]:
    result = run(world, event)
    assert isinstance(result, InboundMessage), result
    return result.body()


def attrs(payload: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = payload["channel"]["metadata"]["customAttributes"]
    return found


def dm(message: dict[str, Any], *, customer: str = CUSTOMER) -> InstagramEvent:
    item = {
        "sender": {"id": customer},
        "recipient": {"id": ACCOUNT},
        "timestamp": TS,
        "message": message,
    }
    kind = EventKind.UNSEND if message.get("is_deleted") else EventKind.MESSAGE
    key = f"{message['mid']}#unsend" if message.get("is_deleted") else message["mid"]
    return InstagramEvent(kind, ACCOUNT, customer, key, TS, item)


def messaging(kind: EventKind, key: str, name: str, value: dict[str, Any]) -> InstagramEvent:
    item = {"sender": {"id": CUSTOMER}, "recipient": {"id": ACCOUNT}, "timestamp": TS, name: value}
    return InstagramEvent(kind, ACCOUNT, CUSTOMER, key, TS, item)


def attachment(kind: str, url: str | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"url": url} if url else {}
    return {"type": kind, "payload": {**payload, **extra}}


ANA_FROM = {
    "id": CUSTOMER,
    "idType": "Opaque",
    "nickname": "ana.customer",
    "firstName": "Ana",
    "lastName": "Maria Lima",
    "image": PIC,
}


def ana_attrs(source: str, event_type: str, **extra: str) -> dict[str, str]:
    return {
        "Source": source,
        "EventType": event_type,
        "InstagramUserId": CUSTOMER,
        "InstagramAccountId": ACCOUNT,
        "InstagramUsername": "ana.customer",
        "ProfileUrl": "https://www.instagram.com/ana.customer",
        "FollowerCount": "1520",
        "FollowerTier": "micro",
        "FollowsBusiness": "true",
        "VerifiedUser": "false",
        **extra,
    }


def channel(message_id: str, source: str, event_type: str, **extra: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "time": "2026-01-01T10:00:00.000Z",
        "from": ANA_FROM,
        "metadata": {"customAttributes": ana_attrs(source, event_type, **extra)},
    }


# -- full payloads for representative shapes ------------------------------------------------


def test_text_message_with_the_customer_profile(world: World) -> None:
    got = body(world, dm({"mid": "mid.text.1", "text": "Hi, I need help with order #4512"}))
    assert got == {
        "channel": channel("mid.text.1", "Instagram_DM", "text"),
        "text": "Hi, I need help with order #4512",
    }


def test_image_is_checked_and_its_url_passed_through(world: World) -> None:
    url = world.cdn_url("1")
    got = body(world, dm({"mid": "mid.image.1", "attachments": [attachment("image", url)]}))
    assert got == {
        "channel": channel("mid.image.1", "Instagram_DM", "image"),
        "content": [{"attachment": {"mediaType": "Image", "url": url, "mime": "image/jpeg"}}],
    }


def test_story_mention(world: World) -> None:
    url = world.cdn_url("2")
    event = dm({"mid": "mid.storymention.1", "attachments": [attachment("story_mention", url)]})
    assert body(world, event) == {
        "channel": channel(
            "mid.storymention.1", "Instagram_StoryMention", "story_mention", StoryUrl=url
        ),
        "text": "Mentioned you in their story",
        "content": [
            {
                "attachment": {
                    "mediaType": "Video",
                    "url": url,
                    "mime": "video/mp4",
                    "text": "Story mention",
                },
            }
        ],
    }


def test_story_reply(world: World) -> None:
    url = world.cdn_url("1")
    story = {"url": url, "id": "17900000000000013"}
    event = dm(
        {
            "mid": "mid.storyreply.1",
            "text": "Where can I buy this? 😍",
            "reply_to": {"story": story},
        }
    )
    assert body(world, event) == {
        "channel": channel(
            "mid.storyreply.1",
            "Instagram_StoryReply",
            "story_reply",
            StoryId="17900000000000013",
            StoryUrl=url,
        ),
        "text": "Where can I buy this? 😍",
        "content": [
            {
                "attachment": {
                    "mediaType": "Image",
                    "url": url,
                    "mime": "image/jpeg",
                    "text": "Reply to your story",
                },
            }
        ],
    }


def test_unsend(world: World) -> None:
    event = dm({"mid": "mid.gone.1", "is_deleted": True})
    assert body(world, event) == {
        "channel": channel(
            "mid.gone.1#unsend", "Instagram_DM", "unsend", UnsentMessageId="mid.gone.1"
        ),
        "text": "🗑️ The customer unsent a message (id mid.gone.1). "
        "It is no longer visible on Instagram.",
    }


def test_comment(world: World) -> None:
    value = {
        "from": {"id": COMMENTER, "username": "maria_s"},
        "media": {"id": "18000000000000001", "media_product_type": "FEED"},
        "id": "17850000000000002",
        "text": "And in size M? 👗",
        "parent_id": "17850000000000001",
    }
    event = InstagramEvent(
        EventKind.COMMENT, ACCOUNT, COMMENTER, "17850000000000002", TS, value, "comments"
    )
    asked = len(world.graph_requests)
    assert body(world, event) == {
        "channel": {
            "messageId": "17850000000000002",
            "time": "2026-01-01T10:00:00.000Z",
            "from": {"id": COMMENTER, "idType": "Opaque", "nickname": "maria_s"},
            "metadata": {
                "customAttributes": {
                    "Source": "Instagram_Comment",
                    "EventType": "comment",
                    "InstagramUserId": COMMENTER,
                    "InstagramAccountId": ACCOUNT,
                    "InstagramUsername": "maria_s",
                    "ProfileUrl": "https://www.instagram.com/maria_s",
                    "CommentId": "17850000000000002",
                    "ParentCommentId": "17850000000000001",
                    "MediaId": "18000000000000001",
                    "MediaProductType": "FEED",
                }
            },
        },
        "text": "And in size M? 👗",
    }
    # A commenter's id is not a messaging IGSID: the profile API is not asked.
    assert len(world.graph_requests) == asked


# -- the customer's text is never altered ---------------------------------------------------

EXACT_TEXTS = [
    "Thanks!! 😍👨‍👩‍👧‍👦🇧🇷👍🏾 ❤️‍🔥",
    "مرحبا، 你好, नमस्ते, Привет — где мой заказ?",
    "Cafe\u0301 vs Caf\u00e9",  # decomposed and composed: never normalised
    "  two leading spaces, a tab\tand lines\r\nkept  \n",
    '\u200bzero width, 🏳️‍🌈, 𝕦𝕟𝕚𝕔𝕠𝕕𝕖 & <b>not html</b> "quotes" \\ backslash',
]


@pytest.mark.parametrize("text", EXACT_TEXTS)
def test_text_is_byte_exact_in_the_json_body(world: World, text: str) -> None:
    result = run(world, dm({"mid": "mid.exact", "text": text}))
    assert isinstance(result, InboundMessage)
    assert result.text == text
    raw = json.dumps(result.body(), ensure_ascii=False).encode("utf-8")
    encoded_text = json.dumps(text, ensure_ascii=False).encode("utf-8")
    assert encoded_text in raw
    assert json.loads(raw)["text"].encode("utf-8") == text.encode("utf-8")


# -- media and shares -----------------------------------------------------------------------


def test_declared_type_is_corrected_by_the_check(world: World) -> None:
    url = world.cdn_url("2")  # declared image, the CDN says video
    got = body(world, dm({"mid": "m", "attachments": [attachment("image", url)]}))
    assert got["content"][0]["attachment"] == {
        "mediaType": "Video",
        "url": url,
        "mime": "video/mp4",
    }
    assert attrs(got)["EventType"] == "image"


def test_audio_and_a_file_with_a_name(world: World) -> None:
    audio = body(world, dm({"mid": "a", "attachments": [attachment("audio", world.cdn_url("3"))]}))
    assert audio["content"][0]["attachment"]["mediaType"] == "Audio"
    assert audio["content"][0]["attachment"]["mime"] == "audio/mp4"
    url = f"{world.cdn}/files/invoice%2042.pdf"
    got = body(world, dm({"mid": "f", "attachments": [attachment("file", url)]}))
    assert got["content"][0]["attachment"] == {
        "mediaType": "File",
        "url": url,
        "mime": "application/pdf",
        "filename": "invoice 42.pdf",
    }
    assert attrs(got)["EventType"] == "file"


def test_carousel_keeps_every_attachment_in_order(world: World) -> None:
    urls = [world.cdn_url(a) for a in ("4", "1", "5")]
    got = body(world, dm({"mid": "c", "attachments": [attachment("image", u) for u in urls]}))
    shown = [(c["attachment"]["url"], c["attachment"]["mime"]) for c in got["content"]]
    assert shown == [(urls[0], "image/png"), (urls[1], "image/jpeg"), (urls[2], "image/gif")]


def test_unchecked_media_uses_the_declared_type_and_still_goes_through(world: World) -> None:
    before = len(world.cdn_requests)
    elsewhere = "https://cdn.example.net/clip?sig=1"
    got = body(
        world, dm({"mid": "u", "text": "see", "attachments": [attachment("video", elsewhere)]})
    )
    # Genesys requires a MIME type: the guess for the declared type stands in.
    assert got["content"][0]["attachment"] == {
        "mediaType": "Video",
        "url": elsewhere,
        "mime": "video/mp4",
    }
    expired = world.cdn_url("13")
    gone = body(world, dm({"mid": "x", "attachments": [attachment("image", expired)]}))
    assert gone["content"][0]["attachment"] == {
        "mediaType": "Image",
        "url": expired,
        "mime": "image/jpeg",
    }
    assert len(world.cdn_requests) - before == 2  # the expired one: HEAD, then ranged GET


@pytest.mark.parametrize(
    ("kind", "url_of", "extra", "media", "caption"),
    [
        ("share", "1", {}, ("Link", "text/html"), "Shared a post"),
        ("ig_reel", "2", {"title": "Unboxing"}, ("Video", "video/mp4"), "Shared a reel: Unboxing"),
        ("reel", "/reel/C1a2b3/", {}, ("Link", "text/html"), "Shared a reel"),
        (
            "ig_post",
            "/p/C9x/",
            {"title": "Summer ☀️"},
            ("Link", "text/html"),
            "Shared a post: Summer ☀️",
        ),
        ("template", "/p/C9x/", {"title": "Card"}, ("Link", "text/html"), "Shared a card: Card"),
        ("fallback", "https://example.com/a", {}, ("Link", "text/html"), "Shared a link"),
    ],
)
def test_shares_become_captioned_links(
    world: World,
    kind: str,
    url_of: str,
    extra: dict[str, str],
    media: tuple[str, str],
    caption: str,
) -> None:
    if url_of.startswith("https://"):
        url = url_of
    elif url_of.startswith("/"):
        url = world.cdn + url_of
    else:
        url = world.cdn_url(url_of)
    got = body(world, dm({"mid": "s", "attachments": [attachment(kind, url, **extra)]}))
    [content] = got["content"]
    shown = content["attachment"]
    assert (shown["mediaType"], shown["mime"]) == media
    assert (shown["url"], shown["text"]) == (url, caption)
    assert "text" not in got
    assert attrs(got)["Source"] == "Instagram_DM"
    assert attrs(got)["EventType"] == kind


def test_shared_post_attributes(world: World) -> None:
    share = attachment(
        "ig_post", "https://www.instagram.com/p/C9x/", title="T", ig_post_media_id="18012"
    )
    got = attrs(body(world, dm({"mid": "p", "attachments": [share]})))
    assert (got["PostTitle"], got["PostMediaId"]) == ("T", "18012")


def test_expired_story_mention_passes_through_as_a_link(world: World) -> None:
    url = world.cdn_url("13")
    event = dm({"mid": "sm", "text": "look!", "attachments": [attachment("story_mention", url)]})
    got = body(world, event)
    assert got["text"] == "Mentioned you in their story\nlook!"
    assert got["content"] == [
        {
            "attachment": {
                "mediaType": "Link",
                "url": url,
                "mime": "text/html",
                "text": "Story mention",
            }
        }
    ]
    assert attrs(got)["StoryUrl"] == url


def test_story_reply_on_an_expired_story(world: World) -> None:
    url = world.cdn_url("13")
    event = dm({"mid": "sr", "text": "🔥", "reply_to": {"story": {"url": url, "id": "179"}}})
    got = body(world, event)
    assert got["text"] == "🔥"
    assert got["content"][0]["attachment"] == {
        "mediaType": "Link",
        "url": url,
        "mime": "text/html",
        "text": "Reply to your story",
    }


# -- notes for what has no text of its own --------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"mid": "u1", "is_unsupported": True},
        {"mid": "u2", "attachments": [{"type": "unsupported_type", "payload": {}}]},
    ],
)
def test_unsupported_content_tells_the_agent_to_check_instagram(
    world: World, message: dict[str, Any]
) -> None:
    got = body(world, dm(message))
    assert got["text"] == UNSUPPORTED_NOTE
    assert "Instagram app" in got["text"]
    assert (attrs(got)["Source"], attrs(got)["EventType"]) == ("Instagram_DM", "unsupported")
    assert "content" not in got


def test_reactions(world: World) -> None:
    react = {"mid": "mid.biz.1", "action": "react", "reaction": "love", "emoji": "❤️"}
    got = body(world, messaging(EventKind.REACTION, "r1", "reaction", react))
    assert got["text"] == "Reacted ❤️ to a message"
    assert {
        k: attrs(got)[k] for k in ("EventType", "Reaction", "ReactionAction", "ReactedMessageId")
    } == {
        "EventType": "reaction",
        "Reaction": "love",
        "ReactionAction": "react",
        "ReactedMessageId": "mid.biz.1",
    }
    no_emoji = {"mid": "mid.biz.1", "action": "react", "reaction": "wow"}
    assert body(world, messaging(EventKind.REACTION, "r2", "reaction", no_emoji))["text"] == (
        "Reacted wow to a message"
    )
    removed = {"mid": "mid.biz.1", "action": "unreact", "reaction": "love", "emoji": "❤️"}
    got = body(world, messaging(EventKind.REACTION, "r3", "reaction", removed))
    assert got["text"] == "Removed the reaction ❤️"
    assert attrs(got)["ReactionAction"] == "unreact"


def test_postback_without_a_known_origin_shows_the_button_title(world: World) -> None:
    # A button the relay did not label (an ice breaker, say): the tap arrives as text.
    postback = {"mid": "mid.pb.1", "title": "Talk to an agent", "payload": "AGENT"}
    got = body(world, messaging(EventKind.POSTBACK, "mid.pb.1", "postback", postback))
    assert got["text"] == "Talk to an agent"
    assert (attrs(got)["PostbackPayload"], attrs(got)["PostbackTitle"]) == (
        "AGENT",
        "Talk to an agent",
    )
    assert attrs(got)["EventType"] == "postback"
    assert "content" not in got


def test_quick_reply_without_a_known_origin_keeps_the_text_and_the_payload(
    world: World,
) -> None:
    event = dm({"mid": "q", "text": "Track my order 📦", "quick_reply": {"payload": "TRACK"}})
    got = body(world, event)
    assert got["text"] == "Track my order 📦"
    assert (attrs(got)["EventType"], attrs(got)["QuickReplyPayload"]) == ("quick_reply", "TRACK")
    assert "content" not in got


def test_reply_to_a_message(world: World) -> None:
    event = dm({"mid": "rt", "text": "Yes, that one", "reply_to": {"mid": "mid.earlier"}})
    got = body(world, event)
    assert (got["text"], attrs(got)["ReplyToMessageId"]) == ("Yes, that one", "mid.earlier")
    assert attrs(got)["EventType"] == "text"


def test_standalone_referrals_are_notes(world: World) -> None:
    ad = {"ref": "summer", "ad_id": "2385", "source": "ADS", "type": "OPEN_THREAD"}
    got = body(world, messaging(EventKind.REFERRAL, "ref1", "referral", ad))
    assert got["text"] == "Started the conversation from an ad (ad id 2385)"
    assert {k: v for k, v in attrs(got).items() if k.startswith("Referral")} == {
        "ReferralSource": "ADS",
        "ReferralType": "OPEN_THREAD",
        "ReferralRef": "summer",
        "ReferralAdId": "2385",
    }
    link = {"ref": "support_page", "source": "IGME_LINK", "type": "OPEN_THREAD"}
    got = body(world, messaging(EventKind.REFERRAL, "ref2", "referral", link))
    assert got["text"] == "Started the conversation from an ig.me link (ref support_page)"
    assert attrs(got)["EventType"] == "referral"


def test_a_referral_inside_a_message_only_adds_attributes(world: World) -> None:
    referral = {"ref": "summer", "ad_id": "2385", "source": "ADS", "type": "OPEN_THREAD"}
    got = body(world, dm({"mid": "wr", "text": "Still on sale?", "referral": referral}))
    assert got == {
        "channel": channel(
            "wr",
            "Instagram_DM",
            "text",
            ReferralSource="ADS",
            ReferralType="OPEN_THREAD",
            ReferralRef="summer",
            ReferralAdId="2385",
        ),
        "text": "Still on sale?",
    }


# -- mentions -------------------------------------------------------------------------------


def mention(comment_id: str) -> InstagramEvent:
    value = {"media_id": "18000000000000099", "comment_id": comment_id}
    return InstagramEvent(
        EventKind.MENTION,
        ACCOUNT,
        "ig-mention-18000000000000099",
        f"mention:{comment_id}",
        TS,
        value,
        "mentions",
    )


def test_mention_shows_the_mentioning_comment(world: World) -> None:
    got = body(world, mention(MENTIONED))
    shown, how_to_answer = got["text"].split("\n")
    assert shown == "Mentioned you in a comment: @ourbrand is the best 🔥"
    # A mention has no DM thread: the agent is told to answer publicly on Instagram.
    assert "cannot be answered by direct message" in how_to_answer
    assert "publicly" in how_to_answer
    assert got["channel"]["from"] == {
        "id": "ig-mention-18000000000000099",
        "idType": "Opaque",
        "nickname": "fan_1",
    }
    assert {k: attrs(got)[k] for k in ("Source", "EventType", "CommentId", "MediaId")} == {
        "Source": "Instagram_Mention",
        "EventType": "mention",
        "CommentId": MENTIONED,
        "MediaId": "18000000000000099",
    }
    assert attrs(got)["ProfileUrl"] == "https://www.instagram.com/fan_1"


def test_mention_is_still_delivered_when_the_lookup_fails(world: World) -> None:
    got = body(world, mention("17850000000000404"))
    assert "17850000000000404" in got["text"]
    assert "18000000000000099" in got["text"]
    assert got["text"].startswith("Mentioned you in a comment")
    assert "nickname" not in got["channel"]["from"]
    assert attrs(got)["Source"] == "Instagram_Mention"


# -- what is not forwarded, and the edges ---------------------------------------------------


def test_echo_seen_and_empty_are_not_forwarded(world: World) -> None:
    echo_item = {"mid": "mid.echo", "text": "our reply", "is_echo": True}
    echo = InstagramEvent(EventKind.ECHO, ACCOUNT, CUSTOMER, "mid.echo", TS, {"message": echo_item})
    seen = messaging(EventKind.SEEN, "mid.x#seen", "read", {"mid": "mid.x"})
    assert run(world, echo) == NotForwarded("echo")
    assert run(world, seen) == NotForwarded("seen")
    assert run(world, dm({"mid": "empty", "reply_to": {"mid": "mid.y"}})) == NotForwarded("empty")
    assert run(world, dm({"mid": "blank", "text": ""})) == NotForwarded("empty")


def test_unknown_customer_still_delivered_without_a_profile(world: World) -> None:
    got = body(world, dm({"mid": "nobody", "text": "hello"}, customer=STRANGER))
    assert got["channel"]["from"] == {"id": STRANGER, "idType": "Opaque"}
    assert attrs(got) == {
        "Source": "Instagram_DM",
        "EventType": "text",
        "InstagramUserId": STRANGER,
        "InstagramAccountId": ACCOUNT,
    }


def test_attribute_values_are_bounded_strings_but_text_is_whole(world: World) -> None:
    long_payload = "P" * 5000
    long_title = "🙂" * 3000
    postback = {"mid": "mid.pb.long", "title": long_title, "payload": long_payload}
    got = body(world, messaging(EventKind.POSTBACK, "mid.pb.long", "postback", postback))
    assert attrs(got)["PostbackPayload"] == "P" * 1000
    assert attrs(got)["PostbackTitle"] == "🙂" * 1000
    assert all(isinstance(v, str) and len(v) <= 1000 for v in attrs(got).values())
    text = "x" * 5000
    assert body(world, dm({"mid": "long", "text": text}))["text"] == text


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (1767261600000, "2026-01-01T10:00:00.000Z"),
        (1767261600007, "2026-01-01T10:00:00.007Z"),
        (1767225599999, "2025-12-31T23:59:59.999Z"),
        (0, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_format_time(ms: int, expected: str) -> None:
    assert format_time(ms) == expected


def test_channel_time_is_metas_timestamp(world: World) -> None:
    item = {
        "sender": {"id": CUSTOMER},
        "timestamp": 1767261600123,
        "message": {"mid": "t", "text": "a"},
    }
    event = InstagramEvent(EventKind.MESSAGE, ACCOUNT, CUSTOMER, "t", 1767261600123, item)
    assert body(world, event)["channel"]["time"] == "2026-01-01T10:00:00.123Z"
