"""Instagram's refusals and the relay's own → what the agent's receipt says, or a retry.

Named cases, as data: each is a Send API failure (kind, Graph error, Retry-After) in a
context (route, parts already sent, attempts) and exactly what the delivery must do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from igbridge.relay.meta.graph import GraphError
from igbridge.relay.meta.send import SendError, SendErrorKind
from igbridge.relay.pipeline.receipts import (
    LOOP_HELD,
    PUBLIC_REPLY_NOT_TEXT,
    TOKEN_PROBLEM,
    Failed,
    Refusal,
    RetryLater,
    SendContext,
    SwitchRoute,
    after_send_error,
    dead_lettered,
    refused,
    window_closed,
)
from igbridge.relay.pipeline.window import HOUR_MS, Decision, Route

NOW = 10_000 * HOUR_MS
BACKOFF = 1.5
WINDOW_CLOSED = (
    "Not delivered: Instagram says the 24-hour reply window has closed and the human agent "
    "tag does not apply. The customer must write again first."
)
TOKEN_MESSAGE = (
    "Not delivered: Instagram refused the access token (code 190): replace "
    "IGBRIDGE_META_ACCESS_TOKEN; no reply can be sent until then."
)
THROTTLE_TEXT = "Calls to this api have exceeded the rate limit."
GONE_TEXT = "No matching user found"

# An agent's reply an hour after the customer wrote, first attempt, nothing sent yet.
BASE = SendContext(
    route=Route.NORMAL,
    sent=0,
    attempts=0,
    max_attempts=8,
    backoff_seconds=BACKOFF,
    now_ms=NOW,
    last_customer_ms=NOW - HOUR_MS,
    human=True,
    tag_allowed=True,
)


def error(
    kind: SendErrorKind,
    *,
    status: int = 400,
    code: int | None = None,
    subcode: int | None = None,
    message: str = "",
    retry_after: float | None = None,
) -> SendError:
    return SendError(kind, GraphError(status, code, subcode, message), retry_after)


WINDOW = error(
    SendErrorKind.WINDOW,
    code=10,
    subcode=2534022,
    message="(#10) This message is sent outside of allowed window.",
)
TOKEN = error(SendErrorKind.TOKEN, status=401, code=190, message="Invalid OAuth access token.")
GONE = error(SendErrorKind.DESTINATION, code=100, subcode=2018001, message=GONE_TEXT)
THROTTLED = error(SendErrorKind.THROTTLED, code=613, message=THROTTLE_TEXT)
OUTAGE = error(SendErrorKind.TRANSIENT, status=503, message="")
REJECTED = error(SendErrorKind.REJECTED, code=100, message="(#100) Invalid parameter")


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    error: SendError
    context: SendContext
    expected: Failed | RetryLater | SwitchRoute


CASES = [
    Case(
        "window_error_on_a_normal_human_reply_tries_the_tag",
        WINDOW,
        BASE,
        SwitchRoute(Route.TAGGED),
    ),
    Case(
        "window_error_on_the_tag_is_final",
        WINDOW,
        replace(BASE, route=Route.TAGGED, last_customer_ms=NOW - 30 * HOUR_MS),
        Failed("MessageExpired", WINDOW_CLOSED),
    ),
    Case(
        "window_error_on_a_bot_reply_after_two_parts",
        WINDOW,
        replace(BASE, human=False, sent=2),
        Failed("MessageExpired", WINDOW_CLOSED + " (2 earlier part(s) were delivered.)"),
    ),
    Case(
        "window_error_with_the_tag_turned_off",
        WINDOW,
        replace(BASE, tag_allowed=False),
        Failed("MessageExpired", WINDOW_CLOSED),
    ),
    Case(
        "window_error_on_a_private_reply",
        WINDOW,
        replace(BASE, route=Route.PRIVATE_REPLY, last_customer_ms=None),
        Failed("MessageExpired", WINDOW_CLOSED),
    ),
    Case(
        "window_error_without_a_route",
        WINDOW,
        replace(BASE, route=None),
        Failed(
            "MessageExpired",
            "Not delivered: Instagram says the 24-hour reply window has closed. "
            "The customer must write again first.",
        ),
    ),
    Case("token", TOKEN, BASE, Failed("GeneralError", TOKEN_MESSAGE, token_problem=True)),
    Case(
        "token_after_one_part",
        TOKEN,
        replace(BASE, sent=1),
        Failed(
            "GeneralError",
            TOKEN_MESSAGE + " (1 earlier part(s) were delivered.)",
            token_problem=True,
        ),
    ),
    Case(
        "unreachable_customer",
        GONE,
        BASE,
        Failed(
            "InvalidDestination",
            "Not delivered: Instagram says this customer cannot be reached "
            "(account unavailable or unknown). No matching user found",
        ),
    ),
    Case(
        "unreachable_customer_without_details",
        error(SendErrorKind.DESTINATION, code=551),
        BASE,
        Failed(
            "InvalidDestination",
            "Not delivered: Instagram says this customer cannot be reached "
            "(account unavailable or unknown).",
        ),
    ),
    Case(
        "throttled_is_retried_after_the_backoff",
        THROTTLED,
        BASE,
        RetryLater(BACKOFF, "throttled", f"throttled: {THROTTLE_TEXT}"),
    ),
    Case(
        "throttled_with_retry_after_waits_as_told",
        error(SendErrorKind.THROTTLED, status=429, message=THROTTLE_TEXT, retry_after=30.0),
        replace(BASE, attempts=3),
        RetryLater(30.0, "throttled", f"throttled: {THROTTLE_TEXT}"),
    ),
    Case(
        "outage_is_retried",
        OUTAGE,
        replace(BASE, attempts=6),
        RetryLater(BACKOFF, "transient", "transient: HTTP 503"),
    ),
    Case(
        "network_failure_is_retried",
        error(SendErrorKind.TRANSIENT, status=0, message="Instagram unreachable: ConnectError"),
        BASE,
        RetryLater(BACKOFF, "transient", "transient: Instagram unreachable: ConnectError"),
    ),
    Case(
        "throttled_on_the_last_attempt_is_rate_limited",
        THROTTLED,
        replace(BASE, attempts=7),
        Failed(
            "RateLimited",
            f"Not delivered: Instagram kept refusing after 8 attempts ({THROTTLE_TEXT}).",
        ),
    ),
    Case(
        "outage_on_the_last_attempt_is_a_server_error_without_the_parts_note",
        OUTAGE,
        replace(BASE, attempts=2, max_attempts=3, sent=1),
        Failed(
            "ServerError", "Not delivered: Instagram kept refusing after 3 attempts (HTTP 503)."
        ),
    ),
    Case(
        "rejected",
        REJECTED,
        BASE,
        Failed("GeneralError", "Not delivered: Instagram refused it: (#100) Invalid parameter"),
    ),
    Case(
        "rejected_after_three_parts",
        REJECTED,
        replace(BASE, sent=3),
        Failed(
            "GeneralError",
            "Not delivered: Instagram refused it: (#100) Invalid parameter "
            "(3 earlier part(s) were delivered.)",
        ),
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_after_send_error(case: Case) -> None:
    assert after_send_error(case.error, case.context) == case.expected


@dataclass(frozen=True, slots=True)
class LocalCase:
    name: str
    refusal: Refusal
    sent: int
    expected: Failed


LOCAL_CASES = [
    LocalCase(
        "bot_reply_held_by_the_loop_breaker",
        LOOP_HELD,
        0,
        Failed(
            "MessageNotAllowed",
            "Not sent: this customer looks like an automated sender answering our bot "
            "(a bot-on-bot loop); bot replies resume when the conversation calms down. "
            "A human agent can still reply.",
        ),
    ),
    LocalCase(
        "public_reply_that_is_not_text",
        PUBLIC_REPLY_NOT_TEXT,
        0,
        Failed("MessageNotAllowed", PUBLIC_REPLY_NOT_TEXT.message),
    ),
    LocalCase(
        "public_reply_card_after_its_text",
        PUBLIC_REPLY_NOT_TEXT,
        1,
        Failed(
            "MessageNotAllowed",
            PUBLIC_REPLY_NOT_TEXT.message + " (1 earlier part(s) were delivered.)",
        ),
    ),
    LocalCase(
        "media_type",
        Refusal("MediaTypeNotAllowed", "Instagram accepts only PNG and JPEG images."),
        0,
        Failed("MediaTypeNotAllowed", "Instagram accepts only PNG and JPEG images."),
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in LOCAL_CASES])
def test_local_refusals(case: LocalCase) -> None:
    failed = refused(case.refusal, case.sent)
    assert failed == case.expected
    assert not failed.token_problem
    assert not failed.window_closed


def test_no_route_inside_the_window_is_message_expired() -> None:
    failed = window_closed(Decision(Route.EXPIRED, "Not delivered: the customer never wrote."))
    assert failed == Failed("MessageExpired", "Not delivered: the customer never wrote.")
    assert failed.window_closed


def test_the_token_message_names_the_setting_not_the_token() -> None:
    assert "IGBRIDGE_META_ACCESS_TOKEN" in TOKEN_PROBLEM
    assert "code 190" in TOKEN_PROBLEM


def test_a_dead_lettered_message_tells_the_agent_and_what_the_customer_already_saw() -> None:
    nothing_sent = dead_lettered(0)
    assert nothing_sent.code == "GeneralError"
    assert "dead-lettered" in nothing_sent.message
    assert "earlier part" not in nothing_sent.message
    assert "(2 earlier part(s) were delivered.)" in dead_lettered(2).message
    assert not nothing_sent.token_problem
