"""Pure rules: splitting replies for Instagram's 1000 bytes, and Meta's reply window."""

from __future__ import annotations

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from igbridge.relay.pipeline.split import split_text
from igbridge.relay.pipeline.window import HOUR_MS, CommentOrigin, Route, decide

NOW = 10_000 * HOUR_MS
EMOJI = st.sampled_from(["👨‍👩‍👧‍👦", "🇧🇷", "👍🏾", "❤️‍🔥", "é", "你", "ا", " ", "\n", "a", "🧑🏽‍🚀"])


@settings(max_examples=200, deadline=None)
@given(st.lists(EMOJI, min_size=0, max_size=900))
def test_split_never_breaks_a_grapheme_and_respects_the_limit(pieces: list[str]) -> None:
    text = "".join(pieces)
    parts = split_text(text)
    assert all(0 < len(p.encode("utf-8")) <= 1000 for p in parts)

    # Only spaces at part edges may go; every grapheme survives whole and in order.
    def strip(s: str) -> list[str]:
        return [g for g in regex.findall(r"\X", s) if g != " "]

    assert [g for p in parts for g in strip(p)] == strip(text)


def test_split_prefers_line_and_word_breaks() -> None:
    text = ("word " * 150) + "\n" + ("más " * 150)
    parts = split_text(text)
    assert all(not p.endswith("wor") for p in parts)
    assert all(len(p.encode()) <= 1000 for p in parts)
    assert parts[0].startswith("word word")


def test_short_text_is_one_part() -> None:
    assert split_text("Olá 👋") == ["Olá 👋"]
    assert split_text("") == []


def test_window_rules() -> None:
    def route(age_h: float, *, human: bool = True, tag_allowed: bool = True) -> Route:
        last = NOW - int(age_h * HOUR_MS)
        return decide(NOW, last, human=human, tag_allowed=tag_allowed).route

    assert route(23.99) is Route.NORMAL
    assert route(25) is Route.TAGGED
    assert route(25, tag_allowed=False) is Route.EXPIRED
    assert route(25, human=False) is Route.EXPIRED
    assert route(24 * 7 + 1) is Route.EXPIRED
    assert decide(NOW, None, human=True, tag_allowed=True).route is Route.EXPIRED


def test_comment_conversations() -> None:
    fresh = CommentOrigin("c1", NOW - HOUR_MS)
    assert decide(NOW, None, human=True, tag_allowed=True, comment=fresh).route is (
        Route.PRIVATE_REPLY
    )
    used = CommentOrigin("c1", NOW - HOUR_MS, private_replied=True)
    assert decide(NOW, None, human=True, tag_allowed=True, comment=used).route is Route.EXPIRED
    # The customer answered the private reply by DM: a normal conversation from then on.
    assert decide(NOW, NOW - 60_000, human=True, tag_allowed=True, comment=used).route is (
        Route.NORMAL
    )
    assert (
        decide(
            NOW, None, human=True, tag_allowed=True, comment=fresh, public_comment_replies=True
        ).route
        is Route.PUBLIC_REPLY
    )
    old = CommentOrigin("c2", NOW - 8 * 24 * HOUR_MS)
    assert decide(NOW, None, human=True, tag_allowed=True, comment=old).route is Route.EXPIRED
