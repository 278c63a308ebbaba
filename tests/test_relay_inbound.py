"""Every Instagram event shape through a real relay into the Genesys simulator, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from igbridge.sandbox.stack import Sandbox, run_relay, run_sandbox
from tests.fixtures_loader import CUSTOMER, fixture_names, load_fixture

CDN_PREFIX = "https://lookaside.fbsbx.com/ig_messaging_cdn/"
MEDIA = {
    "1000001": "image/jpeg",
    "1000002": "image/webp",
    "1000003": "video/mp4",
    "1000004": "audio/mp4",
    "1000005": "application/pdf",
    "1000006": "image/jpeg",
    "1000007": "video/mp4",
    "1000010": "image/jpeg",
    "1000011": "image/png",
    "1000012": "video/mp4",
}
EXPIRED = {"1000013"}  # a story older than 24 h: its URL no longer loads

DM = "Instagram_DM"
# Answers to the relay's quick replies and buttons go to Genesys as structured responses
# naming the agent message that offered them (the *_no_origin ones arrive as text).
STRUCTURED = {
    "quick_reply": ("QuickReply", "TRACK", "5b7c0d04a1f24e6b9c3d4e5f60718293"),
    "postback": ("Button", "MORE_SNEAKERS", "5b7c0d07a1f24e6b9c3d4e5f60718293"),
}
UNSUPPORTED = "The customer sent something Instagram does not pass on"
# fixture → [(messageId, Source, EventType, text start (None: no text), [(mediaType, mime)])]
Expected = list[tuple[str, str, str, str | None, list[tuple[str, str | None]]]]
EXPECTED: dict[str, Expected] = {
    "text": [
        (
            "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1OTk1MjI0Nzc0OTE2NTc1MzozMTY4MzkyMzUxMjM0NTY3ODkw",
            DM,
            "text",
            "Hi, I need help with my order #4512",
            [],
        )
    ],
    "text_emoji": [("mid.emoji.1", DM, "text", "Thanks!! 😍👨‍👩‍👧‍👦🇧🇷👍🏾 ❤️‍🔥", [])],
    "text_non_latin": [
        ("mid.nonlatin.1", DM, "text", "مرحبا، 你好, नमस्ते, Привет — где мой заказ?", [])
    ],
    "text_escaped": [("mid.escaped.1", DM, "text", "Café 😀 ❤️ 你好", [])],
    "image": [("mid.image.1", DM, "image", None, [("Image", "image/jpeg")])],
    "sticker": [("mid.sticker.1", DM, "image", None, [("Image", "image/webp")])],
    "video": [("mid.video.1", DM, "video", None, [("Video", "video/mp4")])],
    "audio": [("mid.audio.1", DM, "audio", None, [("Audio", "audio/mp4")])],
    "file": [("mid.file.1", DM, "file", None, [("File", "application/pdf")])],
    "share": [("mid.share.1", DM, "share", None, [("Link", "text/html")])],
    "ig_reel": [("mid.igreel.1", DM, "ig_reel", None, [("Video", "video/mp4")])],
    "reel": [("mid.reel.1", DM, "reel", None, [("Link", "text/html")])],
    "ig_post": [("mid.igpost.1", DM, "ig_post", None, [("Link", "text/html")])],
    "template": [("mid.template.1", DM, "template", None, [("Link", "text/html")])],
    "fallback": [("mid.fallback.1", DM, "fallback", None, [("Link", "text/html")])],
    "unsupported_type": [("mid.unsupportedtype.1", DM, "unsupported", UNSUPPORTED, [])],
    "carousel": [
        ("mid.carousel.1", DM, "image", None, [("Image", "image/jpeg"), ("Image", "image/png")])
    ],
    "story_mention": [
        (
            "mid.storymention.1",
            "Instagram_StoryMention",
            "story_mention",
            "Mentioned you in their story",
            [("Video", "video/mp4")],
        )
    ],
    "story_reply": [
        (
            "mid.storyreply.1",
            "Instagram_StoryReply",
            "story_reply",
            "Where can I buy this? 😍",
            [("Link", "text/html")],
        )
    ],
    "reply_to_message": [("mid.replyto.1", DM, "text", "Yes, that one", [])],
    "quick_reply": [("mid.quickreply.1", DM, "quick_reply", None, [])],
    "quick_reply_no_origin": [("mid.quickreply.2", DM, "quick_reply", "Track my order", [])],
    "postback": [("mid.postback.1", DM, "postback", None, [])],
    "postback_no_origin": [("mid.postback.2", DM, "postback", "Talk to an agent", [])],
    "reaction": [
        (
            "mid.business.reply.1#reaction:react:love:1767261600000",
            DM,
            "reaction",
            "Reacted ❤️ to a message",
            [],
        )
    ],
    "unreaction": [
        (
            "mid.business.reply.1#reaction:unreact::1767261600000",
            DM,
            "reaction",
            "Removed the reaction",
            [],
        )
    ],
    "seen": [],
    "referral_ad": [
        (
            f"referral:{CUSTOMER}:1767261600000",
            DM,
            "referral",
            "Started the conversation from an ad (ad id 23850000000000001)",
            [],
        )
    ],
    "referral_link": [
        (
            f"referral:{CUSTOMER}:1767261600000",
            DM,
            "referral",
            "Started the conversation from an ig.me link (ref support_page)",
            [],
        )
    ],
    "message_with_referral": [("mid.withreferral.1", DM, "text", "Is this still on sale?", [])],
    "echo": [],
    "unsend": [("mid.text.deleted.1#unsend", DM, "unsend", "🗑️ The customer unsent a message", [])],
    "is_unsupported": [("mid.isunsupported.1", DM, "unsupported", UNSUPPORTED, [])],
    "comment": [
        ("17850000000000001", "Instagram_Comment", "comment", "Does this come in blue? 💙", [])
    ],
    "comment_reply": [("17850000000000002", "Instagram_Comment", "comment", "And in size M?", [])],
    "own_comment": [],
    "live_comment": [("17850000000000004", "Instagram_Comment", "comment", "Love this live!", [])],
    "mention": [
        (
            "mention:17850000000000099",
            "Instagram_Mention",
            "mention",
            "Mentioned you in a comment: @ourbrand is the best",
            [],
        )
    ],
    "dashboard_test_messages": [("random_mid", DM, "text", "random_text", [])],
    "dashboard_test_comments": [
        ("17865799348089039", "Instagram_Comment", "comment", "This is an example.", [])
    ],
    "batch": [
        ("mid.batch.1", DM, "text", "first", []),
        ("mid.batch.b1", DM, "text", "other customer", []),
        ("mid.batch.2", DM, "text", "second", []),
        ("mid.batch.3", DM, "text", "third", []),
        ("17850000000000005", "Instagram_Comment", "comment", "comment in a batch", []),
    ],
    "unknown_field": [("mid.known.1", DM, "text", "still delivered", [])],
    "message_edit": [
        (
            "mid.text.edited.1#edit:1",
            DM,
            "edit",
            "✏️ The customer edited a message (id mid.text.edited.1, edit 1). "
            "New text: Actually I need size M, not L 🙏",
            [],
        )
    ],
    # A thread another app controls is not this channel's conversation.
    "standby": [],
    "handover_take": [
        (
            f"handover:take_thread_control:{CUSTOMER}:1767261600000",
            DM,
            "handover",
            "🔀 Another app (app 1217981644879628) took control of this conversation; replies "
            "from here will be refused until it passes control back.",
            [],
        )
    ],
    "handover_pass": [
        (
            f"handover:pass_thread_control:{CUSTOMER}:1767261600000",
            DM,
            "handover",
            "🔀 This conversation was passed to this channel",
            [],
        )
    ],
    "handover_request": [
        (
            f"handover:request_thread_control:{CUSTOMER}:1767261600000",
            DM,
            "handover",
            "🔀 Another app (app 1217981644879628) asks for control",
            [],
        )
    ],
    # Another brand's message and comment never reach this channel; this account's does.
    "other_account": [("mid.ours.1", DM, "text", "Message for us", [])],
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with run_sandbox(tmp_path_factory.mktemp("sandbox")) as sb:
        for asset, mime in MEDIA.items():
            sb.meta.add_media(asset, mime)
        for asset in EXPIRED:
            sb.meta.add_media(asset, "image/jpeg", expired=True)
        sb.meta.add_user(CUSTOMER, "ana.customer", name="Ana Lima", follower_count=1520)
        sb.meta.add_mention("17850000000000099", "@ourbrand is the best", "fan_account")
        yield sb


def test_every_fixture_is_covered() -> None:
    assert sorted(EXPECTED) == fixture_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_reaches_genesys(name: str, live: Sandbox, tmp_path: Path) -> None:
    raw = load_fixture(name).replace(
        CDN_PREFIX.encode(), f"{live.cdn.url}/ig_messaging_cdn/x".encode()
    )
    # Fixture files with a file name in the path keep it after the rewrite.
    raw = raw.replace(b"/ig_messaging_cdn/xinvoice", b"/ig_messaging_cdn/invoice")
    expected = EXPECTED[name]
    before = len(live.genesys.snapshot())
    with run_relay(live.relay_env(tmp_path / "relay.db")) as relay:
        resp = live.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", raw)
        assert resp.status_code == 200, resp.text
        got = live.genesys.wait_for_messages(before + len(expected))[before:]
        if not expected:  # give a wrongly forwarded event the chance to show up
            live.genesys.wait_for(lambda: len(live.genesys.messages) > before, timeout=0.5)
            got = live.genesys.snapshot()[before:]
    # Customers are delivered in parallel; each customer's messages in Meta's time order.
    assert sorted(m.message_id for m in got) == sorted(e[0] for e in expected)
    position = {e[0]: i for i, e in enumerate(expected)}
    by_customer: dict[str, list[int]] = {}
    for m in got:
        by_customer.setdefault(m.body["channel"]["from"]["id"], []).append(position[m.message_id])
    assert all(seq == sorted(seq) for seq in by_customer.values())
    got.sort(key=lambda m: position[m.message_id])
    for msg, (_, source, event_type, text, media) in zip(got, expected, strict=True):
        attrs = msg.attributes
        assert attrs["Source"] == source
        assert attrs["EventType"] == event_type
        if text is None:
            assert msg.text is None
        else:
            assert msg.text is not None
            assert msg.text.startswith(text)
        content = msg.body.get("content") or []
        answer = msg.body.get("buttonResponse")
        if name in STRUCTURED:
            kind, payload, origin = STRUCTURED[name]
            assert answer is not None
            assert (answer["type"], answer["payload"]) == (kind, payload)
            assert msg.body["originatingMessageId"] == origin
        else:
            assert answer is None
        assert msg.endpoint == ("structured/response" if name in STRUCTURED else "message")
        assert [(c["attachment"]["mediaType"], c["attachment"].get("mime")) for c in content] == (
            media
        )
        assert msg.content_type == "application/json; charset=utf-8"
        assert msg.body["channel"]["from"]["idType"] == "Opaque"


def test_dm_carries_profile_and_routing_attributes(live: Sandbox, tmp_path: Path) -> None:
    before = len(live.genesys.snapshot())
    with run_relay(live.relay_env(tmp_path / "relay.db")) as relay:
        live.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", load_fixture("text_emoji"))
        msg = live.genesys.wait_for_messages(before + 1)[before]
    channel = msg.body["channel"]
    assert channel["from"] == {
        "id": CUSTOMER,
        "idType": "Opaque",
        "nickname": "ana.customer",
        "firstName": "Ana",
        "lastName": "Lima",
    }
    assert channel["time"] == "2026-01-01T10:00:00.000Z"
    assert msg.attributes["ProfileUrl"] == "https://www.instagram.com/ana.customer"
    assert msg.attributes["FollowerCount"] == "1520"
    # The emoji's own UTF-8 bytes travel in the request body: never "???", never \u escapes.
    assert "Thanks!! 😍👨‍👩‍👧‍👦🇧🇷👍🏾 ❤️‍🔥".encode() in msg.raw


def test_media_is_checked_without_downloading_it(live: Sandbox) -> None:
    image = live.meta.media["1000001"]
    assert image.requests, "the image URL was never checked"
    assert all(method in ("HEAD", "GET") for method, _ in image.requests)
    assert image.bytes_served <= 1


def test_comment_author_profile_link(live: Sandbox, tmp_path: Path) -> None:
    before = len(live.genesys.snapshot())
    with run_relay(live.relay_env(tmp_path / "relay.db")) as relay:
        live.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", load_fixture("comment"))
        msg = live.genesys.wait_for_messages(before + 1)[before]
    assert msg.attributes["ProfileUrl"] == "https://www.instagram.com/maria_s"
    assert msg.attributes["CommentId"] == "17850000000000001"
    assert msg.attributes["MediaId"] == "18000000000000001"
    assert msg.body["channel"]["from"]["nickname"] == "maria_s"
