"""build(): every Instagram fixture → the Genesys message, with fixed facts and no I/O.

Each fixture's expected messages are in tests/fixtures/instagram/expected/<name>.json,
one entry per parsed event: the Genesys body, or why nothing is forwarded. gather() is
tested against in-memory lookups: which lookups an event causes, and that the facts it
collects make the same messages.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from igbridge.relay.genesys.payloads import CustomerMessage, InboundMessage
from igbridge.relay.meta.events import EventKind, InstagramEvent, Mention, parse_webhook
from igbridge.relay.meta.graph import MentionedComment, Profile
from igbridge.relay.meta.media import MediaInfo
from igbridge.relay.pipeline.inbound import (
    Facts,
    InboundContext,
    NotForwarded,
    build,
    gather,
    media_checks,
    translate,
)
from tests.fixtures_loader import ACCOUNT_ID, CUSTOMER, FIXTURES, fixture_names, load_fixture_json

EXPECTED = FIXTURES / "expected"
CDN = "https://lookaside.fbsbx.com/ig_messaging_cdn/"

# -- the fixed facts: what the lookups would have found -------------------------------------

ANA = Profile(
    igsid=CUSTOMER,
    username="ana.customer",
    name="Ana Lima",
    profile_pic="https://scontent.cdninstagram.com/v/t51/ana.jpg",
    follower_count=1520,
    is_user_follow_business=True,
    is_business_follow_user=False,
    is_verified_user=False,
)
# Only Ana has a profile: the other senders have not consented (or are commenters).
PROFILES = {CUSTOMER: ANA}


def _asset(asset_id: int) -> str:
    return f"{CDN}?asset_id={asset_id}&signature=AbQx1-sig"


def _verified(mime: str) -> MediaInfo:
    return MediaInfo(mime, True, "verified")


# Every URL a fixture's message is checked for, and what the check found.
MEDIA: dict[str, MediaInfo] = {
    _asset(1000001): _verified("image/jpeg"),  # image
    _asset(1000002): _verified("image/webp"),  # sticker (sent as an image)
    _asset(1000003): _verified("video/mp4"),  # video
    _asset(1000004): _verified("audio/mp4"),  # audio
    f"{CDN}invoice-4512.pdf?asset_id=1000005&signature=x": _verified("application/pdf"),
    f"{CDN}?asset_id=1000007&signature=x": _verified("video/mp4"),  # ig_reel: playable
    "https://www.instagram.com/reel/C1a2b3c4d5e/": MediaInfo(None, False, "unusable_type"),
    _asset(1000010): _verified("image/jpeg"),  # carousel
    _asset(1000011): _verified("image/png"),  # carousel
    _asset(1000012): _verified("video/mp4"),  # story mention
    _asset(1000013): MediaInfo(None, False, "http_403"),  # story reply: the story expired
}
MENTIONED = {
    "17850000000000099": MentionedComment(
        id="17850000000000099", text="@ourbrand is the best 🔥", username="fan_account"
    )
}


def facts_for(event: InstagramEvent) -> Facts:
    body = event.body
    return Facts(
        profile=PROFILES.get(event.customer_id),
        media=MEDIA,
        mentioned=MENTIONED.get(body.comment_id) if isinstance(body, Mention) else None,
    )


def row(event: InstagramEvent, result: CustomerMessage | NotForwarded) -> dict[str, Any]:
    if isinstance(result, NotForwarded):
        return {"event": event.dedupe_key, "not_forwarded": result.reason}
    return {"event": event.dedupe_key, "genesys": result.body()}


def body(result: CustomerMessage | NotForwarded) -> dict[str, Any]:
    assert isinstance(result, InboundMessage), result
    found: dict[str, Any] = result.body()
    return found


def expected(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((EXPECTED / f"{name}.json").read_text("utf-8"))
    return rows


def events(name: str) -> list[InstagramEvent]:
    return parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID).events


def test_every_fixture_has_an_expected_result() -> None:
    assert sorted(p.stem for p in EXPECTED.glob("*.json")) == fixture_names()


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_builds_the_expected_message(name: str) -> None:
    got = [row(event, build(event, facts_for(event))) for event in events(name)]
    assert got == expected(name)


@pytest.mark.parametrize("name", fixture_names())
def test_the_facts_cover_every_url_the_message_goes_by(name: str) -> None:
    for event in events(name):
        assert all(url in MEDIA for url, _ in media_checks(event.body))


# -- gather: the lookups, against in-memory stand-ins ---------------------------------------


@dataclass
class Lookups:
    """Answers from the fixed facts, and a record of what was asked."""

    crm: dict[str, str] = field(default_factory=dict)
    asked: list[tuple[str, ...]] = field(default_factory=list)

    async def probe(self, url: str, declared_type: str) -> MediaInfo:
        self.asked.append(("probe", url, declared_type))
        return MEDIA.get(url, MediaInfo(None, False, "not_allowed"))

    async def get_profile(self, igsid: str) -> Profile | None:
        self.asked.append(("profile", igsid))
        return PROFILES.get(igsid)

    async def get_mentioned_comment(
        self, account_id: str, comment_id: str
    ) -> MentionedComment | None:
        self.asked.append(("mention", account_id, comment_id))
        return MENTIONED.get(comment_id)

    async def lookup(self, igsid: str, username: str | None) -> dict[str, str]:
        self.asked.append(("crm", igsid, username or ""))
        return self.crm

    def context(self, *, with_crm: bool = False) -> InboundContext:
        return InboundContext(self, self, self, ACCOUNT_ID, crm=self if with_crm else None)


def run_gather(event: InstagramEvent, lookups: Lookups, *, with_crm: bool = False) -> Facts:
    return asyncio.run(gather(event, lookups.context(with_crm=with_crm)))


@pytest.mark.parametrize("name", fixture_names())
def test_gathered_facts_build_the_expected_message(name: str) -> None:
    lookups = Lookups()
    ctx = lookups.context()
    got = [row(event, asyncio.run(translate(event, ctx))) for event in events(name)]
    assert got == expected(name)


@pytest.mark.parametrize(
    ("name", "asked"),
    [
        ("text", [("profile", CUSTOMER)]),
        ("image", [("profile", CUSTOMER), ("probe", _asset(1000001), "image")]),
        ("story_reply", [("profile", CUSTOMER), ("probe", _asset(1000013), "story_mention")]),
        (
            "story_mention",
            [("profile", CUSTOMER), ("probe", _asset(1000012), "story_mention")],
        ),
        (
            "ig_reel",
            [("profile", CUSTOMER), ("probe", f"{CDN}?asset_id=1000007&signature=x", "ig_reel")],
        ),
        # Posts, cards, links and shares stay links: nothing to check.
        ("share", [("profile", CUSTOMER)]),
        ("ig_post", [("profile", CUSTOMER)]),
        ("fallback", [("profile", CUSTOMER)]),
        ("unsupported_type", [("profile", CUSTOMER)]),
        ("postback", [("profile", CUSTOMER)]),
        ("reaction", [("profile", CUSTOMER)]),
        ("referral_ad", [("profile", CUSTOMER)]),
        ("unsend", [("profile", CUSTOMER)]),
        # A commenter's id is not a messaging IGSID: no profile lookup.
        ("comment", []),
        ("mention", [("mention", ACCOUNT_ID, "17850000000000099")]),
        ("echo", []),
        ("seen", []),
    ],
)
def test_what_gather_looks_up(name: str, asked: list[tuple[str, ...]]) -> None:
    (event,) = events(name)
    lookups = Lookups()
    run_gather(event, lookups)
    assert lookups.asked == asked


def dm(message: dict[str, Any]) -> InstagramEvent:
    item = {"sender": {"id": CUSTOMER}, "timestamp": 1767261600000, "message": message}
    return InstagramEvent(EventKind.MESSAGE, ACCOUNT_ID, CUSTOMER, message["mid"], 1, item)


def test_a_url_sent_twice_is_checked_once() -> None:
    url = _asset(1000001)
    twice = [{"type": "image", "payload": {"url": url}}] * 2
    lookups = Lookups()
    facts = run_gather(dm({"mid": "m", "attachments": twice}), lookups)
    assert [a for a in lookups.asked if a[0] == "probe"] == [("probe", url, "image")]
    assert facts.media == {url: MEDIA[url]}


def test_an_unsupported_attachment_is_not_checked_even_with_a_url() -> None:
    att = {"type": "unsupported_type", "payload": {"url": _asset(1000001)}}
    lookups = Lookups()
    run_gather(dm({"mid": "m", "attachments": [att]}), lookups)
    assert lookups.asked == [("profile", CUSTOMER)]


def test_crm_is_asked_by_the_username_shown_and_only_for_forwarded_messages() -> None:
    lookups = Lookups(crm={"Tier": "gold", "Source": "crm"})
    (comment,) = events("comment")
    facts = run_gather(comment, lookups, with_crm=True)
    assert lookups.asked == [("crm", "6915500000000003", "maria_s")]
    attrs = body(build(comment, facts))["channel"]["metadata"]["customAttributes"]
    # CRM fields are added; the relay's own (Source) are never overwritten.
    assert (attrs["Tier"], attrs["Source"]) == ("gold", "Instagram_Comment")

    lookups = Lookups(crm={"Tier": "gold"})
    (echo,) = events("echo")
    assert run_gather(echo, lookups, with_crm=True).crm == {}
    empty = dm({"mid": "empty", "reply_to": {"mid": "earlier"}})
    assert run_gather(empty, lookups, with_crm=True).crm == {}
    assert lookups.asked == [("profile", CUSTOMER)]  # the empty message's profile only


# -- build: media types from what was (or was not) checked ----------------------------------


def attachment(result: CustomerMessage | NotForwarded) -> dict[str, Any]:
    (content,) = body(result)["content"]
    shown: dict[str, Any] = content["attachment"]
    return shown


@pytest.mark.parametrize(
    ("declared", "info", "shown"),
    [
        # The CDN's verified type wins over the webhook's.
        ("image", _verified("video/mp4"), {"mediaType": "Video", "mime": "video/mp4"}),
        ("file", _verified("image/png"), {"mediaType": "Image", "mime": "image/png"}),
        # Unchecked or unverified: the declared type, with the MIME type guessed from it
        # (Genesys requires one).
        ("video", MediaInfo(None, False, "timeout"), {"mediaType": "Video", "mime": "video/mp4"}),
        (
            "audio",
            MediaInfo(None, False, "not_allowed"),
            {"mediaType": "Audio", "mime": "audio/mp4"},
        ),
        ("image", None, {"mediaType": "Image", "mime": "image/jpeg"}),
        ("file", None, {"mediaType": "File", "mime": "application/octet-stream"}),
    ],
)
def test_media_type_from_the_check_or_the_declared_type(
    declared: str, info: MediaInfo | None, shown: dict[str, str]
) -> None:
    url = "https://cdn.example/x"
    event = dm({"mid": "m", "attachments": [{"type": declared, "payload": {"url": url}}]})
    media = {url: info} if info is not None else {}
    assert attachment(build(event, Facts(media=media))) == {"url": url, **shown}


@pytest.mark.parametrize(
    ("info", "shown"),
    [
        (_verified("image/jpeg"), {"mediaType": "Image", "mime": "image/jpeg"}),
        # Not a picture or a video, or not checked: the agent gets a link (a page to open).
        (_verified("application/pdf"), {"mediaType": "Link", "mime": "text/html"}),
        (MediaInfo(None, False, "http_403"), {"mediaType": "Link", "mime": "text/html"}),
        (None, {"mediaType": "Link", "mime": "text/html"}),
    ],
)
def test_a_story_is_shown_as_what_it_is_only_when_checked_as_visual(
    info: MediaInfo | None, shown: dict[str, str]
) -> None:
    url = "https://cdn.example/story"
    event = dm({"mid": "s", "attachments": [{"type": "story_mention", "payload": {"url": url}}]})
    media = {url: info} if info is not None else {}
    got = attachment(build(event, Facts(media=media)))
    assert got == {"url": url, "text": "Story mention", **shown}
