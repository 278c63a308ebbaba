"""Parsing every Instagram webhook shape into events (fixtures in tests/fixtures/instagram)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igbridge.relay.meta.events import (
    Attachment,
    Comment,
    EventKind,
    InstagramEvent,
    Mention,
    Message,
    Postback,
    QuickReply,
    Reaction,
    Referral,
    ReplyTo,
    Story,
    Unsend,
    parse_webhook,
)
from igbridge.relay.pipeline.window import CLOCK_SKEW_MS
from tests.fixtures_loader import ACCOUNT_ID, CUSTOMER, fixture_names, load_fixture_json

T = 1767261600000
K = EventKind
# fixture → [(kind, customer, dedupe key, timestamp ms)] and skipped reasons
EXPECTED: dict[str, tuple[list[tuple[EventKind, str, str, int]], list[str]]] = {
    "text": (
        [
            (
                K.MESSAGE,
                CUSTOMER,
                "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1OTk1MjI0Nzc0OTE2NTc1MzozMTY4MzkyMzUxMjM0NTY3ODkw",
                T,
            )
        ],
        [],
    ),
    "text_emoji": ([(K.MESSAGE, CUSTOMER, "mid.emoji.1", T)], []),
    "text_non_latin": ([(K.MESSAGE, CUSTOMER, "mid.nonlatin.1", T)], []),
    "text_escaped": ([(K.MESSAGE, CUSTOMER, "mid.escaped.1", T)], []),
    "image": ([(K.MESSAGE, CUSTOMER, "mid.image.1", T)], []),
    "sticker": ([(K.MESSAGE, CUSTOMER, "mid.sticker.1", T)], []),
    "video": ([(K.MESSAGE, CUSTOMER, "mid.video.1", T)], []),
    "audio": ([(K.MESSAGE, CUSTOMER, "mid.audio.1", T)], []),
    "file": ([(K.MESSAGE, CUSTOMER, "mid.file.1", T)], []),
    "share": ([(K.MESSAGE, CUSTOMER, "mid.share.1", T)], []),
    "ig_reel": ([(K.MESSAGE, CUSTOMER, "mid.igreel.1", T)], []),
    "reel": ([(K.MESSAGE, CUSTOMER, "mid.reel.1", T)], []),
    "ig_post": ([(K.MESSAGE, CUSTOMER, "mid.igpost.1", T)], []),
    "template": ([(K.MESSAGE, CUSTOMER, "mid.template.1", T)], []),
    "fallback": ([(K.MESSAGE, CUSTOMER, "mid.fallback.1", T)], []),
    "unsupported_type": ([(K.MESSAGE, CUSTOMER, "mid.unsupportedtype.1", T)], []),
    "carousel": ([(K.MESSAGE, CUSTOMER, "mid.carousel.1", T)], []),
    "story_mention": ([(K.MESSAGE, CUSTOMER, "mid.storymention.1", T)], []),
    "story_reply": ([(K.MESSAGE, CUSTOMER, "mid.storyreply.1", T)], []),
    "reply_to_message": ([(K.MESSAGE, CUSTOMER, "mid.replyto.1", T)], []),
    "quick_reply": ([(K.MESSAGE, CUSTOMER, "mid.quickreply.1", T)], []),
    "quick_reply_no_origin": ([(K.MESSAGE, CUSTOMER, "mid.quickreply.2", T)], []),
    "postback": ([(K.POSTBACK, CUSTOMER, "mid.postback.1", T)], []),
    "postback_no_origin": ([(K.POSTBACK, CUSTOMER, "mid.postback.2", T)], []),
    "reaction": (
        [(K.REACTION, CUSTOMER, f"mid.business.reply.1#reaction:react:love:{T}", T)],
        [],
    ),
    "unreaction": (
        [(K.REACTION, CUSTOMER, f"mid.business.reply.1#reaction:unreact::{T}", T)],
        [],
    ),
    "seen": ([(K.SEEN, CUSTOMER, f"mid.business.reply.1#seen:{CUSTOMER}", T)], []),
    "referral_ad": ([(K.REFERRAL, CUSTOMER, f"referral:{CUSTOMER}:{T}", T)], []),
    "referral_link": ([(K.REFERRAL, CUSTOMER, f"referral:{CUSTOMER}:{T}", T)], []),
    "message_with_referral": ([(K.MESSAGE, CUSTOMER, "mid.withreferral.1", T)], []),
    "echo": ([(K.ECHO, CUSTOMER, "mid.echo.1", T)], []),
    "unsend": ([(K.UNSEND, CUSTOMER, "mid.text.deleted.1#unsend", T)], []),
    "is_unsupported": ([(K.MESSAGE, CUSTOMER, "mid.isunsupported.1", T)], []),
    "comment": ([(K.COMMENT, "6915500000000003", "17850000000000001", T)], []),
    "comment_reply": (
        [(K.COMMENT, "6915500000000003", "17850000000000002", T + 60_000)],
        [],
    ),
    "own_comment": ([], ["own_comment"]),
    "live_comment": ([(K.COMMENT, "6915500000000004", "17850000000000004", T + 180_000)], []),
    "mention": (
        [(K.MENTION, "ig-mention-18000000000000099", "mention:17850000000000099", T + 240_000)],
        [],
    ),
    "dashboard_test_messages": ([(K.MESSAGE, "12334", "random_mid", 1527459824000)], []),
    "dashboard_test_comments": ([(K.COMMENT, "232323232", "17865799348089039", T)], []),
    "batch": (
        [
            (K.MESSAGE, CUSTOMER, "mid.batch.3", T + 3000),
            (K.MESSAGE, "6915500000000002", "mid.batch.b1", T + 1000),
            (K.MESSAGE, CUSTOMER, "mid.batch.1", T + 1000),
            (K.MESSAGE, CUSTOMER, "mid.batch.2", T + 2000),
            (K.COMMENT, "6915500000000003", "17850000000000005", T),
        ],
        [],
    ),
    "unknown_field": ([(K.MESSAGE, CUSTOMER, "mid.known.1", T)], ["unknown_field"]),
    "message_edit": ([(K.EDIT, CUSTOMER, "mid.text.edited.1#edit:1", T)], []),
    # A thread another app controls: not this channel's conversation (by default).
    "standby": ([], ["standby"]),
    "handover_take": (
        [(K.HANDOVER, CUSTOMER, f"handover:take_thread_control:{CUSTOMER}:{T}", T)],
        [],
    ),
    "handover_pass": (
        [(K.HANDOVER, CUSTOMER, f"handover:pass_thread_control:{CUSTOMER}:{T}", T)],
        [],
    ),
    "handover_request": (
        [(K.HANDOVER, CUSTOMER, f"handover:request_thread_control:{CUSTOMER}:{T}", T)],
        [],
    ),
    # Another account's entry (a message and a comment) is skipped item by item; ours stays.
    "other_account": (
        [(K.MESSAGE, CUSTOMER, "mid.ours.1", T + 1000)],
        ["other_account", "other_account"],
    ),
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == fixture_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_expected_events(name: str) -> None:
    result = parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID)
    events, skipped = EXPECTED[name]
    got = [(e.kind, e.customer_id, e.dedupe_key, e.timestamp_ms) for e in result.events]
    assert got == events
    assert [s.reason for s in result.skipped] == skipped
    for event in result.events:
        restored = InstagramEvent.from_json(event.to_json())
        assert restored == event
        assert restored.body == event.body


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("text_emoji", "Thanks!! 😍👨‍👩‍👧‍👦🇧🇷👍🏾 ❤️‍🔥"),
        ("text_non_latin", "مرحبا، 你好, नमस्ते, Привет — где мой заказ?"),
        ("text_escaped", "Café 😀 ❤️ 你好"),
    ],
)
def test_text_is_byte_exact(name: str, text: str) -> None:
    (event,) = parse_webhook(load_fixture_json(name)).events
    assert isinstance(event.body, Message)
    assert event.data["message"]["text"].encode("utf-8") == text.encode("utf-8")
    assert (event.body.text or "").encode("utf-8") == text.encode("utf-8")
    restored = InstagramEvent.from_json(event.to_json())
    assert restored.data["message"]["text"] == text
    assert isinstance(restored.body, Message)
    assert restored.body.text == text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1, 2], "not_instagram"),
        ("text", "not_instagram"),
        ({"object": "page", "entry": []}, "not_instagram"),
        ({"object": "instagram", "entry": {"id": "1"}}, "malformed_item"),
        ({"object": "instagram", "entry": ["x"]}, "malformed_item"),
        ({"object": "instagram", "entry": [{"id": "1", "messaging": ["x"]}]}, "malformed_item"),
        (
            {
                "object": "instagram",
                "entry": [{"id": "1", "messaging": [{"message": {"mid": "m"}}]}],
            },
            "malformed_item",
        ),
        (
            {"object": "instagram", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}}]}]},
            "malformed_item",
        ),
        (
            {"object": "instagram", "entry": [{"id": "1", "changes": [{"value": {}}]}]},
            "malformed_item",
        ),
    ],
)
def test_malformed_bodies_are_skipped_not_raised(body: Any, reason: str) -> None:
    result = parse_webhook(body)
    assert result.events == []
    assert [s.reason for s in result.skipped] == [reason]


def test_a_bad_item_does_not_lose_the_rest_of_the_batch() -> None:
    body = load_fixture_json("batch")
    body["entry"][0]["messaging"].insert(1, {"sender": {"id": "9"}, "message": {"text": "no mid"}})
    result = parse_webhook(body)
    assert len(result.events) == 5
    assert [s.reason for s in result.skipped] == ["malformed_item"]


def test_lone_surrogate_is_skipped_with_a_reason() -> None:
    raw = '{"object":"instagram","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},'
    raw += '"timestamp":1,"message":{"mid":"m1","text":"broken \\ud83d"}}]}]}'
    result = parse_webhook(json.loads(raw))
    assert result.events == []
    assert [s.reason for s in result.skipped] == ["invalid_unicode"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "object",
                    "entry",
                    "id",
                    "time",
                    "messaging",
                    "changes",
                    "sender",
                    "recipient",
                    "message",
                    "mid",
                    "text",
                    "timestamp",
                    "field",
                    "value",
                    "from",
                    "reaction",
                    "postback",
                    "read",
                    "referral",
                    "is_echo",
                    "is_deleted",
                    "attachments",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(json_values, max_size=3))
def test_parse_never_raises_and_events_round_trip(entries: list[Any]) -> None:
    result = parse_webhook({"object": "instagram", "entry": entries})
    for event in result.events:
        restored = InstagramEvent.from_json(event.to_json())
        assert restored == event
        assert restored.body == event.body


# -- typed bodies -----------------------------------------------------------------------------


def body_of(name: str) -> object:
    (event,) = parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID).events
    return event.body


CDN = "https://lookaside.fbsbx.com/ig_messaging_cdn/"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (
            "story_reply",
            Message(
                mid="mid.storyreply.1",
                text="Where can I buy this? 😍",
                attachments=(),
                reply_to=ReplyTo(
                    mid=None,
                    story=Story(
                        id="17900000000000013", url=f"{CDN}?asset_id=1000013&signature=AbQx1-sig"
                    ),
                ),
                quick_reply=None,
                is_unsupported=False,
                referral=None,
            ),
        ),
        (
            "ig_post",
            Message(
                mid="mid.igpost.1",
                text=None,
                attachments=(
                    Attachment(
                        type="ig_post",
                        url="https://www.instagram.com/p/C9xYz12AbCd/",
                        title="Summer collection is here ☀️",
                        story_id=None,
                        post_media_id="18012345678901234",
                    ),
                ),
                reply_to=None,
                quick_reply=None,
                is_unsupported=False,
                referral=None,
            ),
        ),
        (
            "quick_reply",
            Message(
                mid="mid.quickreply.1",
                text="Track order",
                attachments=(),
                reply_to=None,
                quick_reply=QuickReply(payload="igb1:5b7c0d04a1f24e6b9c3d4e5f60718293:TRACK"),
                is_unsupported=False,
                referral=None,
            ),
        ),
        (
            "message_with_referral",
            Message(
                mid="mid.withreferral.1",
                text="Is this still on sale?",
                attachments=(),
                reply_to=None,
                quick_reply=None,
                is_unsupported=False,
                referral=Referral(
                    source="ADS", type="OPEN_THREAD", ref="summer_sale", ad_id="23850000000000001"
                ),
            ),
        ),
        (
            "postback",
            Postback(
                mid="mid.postback.1",
                title="More like this",
                payload="igb1:5b7c0d07a1f24e6b9c3d4e5f60718293:MORE_SNEAKERS",
            ),
        ),
        (
            "postback_no_origin",
            Postback(mid="mid.postback.2", title="Talk to an agent", payload="AGENT"),
        ),
        (
            "reaction",
            Reaction(mid="mid.business.reply.1", action="react", reaction="love", emoji="❤️"),
        ),
        (
            "referral_link",
            Referral(source="IGME_LINK", type="OPEN_THREAD", ref="support_page", ad_id=None),
        ),
        ("unsend", Unsend(mid="mid.text.deleted.1")),
        (
            "live_comment",
            Comment(
                id="17850000000000004",
                text="Love this live!",
                from_id="6915500000000004",
                from_username="liveviewer",
                parent_id=None,
                media_id="18000000000000001",
                media_product_type="FEED",
                live=True,
            ),
        ),
        ("mention", Mention(comment_id="17850000000000099", media_id="18000000000000099")),
    ],
)
def test_fixture_body_is_typed(name: str, body: object) -> None:
    assert body_of(name) == body


def one_message(message: dict[str, Any]) -> Message:
    item = {"sender": {"id": "2"}, "timestamp": 1, "message": {"mid": "m", **message}}
    (event,) = parse_webhook(
        {"object": "instagram", "entry": [{"id": "1", "messaging": [item]}]}
    ).events
    assert isinstance(event.body, Message)
    return event.body


def test_odd_message_fields_are_tolerated_not_fatal() -> None:
    message = one_message(
        {
            "text": 42,  # not text: no text
            "attachments": [
                "not an object",
                {"type": "image", "payload": {"url": 7, "title": {"x": 1}}},
                {"payload": "not an object"},
                {"type": "ig_post", "payload": {"title": 2024, "ig_post_media_id": 180}},
            ],
            "reply_to": "not an object",
            "quick_reply": ["not an object"],
            "referral": "not an object",
        }
    )
    assert message.text is None
    assert message.attachments == (
        Attachment("image", None, None, None, None),
        Attachment("", None, None, None, None),
        Attachment("ig_post", None, "2024", None, "180"),
    )
    assert (message.reply_to, message.quick_reply, message.referral) == (None, None, None)
    # One attachment Meta did not wrap in a list is still that attachment.
    assert one_message({"attachments": {"type": "image"}}).attachments == (
        Attachment("image", None, None, None, None),
    )


def test_scalar_fields_read_as_text() -> None:
    message = one_message(
        {
            "reply_to": {"mid": 17, "story": {"id": 179, "url": "https://x/s"}},
            "quick_reply": {"payload": True},
            "is_unsupported": 1,
        }
    )
    assert message.reply_to == ReplyTo(mid="17", story=Story(id="179", url="https://x/s"))
    assert message.quick_reply == QuickReply(payload="true")
    assert message.is_unsupported is True
    assert one_message({"quick_reply": {"payload": ""}}).quick_reply == QuickReply(None)
    story = one_message({"attachments": [{"type": "story_mention", "payload": {"story_id": 9}}]})
    assert story.attachments[0].story_id == "9"


def test_a_referral_beside_the_message_tags_it() -> None:
    item = {
        "sender": {"id": "2"},
        "timestamp": 1,
        "message": {"mid": "m", "text": "hi"},
        "referral": {"ref": "r", "source": "ADS"},
    }
    (event,) = parse_webhook(
        {"object": "instagram", "entry": [{"id": "1", "messaging": [item]}]}
    ).events
    assert isinstance(event.body, Message)
    assert event.body.referral == Referral(source="ADS", type=None, ref="r", ad_id=None)


# -- jobs stored by earlier versions ----------------------------------------------------------

# Exactly what the store holds for queued jobs today: kind, ids, time, Meta's item as
# sent, and the changes field. A relay upgraded with a full queue must deliver them.
STORED_MESSAGE = (
    b'{"kind":"message","account_id":"17841400000000001","customer_id":"6915500000000001",'
    b'"dedupe_key":"mid.sm.1","timestamp_ms":1767261600000,"data":{"sender":{"id":'
    b'"6915500000000001"},"recipient":{"id":"17841400000000001"},"timestamp":1767261600000,'
    b'"message":{"mid":"mid.sm.1","text":"look \\ud83d\\ude0d","attachments":[{"type":'
    b'"story_mention","payload":{"url":"https://lookaside.fbsbx.com/s?asset_id=1"}}]}},'
    b'"field":null}'
)
STORED_COMMENT = (
    '{"kind":"comment","account_id":"17841400000000001","customer_id":"6915500000000003",'
    '"dedupe_key":"17850000000000002","timestamp_ms":1767261660000,"data":{"from":{"id":'
    '"6915500000000003","username":"maria_s"},"media":{"id":"18000000000000001",'
    '"media_product_type":"FEED"},"id":"17850000000000002","text":"And in size M? 👗",'
    '"parent_id":"17850000000000001"},"field":"comments"}'
).encode()
STORED_MENTION = (
    b'{"kind":"mention","account_id":"17841400000000001","customer_id":'
    b'"ig-mention-18000000000000099","dedupe_key":"mention:17850000000000099",'
    b'"timestamp_ms":1767261840000,"data":{"media_id":"18000000000000099","comment_id":'
    b'"17850000000000099"},"field":"mentions"}'
)


def test_a_job_stored_in_todays_format_decodes_to_the_typed_event() -> None:
    message = InstagramEvent.from_json(STORED_MESSAGE)
    assert (message.kind, message.customer_id, message.dedupe_key, message.timestamp_ms) == (
        EventKind.MESSAGE,
        "6915500000000001",
        "mid.sm.1",
        1767261600000,
    )
    assert message.body == Message(
        mid="mid.sm.1",
        text="look 😍",
        attachments=(
            Attachment(
                type="story_mention",
                url="https://lookaside.fbsbx.com/s?asset_id=1",
                title=None,
                story_id=None,
                post_media_id=None,
            ),
        ),
        reply_to=None,
        quick_reply=None,
        is_unsupported=False,
        referral=None,
    )
    comment = InstagramEvent.from_json(STORED_COMMENT)
    assert comment.body == Comment(
        id="17850000000000002",
        text="And in size M? 👗",
        from_id="6915500000000003",
        from_username="maria_s",
        parent_id="17850000000000001",
        media_id="18000000000000001",
        media_product_type="FEED",
        live=False,
    )
    mention = InstagramEvent.from_json(STORED_MENTION)
    assert mention.body == Mention(comment_id="17850000000000099", media_id="18000000000000099")


def test_jobs_are_still_stored_in_todays_format() -> None:
    # Replicas of the previous version share the queue during a rolling upgrade.
    for raw in (STORED_COMMENT, STORED_MENTION):
        assert InstagramEvent.from_json(raw).to_json() == raw
    restored = InstagramEvent.from_json(STORED_MESSAGE)
    assert json.loads(restored.to_json()) == json.loads(STORED_MESSAGE)


def test_a_stored_job_parses_to_the_same_event_as_the_webhook() -> None:
    for name in ("story_reply", "comment", "mention", "postback", "unsend"):
        (event,) = parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID).events
        assert InstagramEvent.from_json(event.to_json()).body == event.body


def test_a_stored_job_whose_data_is_not_an_object_does_not_decode() -> None:
    raw = STORED_MENTION.replace(
        b'{"media_id":"18000000000000099","comment_id":"17850000000000099"}', b"[]"
    )
    with pytest.raises(TypeError):
        InstagramEvent.from_json(raw)


def test_a_missing_timestamp_falls_back_to_the_entry_time() -> None:
    item = {
        "sender": {"id": CUSTOMER},
        "recipient": {"id": ACCOUNT_ID},
        "message": {"mid": "m-no-time", "text": "hi"},
    }
    body = {
        "object": "instagram",
        "entry": [{"id": ACCOUNT_ID, "time": 1700000000, "messaging": [item]}],
    }
    (event,) = parse_webhook(body).events
    assert event.timestamp_ms == 1700000000 * 1000


# -- hostile input: refused with a reason, never passed on to a handler ------------------
NOW = T + 3600 * 1000  # an hour after the fixtures' time
DAY = 86_400_000


def dm(mid: str, ts: Any = T, **message: Any) -> dict[str, Any]:
    return {
        "sender": {"id": CUSTOMER},
        "recipient": {"id": ACCOUNT_ID},
        "timestamp": ts,
        "message": {"mid": mid, "text": "hi", **message},
    }


def batch(*items: dict[str, Any], entry_id: str = ACCOUNT_ID, time: Any = T) -> dict[str, Any]:
    return {"object": "instagram", "entry": [{"id": entry_id, "time": time, "messaging": [*items]}]}


def outcome(body: Any, horizon_ms: int | None = None) -> tuple[list[str], list[str]]:
    """The mids kept and the reasons skipped, parsed at NOW."""
    result = parse_webhook(body, ACCOUNT_ID, now_ms=lambda: NOW, horizon_ms=horizon_ms)
    return [e.dedupe_key for e in result.events], [s.reason for s in result.skipped]


@pytest.mark.parametrize("attachments", [3, 0, True, False, "image", 2.5])
def test_attachments_of_the_wrong_type_are_skipped_and_the_batch_goes_on(attachments: Any) -> None:
    body = batch(dm("m.bad", attachments=attachments), dm("m.good"))
    assert outcome(body) == (["m.good"], ["malformed_item"])
    (skipped,) = parse_webhook(body, ACCOUNT_ID, now_ms=lambda: NOW).skipped
    assert "attachments" in skipped.detail


@pytest.mark.parametrize(
    "message",
    [
        {"attachments": [{"type": "image", "payload": {"url": "https://[::1"}}]},
        {"attachments": [{"type": "file", "payload": {"url": "https://cdn.example:99999/f"}}]},
        {"reply_to": {"story": {"id": "1", "url": "http://[x/story"}}},
    ],
)
def test_an_unparsable_media_url_is_skipped_with_its_reason(message: dict[str, Any]) -> None:
    assert outcome(batch(dm("m.bad", **message), dm("m.good"))) == (["m.good"], ["invalid_url"])


@pytest.mark.parametrize(
    "ts",
    [
        253_402_300_800_000,  # 10000-01-01T00:00:00Z
        2**53,
        10**30,
        -1,
        -T,
        0,
        1.5,
        T + 0.5,
        True,
        "soon",
        "-5",
        "2026-01-01T10:00:00",  # no zone
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        [T],
        {"ms": T},
    ],
)
def test_an_impossible_timestamp_is_skipped_with_its_reason(ts: Any) -> None:
    assert outcome(batch(dm("m.bad", ts=ts), dm("m.good"))) == (["m.good"], ["invalid_timestamp"])


@pytest.mark.parametrize("ts", [T, float(T), str(T), T // 1000, "2026-01-01T10:00:00Z"])
def test_meta_s_timestamp_forms_are_read(ts: Any) -> None:
    (event,) = parse_webhook(batch(dm("m", ts=ts)), ACCOUNT_ID, now_ms=lambda: NOW).events
    assert event.timestamp_ms == T


def test_an_impossible_entry_time_skips_the_entry_s_items() -> None:
    body = batch(dm("m1"), dm("m2"), time="yesterday")
    assert outcome(body) == ([], ["invalid_timestamp", "invalid_timestamp"])


def test_a_lone_surrogate_entry_id_is_skipped_as_invalid_unicode() -> None:
    raw = json.dumps(batch(dm("m1"), dm("m2"), entry_id="ENTRY")).replace("ENTRY", "\\ud800")
    body = json.loads(raw)
    body["entry"].append(batch(dm("m.good"))["entry"][0])
    result = parse_webhook(body, ACCOUNT_ID, now_ms=lambda: NOW)
    assert [e.dedupe_key for e in result.events] == ["m.good"]
    assert [s.reason for s in result.skipped] == ["invalid_unicode", "invalid_unicode"]
    for skipped in result.skipped:
        skipped.detail.encode("utf-8")  # the log line can be written


def test_a_skip_detail_quoting_a_lone_surrogate_can_be_logged() -> None:
    body = batch(entry_id="other")
    body["entry"][0]["changes"] = [{"field": "\ud83d", "value": {}}]
    body["entry"][0]["id"] = ACCOUNT_ID
    (skipped,) = parse_webhook(body, ACCOUNT_ID).skipped
    assert skipped.reason == "unknown_field"
    skipped.detail.encode("utf-8")


def test_events_older_than_the_dedupe_horizon_are_stale() -> None:
    horizon = 6 * DAY  # as given up to 6 days (7 less the day a time may run ahead)
    old = dm("m.old", ts=NOW - horizon - 1)
    edge = dm("m.edge", ts=NOW - horizon)
    assert outcome(batch(old, edge), horizon) == (["m.edge"], ["stale"])
    # Off (a relay told so, or a caller that passes none): kept.
    assert outcome(batch(old, edge), None) == (["m.old", "m.edge"], [])
    assert outcome(batch(old, edge), 0) == (["m.old", "m.edge"], [])


def test_a_stale_comment_and_mention_are_refused_by_their_times() -> None:
    value = {"id": "c1", "text": "hi", "from": {"id": CUSTOMER}, "timestamp": NOW - 8 * DAY}
    comments = {"field": "comments", "value": value}
    mention = {"field": "mentions", "value": {"comment_id": "c2", "media_id": "m2"}}
    body = {
        "object": "instagram",
        "entry": [{"id": ACCOUNT_ID, "time": NOW - 8 * DAY, "changes": [comments, mention]}],
    }
    assert outcome(body, 7 * DAY) == ([], ["stale", "stale"])


def test_the_app_dashboard_s_test_events_are_never_stale() -> None:
    # Meta's "Test" button sends fixed sample events from 2018.
    kept, skipped = outcome(load_fixture_json("dashboard_test_messages"), 7 * DAY)
    assert (kept, skipped) == (["random_mid"], [])


def test_a_future_time_is_clamped_but_its_replay_is_still_a_duplicate() -> None:
    year = DAY // 2  # ahead, but within the day allowed (further is refused)
    reaction = {
        "sender": {"id": CUSTOMER},
        "recipient": {"id": ACCOUNT_ID},
        "timestamp": NOW + year,
        "reaction": {"mid": "m1", "action": "react", "reaction": "love"},
    }
    body = batch(dm("m.future", ts=NOW + year), reaction)
    first = parse_webhook(body, ACCOUNT_ID, now_ms=lambda: NOW, horizon_ms=7 * DAY).events
    assert [e.timestamp_ms for e in first] == [NOW + CLOCK_SKEW_MS] * 2
    # Replayed days later: the same dedupe keys (they carry the time as sent).
    later = NOW + 5 * DAY
    again = parse_webhook(body, ACCOUNT_ID, now_ms=lambda: later, horizon_ms=7 * DAY).events
    assert [e.dedupe_key for e in again] == [e.dedupe_key for e in first]
