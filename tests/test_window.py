"""Every 24-hour decision, as named cases: the route before sending, the second look
after Meta refuses a reply as outside its window, and whether a typing indicator may go."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from igbridge.relay.pipeline.window import (
    CLOCK_SKEW_MS,
    HOUR_MS,
    CommentOrigin,
    Decision,
    Route,
    after_window_refusal,
    clamp_event_ms,
    decide,
    typing_allowed,
)

NOW = 10_000 * HOUR_MS
DAY_H = 24.0
FRESH_COMMENT = CommentOrigin("17850000000000777", NOW - HOUR_MS)
ANSWERED_COMMENT = CommentOrigin("17850000000000777", NOW - HOUR_MS, private_replied=True)
OLD_COMMENT = CommentOrigin("17850000000000778", NOW - 8 * 24 * HOUR_MS)
WRITE_AGAIN = " The customer must write again first."


def ago(hours: float | None) -> int | None:
    return None if hours is None else NOW - int(hours * HOUR_MS)


@dataclass(frozen=True, slots=True)
class DecideCase:
    name: str
    last_h: float | None  # the customer's last direct message, hours ago; None: never
    expected: Decision
    human: bool = True
    tag_allowed: bool = True
    comment: CommentOrigin | None = None
    public: bool = False


def expired(age: str, why: str) -> Decision:
    return Decision(
        Route.EXPIRED,
        f"Not delivered: the customer's last message was {age} ago; Instagram allows "
        f"replies within 24 hours, and {why}." + WRITE_AGAIN,
    )


NEVER_WROTE = Decision(
    Route.EXPIRED,
    "Not delivered: this customer has not sent a direct message that Instagram allows "
    "a reply to (a comment gets one private reply). Wait for the customer to write.",
)

DECIDE_CASES = [
    DecideCase("a_minute_ago", 1 / 60, Decision(Route.NORMAL)),
    DecideCase("just_inside_24_hours", 23.99, Decision(Route.NORMAL)),
    DecideCase("exactly_24_hours", DAY_H, Decision(Route.NORMAL)),
    DecideCase("25_hours_human_with_the_tag", 25, Decision(Route.TAGGED)),
    DecideCase("exactly_7_days_human_with_the_tag", 7 * DAY_H, Decision(Route.TAGGED)),
    DecideCase(
        "25_hours_tag_turned_off",
        25,
        expired("25.0 hours", "human agent replies after 24 hours are turned off for this channel"),
        tag_allowed=False,
    ),
    DecideCase(
        "25_hours_bot",
        25,
        expired(
            "25.0 hours",
            "only a human agent may reply after 24 hours, and this reply came from a bot",
        ),
        human=False,
    ),
    DecideCase(
        "3_days_bot",
        72,
        expired(
            "3.0 days",
            "only a human agent may reply after 24 hours, and this reply came from a bot",
        ),
        human=False,
    ),
    DecideCase(
        "8_days",
        8 * DAY_H,
        expired(
            "8.0 days",
            "more than 7 days have passed, so not even a human agent reply is allowed",
        ),
    ),
    DecideCase("never_wrote", None, NEVER_WROTE),
    DecideCase(
        "comment_gets_a_private_reply", None, Decision(Route.PRIVATE_REPLY), comment=FRESH_COMMENT
    ),
    DecideCase(
        "comment_private_reply_also_for_a_bot",
        None,
        Decision(Route.PRIVATE_REPLY),
        human=False,
        comment=FRESH_COMMENT,
    ),
    DecideCase(
        "comment_newer_than_the_last_dm",
        30,
        Decision(Route.PRIVATE_REPLY),
        comment=FRESH_COMMENT,
    ),
    DecideCase("comment_already_answered_privately", None, NEVER_WROTE, comment=ANSWERED_COMMENT),
    DecideCase(
        "comment_answered_then_the_customer_wrote_a_dm",
        1 / 60,
        Decision(Route.NORMAL),
        comment=ANSWERED_COMMENT,
    ),
    DecideCase("comment_older_than_7_days", None, NEVER_WROTE, comment=OLD_COMMENT),
    DecideCase(
        "comment_answered_publicly_when_configured",
        None,
        Decision(Route.PUBLIC_REPLY),
        comment=FRESH_COMMENT,
        public=True,
    ),
    DecideCase(
        "public_replies_even_after_a_private_one",
        None,
        Decision(Route.PUBLIC_REPLY),
        comment=ANSWERED_COMMENT,
        public=True,
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in DECIDE_CASES])
def test_decide(case: DecideCase) -> None:
    decision = decide(
        NOW,
        ago(case.last_h),
        human=case.human,
        tag_allowed=case.tag_allowed,
        comment=case.comment,
        public_comment_replies=case.public,
    )
    assert decision == case.expected


@dataclass(frozen=True, slots=True)
class RefusalCase:
    name: str
    route: Route | None  # the route Meta refused
    last_h: float | None
    expected: Decision
    human: bool = True
    tag_allowed: bool = True


CLOSED = Decision(
    Route.EXPIRED,
    "Not delivered: Instagram says the 24-hour reply window has closed and the human agent "
    "tag does not apply." + WRITE_AGAIN,
)

REFUSAL_CASES = [
    RefusalCase("meta_disagrees_inside_24_hours", Route.NORMAL, 23.99, Decision(Route.TAGGED)),
    RefusalCase(
        "meta_disagrees_at_exactly_7_days", Route.NORMAL, 7 * DAY_H, Decision(Route.TAGGED)
    ),
    RefusalCase("the_tag_itself_was_refused", Route.TAGGED, 30, CLOSED),
    RefusalCase("a_bot_gets_no_tag", Route.NORMAL, 1, CLOSED, human=False),
    RefusalCase("the_tag_is_turned_off", Route.NORMAL, 1, CLOSED, tag_allowed=False),
    RefusalCase("past_7_days", Route.NORMAL, 7 * DAY_H + 0.01, CLOSED),
    RefusalCase("no_customer_message_known", Route.NORMAL, None, CLOSED),
    RefusalCase("a_private_reply_is_not_retagged", Route.PRIVATE_REPLY, None, CLOSED),
    RefusalCase("a_public_reply_is_not_retagged", Route.PUBLIC_REPLY, 1, CLOSED),
    RefusalCase(
        "no_route_chosen",
        None,
        1,
        Decision(
            Route.EXPIRED,
            "Not delivered: Instagram says the 24-hour reply window has closed." + WRITE_AGAIN,
        ),
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in REFUSAL_CASES])
def test_after_window_refusal(case: RefusalCase) -> None:
    decision = after_window_refusal(
        NOW, ago(case.last_h), route=case.route, human=case.human, tag_allowed=case.tag_allowed
    )
    assert decision == case.expected


@pytest.mark.parametrize(
    ("last_h", "allowed"),
    [
        pytest.param(1 / 60, True, id="a_minute_ago"),
        pytest.param(DAY_H, True, id="exactly_24_hours"),
        pytest.param(DAY_H + 1 / 3600, False, id="just_past_24_hours"),
        pytest.param(3 * DAY_H, False, id="inside_the_tag_days_still_no_typing"),
        pytest.param(None, False, id="never_wrote"),
    ],
)
def test_typing_allowed(last_h: float | None, allowed: bool) -> None:
    assert typing_allowed(NOW, ago(last_h)) is allowed


# -- times from the future -------------------------------------------------------------
YEAR_MS = 365 * 24 * HOUR_MS


def test_a_time_past_the_allowed_skew_counts_as_now_plus_the_skew() -> None:
    assert clamp_event_ms(NOW + YEAR_MS, NOW) == NOW + CLOCK_SKEW_MS
    assert clamp_event_ms(NOW + CLOCK_SKEW_MS - 1, NOW) == NOW + CLOCK_SKEW_MS - 1
    assert clamp_event_ms(NOW - HOUR_MS, NOW) == NOW - HOUR_MS


def test_a_message_stamped_a_year_ahead_opens_the_window_for_24_hours_not_a_year() -> None:
    stored = clamp_event_ms(NOW + YEAR_MS, NOW)  # as parse_webhook stores it
    assert decide(NOW + 23 * HOUR_MS, stored, human=True, tag_allowed=True).route is Route.NORMAL
    later = decide(NOW + 25 * HOUR_MS, stored, human=True, tag_allowed=True)
    assert later.route is Route.TAGGED
    bot = decide(NOW + 25 * HOUR_MS, stored, human=False, tag_allowed=True)
    assert bot.route is Route.EXPIRED
    month = decide(NOW + 30 * 24 * HOUR_MS, stored, human=True, tag_allowed=True)
    assert month.route is Route.EXPIRED
    assert not typing_allowed(NOW + 25 * HOUR_MS, stored)


def test_a_comment_stamped_a_year_ahead_gets_its_private_reply_for_7_days_not_a_year() -> None:
    comment = CommentOrigin("17850000000000779", clamp_event_ms(NOW + YEAR_MS, NOW))
    soon = decide(NOW + HOUR_MS, None, human=True, tag_allowed=True, comment=comment)
    assert soon.route is Route.PRIVATE_REPLY
    late = decide(NOW + 8 * 24 * HOUR_MS, None, human=True, tag_allowed=True, comment=comment)
    assert late.route is Route.EXPIRED
